"""GIF search: a query bounded and checked, then answered from the store or fetched once for every replica.

An answer is kept in the store for ``GIF_CACHE_TTL`` seconds under a digest of (provider, rating,
kind, q, limit, pos), so a popular query reaches the provider once however many replicas and users
ask. A miss is single-flight as the imToken mint is: one task per digest in this process, and a
short store lock across replicas; the others wait for the answer the holder stores. A failure is
not kept: the next request asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web
from multidict import MultiMapping

from messenger_gw import __version__, errors, keys
from messenger_gw.metrics import Metrics
from messenger_gw.moderation import RateLimits
from messenger_gw.settings import GifSettings
from messenger_gw.store import Store

from .providers import PROVIDERS, Kind, Provider, ProviderError, ProviderTimeout, Query

MAX_Q_CHARS = 50  # GIPHY's own bound (414 beyond), kept for every provider
DEFAULT_LIMIT = 24  # within every provider's page sizes
MAX_POS_CHARS = 16
CONNECT_TIMEOUT = 3.0
LOCK_POLL_INTERVAL = 0.05
LOCK_MARGIN = 2.0  # the lock outlives one provider call by this much, so a holder never loses it midway
OFF = "off"
RATE_CLASS = "gifs"  # each user's bucket of RATE_LIMITS, for both routes


class GifSearchOff(errors.GatewayError):
    status = 404
    code = errors.GIF_SEARCH_OFF

    def __init__(self) -> None:
        super().__init__("GIF search is off on this gateway", detail="no GIF provider key is configured")


class BadGifProvider(errors.BadUpstream):
    code = errors.BAD_GIF_PROVIDER


class GifProviderTimeout(errors.UpstreamTimeout):
    code = errors.GIF_PROVIDER_TIMEOUT


class GifSearch:
    def __init__(
        self,
        provider: Provider | None,
        store: Store,
        *,
        rate_limits: RateLimits,
        cache_ttl: float,
        timeout: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._store = store
        self._rate_limits = rate_limits
        self._cache_ttl = cache_ttl
        self._lock_ttl = timeout + LOCK_MARGIN
        self._metrics = metrics
        self._clock = clock
        self._flights: dict[str, asyncio.Task[tuple[bytes, str]]] = {}

    @property
    def provider_name(self) -> str:
        return self._provider.name if self._provider is not None else OFF

    async def answer(self, user_id: str, kind: Kind, params: MultiMapping[str]) -> bytes:
        """The JSON answer to ``params`` (the request's query) for ``user_id``: checked, counted, cached."""
        provider = self._provider
        if provider is None:
            raise GifSearchOff
        query = self.query(provider, kind, params)
        await self._rate_limits.hit(user_id, RATE_CLASS)
        return await self.page(provider, query)

    @staticmethod
    def query(provider: Provider, kind: Kind, params: MultiMapping[str]) -> Query:
        """The query ``params`` ask for, or :class:`errors.InvalidField` naming what is wrong."""
        q = ""
        if kind == "search":
            q = _single(params, "q", "").strip()
            if not 1 <= len(q) <= MAX_Q_CHARS or not q.isprintable():
                raise errors.InvalidField(f"q: 1 to {MAX_Q_CHARS} printable characters")
        limit_text = _single(params, "limit", str(DEFAULT_LIMIT))
        low, high = provider.min_limit, provider.max_limit
        if not (limit_text.isdigit() and len(limit_text) <= 3 and low <= int(limit_text) <= high):
            raise errors.InvalidField(f"limit: a whole number from {low} to {high}")
        pos = _single(params, "pos", "") or None
        if pos is not None:
            try:
                if len(pos) > MAX_POS_CHARS:
                    raise ValueError("too long")
                provider.check_cursor(kind, pos)
            except ValueError:
                raise errors.InvalidField("pos: the next cursor of a previous answer") from None
        return Query(kind, q, int(limit_text), pos)

    async def page(self, provider: Provider, query: Query) -> bytes:
        digest = _digest(provider, query)
        cached = await self._store.get(keys.gif_page(digest))
        if cached is not None:
            self._count("cached")
            return cached
        flight = self._flights.get(digest)
        if flight is None:
            flight = asyncio.create_task(self._fetch_across_replicas(provider, query, digest))
            self._flights[digest] = flight
            flight.add_done_callback(lambda done: self._landed(digest, done))
            joined = False
        else:
            joined = True
        try:
            # Shielded: a client that goes away does not cancel the fetch the others wait for.
            body, outcome = await asyncio.shield(flight)
        except GifProviderTimeout:
            self._count("provider_timeout")
            raise
        except BadGifProvider:
            self._count("provider_error")
            raise
        self._count("shared" if joined else outcome)
        return body

    def _landed(self, digest: str, flight: asyncio.Task[tuple[bytes, str]]) -> None:
        self._flights.pop(digest, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here, so a failure nobody waited for is not reported as lost

    async def _fetch_across_replicas(self, provider: Provider, query: Query, digest: str) -> tuple[bytes, str]:
        page_key, lock = keys.gif_page(digest), keys.gif_fetch_lock(digest)
        give_up = self._clock() + 2 * self._lock_ttl
        while not await self._store.set_if_absent(lock, b"", ttl=self._lock_ttl):
            # Another replica is asking the provider: its answer will do, once it lands. A holder
            # that fails stores nothing and lets the lock go, and one of the waiters asks next.
            await asyncio.sleep(LOCK_POLL_INTERVAL)
            cached = await self._store.get(page_key)
            if cached is not None:
                return cached, "shared"
            if self._clock() > give_up:
                raise GifProviderTimeout("The GIF provider did not answer in time", detail="another replica's fetch")
        try:
            cached = await self._store.get(page_key)
            if cached is not None:
                return cached, "shared"  # stored by another replica between our read and the lock
            body = await self._fetch(provider, query)
            await self._store.set(page_key, body, ttl=self._cache_ttl)
            return body, "fetched"
        finally:
            await self._store.delete(lock)

    async def _fetch(self, provider: Provider, query: Query) -> bytes:
        started = time.perf_counter()
        try:
            page = await provider.fetch(query)
        except ProviderTimeout as exc:
            raise GifProviderTimeout(
                "The GIF provider did not answer in time", detail=provider.redact(str(exc))
            ) from None
        except ProviderError as exc:
            raise BadGifProvider("The GIF provider failed", detail=provider.redact(str(exc))) from None
        finally:
            self._metrics.gif_provider_duration.labels(provider.name).observe(time.perf_counter() - started)
        return orjson.dumps(page.as_json(provider.name))

    def _count(self, outcome: str) -> None:
        self._metrics.gif_requests.labels(self.provider_name, outcome).inc()


@contextlib.asynccontextmanager
async def gif_search(
    settings: GifSettings, store: Store, rate_limits: RateLimits, *, metrics: Metrics
) -> AsyncIterator[GifSearch]:
    """The GIF search of these settings, with its bounded session to the provider while in the block."""

    def search(provider: Provider | None) -> GifSearch:
        return GifSearch(
            provider,
            store,
            rate_limits=rate_limits,
            cache_ttl=settings.cache_ttl,
            timeout=settings.timeout,
            metrics=metrics,
        )

    if settings.api_key is None:
        yield search(None)
        return
    timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=min(settings.timeout, CONNECT_TIMEOUT))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_connections),
        timeout=timeout,
        headers={"Accept": "application/json", "User-Agent": f"messenger-gw/{__version__}"},
        cookie_jar=aiohttp.DummyCookieJar(),  # nothing of one answer carries into the next
        trust_env=False,
    ) as session:
        yield search(PROVIDERS[settings.provider](session, settings.api_url, settings.api_key, settings.rating))


def _single(params: MultiMapping[str], name: str, default: str) -> str:
    values = params.getall(name, [])
    if len(values) > 1:
        raise errors.InvalidField(f"{name}: given more than once")
    return values[0] if values else default


def _digest(provider: Provider, query: Query) -> str:
    parts = [provider.name, provider.rating, query.kind, query.q, query.limit, query.pos]
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


GIF_SEARCH: web.AppKey[GifSearch] = web.AppKey("gif_search", GifSearch)
