"""Token-bucket rate limits kept in the store, so every replica takes from the same buckets.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second; each request takes
one, or is refused with the time until one is there (``Retry-After``). The store keeps a bucket
as one number and takes tokens in one round trip (``Store.take_tokens``: a script on Redis, on
the server's clock); the takes that arrive while one is in flight go together in the next
(``store.Coalescer``, as the nonce claims do), so a busy gateway makes far fewer round trips
than requests.

* :class:`RateLimits`: the classes of /im routes (``settings.RATE_CLASSES``, named per route in
  ``im/routes.toml``), one bucket per user and class. :meth:`RateLimits.check` needs no HTTP
  request, so the WebSocket guard takes from the same buckets as the REST path.
* :class:`EagerRateLimits`: the same buckets for the WebSocket guard, decided at once from what
  this worker knows of each bucket, the tokens spent in the store a moment after (see there).
* :class:`RateLimit`: a per-minute limit on one scope (the handshake per client IP, before any
  authentication; OpenIM's message callbacks per sender).

Keys are ``gw:rate:<class or scope>:{<subject>}``. The subject is the Redis Cluster hash tag: one
subject's buckets share a slot, while subjects spread over the cluster (a tag per class would put
every user's bucket of that class on one node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable

from aiohttp import web

from messenger_gw import errors, keys
from messenger_gw.metrics import Metrics
from messenger_gw.settings import BucketLimit, RateLimitSettings
from messenger_gw.store import Bucket, Coalescer, Store, StoreError

log = logging.getLogger(__name__)


class RateLimited(errors.GatewayError):
    status = 429
    code = errors.RATE_LIMITED

    def __init__(self, retry_after: float, *, detail: str = "") -> None:
        super().__init__("Too many requests; try again later", detail=detail)
        self.retry_after = max(1, math.ceil(retry_after))

    def response(self) -> web.Response:
        response = super().response()
        response.headers["Retry-After"] = str(self.retry_after)
        return response


def _key(scope: str, subject: str) -> str:
    return keys.rate(scope, "{" + subject + "}")


class RateLimits:
    """The route classes' buckets, per user, with the configured policy for when the store is down."""

    def __init__(self, store: Store, settings: RateLimitSettings, *, metrics: Metrics) -> None:
        self._take = Coalescer(store.take_tokens)
        self._limits = settings.classes
        self._fail_open = settings.fail_open
        self._metrics = metrics

    async def check(self, user_id: str, rate_class: str) -> float | None:
        """Take a token of ``rate_class`` for ``user_id``: None when taken (go on), else the seconds until
        one is there (refuse). A class that is off always answers None.

        When the store cannot answer: None if the policy is to fail open; else the ``StoreError`` is
        raised, which the edge answers 503 / 50300.
        """
        limit = self._limits[rate_class]
        if limit is None:
            return None
        try:
            wait = await self._take.submit(Bucket(_key(rate_class, user_id), limit.rate, limit.burst))
        except StoreError as exc:
            if self.unevaluated(rate_class, exc):
                return None
            raise
        if wait == 0:
            return None
        self._metrics.rate_limited.labels(rate_class).inc()
        return wait

    def limit(self, rate_class: str) -> BucketLimit | None:
        return self._limits[rate_class]

    def unevaluated(self, rate_class: str, exc: StoreError, *, count: int = 1) -> bool:
        """Count and log takes the store could not answer; whether the policy lets their requests through."""
        policy = "open" if self._fail_open else "closed"
        self._metrics.rate_limit_unevaluated.labels(rate_class, policy).inc(count)
        log.warning("rate limit %s not evaluated (store: %s): failing %s", rate_class, exc, policy)
        return self._fail_open

    async def hit(self, user_id: str, rate_class: str) -> None:
        """:meth:`check`, raising :class:`RateLimited` on a refusal."""
        wait = await self.check(user_id, rate_class)
        if wait is not None:
            raise RateLimited(wait, detail=f"rate class {rate_class}")


STORE_ROUNDING = 0.001  # the store answers in whole milliseconds, rounded up


@dataclasses.dataclass(slots=True)
class _View:
    bucket: Bucket  # the user's, as the store keys it
    full_at: float  # this worker's clock: when the bucket is full again, as far as this worker knows
    unspent: int = 0  # tokens taken here and not yet spent in the store
    first_unspent_at: float = 0.0  # when the first of them was taken
    unsure: bool = False  # the store failed under a closed policy: ask it before the next request


class EagerRateLimits:
    """:class:`RateLimits`' buckets for a caller that must not wait on the store per request: the WebSocket
    guard, where a client's next frame waits on its last.

    Each user's bucket is decided at once from this worker's view of it (the same rate and burst, on this
    worker's clock; a user not seen yet has a full bucket), and the tokens taken here are spent in the store
    every ``flush_interval``: for each user who sent, one item of one round trip, however many frames.
    The store answers when each bucket will be full again, and a view behind it (the user also sent through
    another worker or replica, or REST) is set to the store's. A user sending only here is refused as by
    :meth:`RateLimits.check`; one sending through several places at once gets beyond the limit at most what
    the others let through within one interval and a round trip, counted in
    ``messenger_gw_rate_limit_overshoot_total`` when the store finds the bucket in debt, which the REST path
    then refuses until it is paid. A spend the store cannot take under a closed policy makes each of those
    users' next request wait on the store (:meth:`RateLimits.check`), so the policy applies as it does there.

    A view whose bucket is full again says no more than none: those are dropped as the views grow, so a
    worker keeps only its recent senders.
    """

    SWEEP_FLOOR = 1024

    def __init__(
        self,
        store: Store,
        limits: RateLimits,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        flush_interval: float = 0.05,
    ) -> None:
        self._store = store
        self._limits = limits
        self._metrics = metrics
        self._clock = clock
        self._flush_interval = flush_interval
        self._views: dict[tuple[str, str], _View] = {}
        self._unspent: dict[tuple[str, str], _View] = {}
        self._sweep_at = self.SWEEP_FLOOR
        self._stopping = False

    async def check(self, user_id: str, rate_class: str) -> float | None:
        """As :meth:`RateLimits.check`, answered without a store round trip unless the store failed last."""
        limit = self._limits.limit(rate_class)
        if limit is None:
            return None
        key = (user_id, rate_class)
        now = self._clock()
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= self._sweep_at:
                self._sweep(now)
            view = self._views[key] = _View(Bucket(_key(rate_class, user_id), limit.rate, limit.burst), now)
        elif view.unsure:
            wait = await self._limits.check(user_id, rate_class)  # raises StoreError under a closed policy
            view.unsure = False
            now = self._clock()
            if wait is not None:
                view.full_at = max(view.full_at, now + wait + (limit.burst - 1) / limit.rate)
                return wait
            view.full_at = max(view.full_at, now) + 1 / limit.rate  # taken in the store already
            return None
        wait, view.full_at = view.bucket.take(view.full_at, now)
        if wait > 0:
            self._metrics.rate_limited.labels(rate_class).inc()
            return wait
        if not view.unspent:
            view.first_unspent_at = now
        view.unspent += 1
        self._unspent[key] = view
        return None

    async def flush(self) -> None:
        """Spend in the store the tokens taken here since the last flush."""
        if not self._unspent:
            return
        unspent, self._unspent = self._unspent, {}
        now = self._clock()
        sent = [(key, view, view.unspent) for key, view in unspent.items()]
        # The age: the store's bucket refills from when they were taken.
        spends = [(view.bucket, count, now - view.first_unspent_at) for _, view, count in sent]
        for view in unspent.values():
            view.unspent = 0
        try:
            fulls = await self._store.spend_tokens(spends)
        except asyncio.CancelledError:  # stopped mid-flight (shutdown): kept for the last flush
            for key, view, count in sent:
                view.unspent += count
                self._unspent[key] = view
            raise
        except StoreError as exc:
            counts: dict[str, int] = {}
            for (_, rate_class), _, count in sent:
                counts[rate_class] = counts.get(rate_class, 0) + count
            # One warning per class and flush, however many users: an outage must not flood the log.
            fail_open = all([self._limits.unevaluated(rate_class, exc, count=n) for rate_class, n in counts.items()])
            if not fail_open:
                for _, view, _ in sent:
                    view.unsure = True
            return
        now = self._clock()
        for ((_, rate_class), view, count), full_in in zip(sent, fulls, strict=True):
            bucket = view.bucket
            debt = full_in - STORE_ROUNDING - bucket.burst / bucket.rate  # tokens spent that it did not have
            if debt > 0:
                self._metrics.rate_limit_overshoot.labels(rate_class).inc(min(count, math.ceil(debt * bucket.rate)))
            view.full_at = max(view.full_at, now + full_in - STORE_ROUNDING)

    async def flush_forever(self) -> None:
        """:meth:`flush` every ``flush_interval`` until :meth:`stop` (the owner flushes once more after)."""
        while not self._stopping:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:  # a fault of its own must not stop every later spend
                log.exception("rate limit spends not flushed")

    def stop(self) -> None:
        self._stopping = True

    def _sweep(self, now: float) -> None:
        self._views = {k: v for k, v in self._views.items() if v.full_at > now or v.unspent or v.unsure}
        self._sweep_at = max(self.SWEEP_FLOOR, 2 * len(self._views))


class RateLimit:
    """``per_minute`` hits per subject: a bucket of that many, refilled over a minute. 0 is no limit.

    A store failure is raised to the caller, whose failure policy applies.
    """

    WINDOW = 60.0

    def __init__(self, store: Store, scope: str, per_minute: int, *, metrics: Metrics | None = None) -> None:
        self._store = store
        self._take = Coalescer(store.take_tokens)  # message callbacks come as fast as messages do
        self._scope = scope
        self._limit = per_minute
        self._metrics = metrics

    async def _wait(self, subject: str) -> float:
        wait = await self._take.submit(Bucket(_key(self._scope, subject), self._limit / self.WINDOW, self._limit))
        if wait and self._metrics is not None:
            self._metrics.rate_limited.labels(self._scope).inc()
        return wait

    async def exceeded(self, subject: str, *, once_per: str = "") -> bool:
        """Take a token for ``subject``; whether there was none.

        ``once_per`` names what the hit is for (a message): a second hit for the same name within a
        minute takes nothing and is never refused, since the first one decided.
        """
        if self._limit == 0:
            return False
        if once_per and not await self._store.set_if_absent(
            keys.rate(f"{self._scope}-once", f"{subject}:{once_per}"), b"", ttl=self.WINDOW
        ):
            return False
        return await self._wait(subject) > 0

    async def hit(self, subject: str) -> None:
        """Take a token for ``subject``; raise :class:`RateLimited` when there is none."""
        if self._limit == 0:
            return
        wait = await self._wait(subject)
        if wait:
            raise RateLimited(wait, detail=f"rate scope {self._scope}")


RATE_LIMITS: web.AppKey[RateLimits] = web.AppKey("rate_limits", RateLimits)
