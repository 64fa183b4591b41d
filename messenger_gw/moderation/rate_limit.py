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
* :class:`RateLimit`: a per-minute limit on one scope (the handshake per client IP, before any
  authentication; OpenIM's message callbacks per sender).

Keys are ``gw:rate:<class or scope>:{<subject>}``. The subject is the Redis Cluster hash tag: one
subject's buckets share a slot, while subjects spread over the cluster (a tag per class would put
every user's bucket of that class on one node).
"""

from __future__ import annotations

import logging
import math

from aiohttp import web

from messenger_gw import errors, keys
from messenger_gw.metrics import Metrics
from messenger_gw.settings import RateLimitSettings
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
            policy = "open" if self._fail_open else "closed"
            self._metrics.rate_limit_unevaluated.labels(rate_class, policy).inc()
            log.warning("rate limit %s not evaluated (store: %s): failing %s", rate_class, exc, policy)
            if self._fail_open:
                return None
            raise
        if wait == 0:
            return None
        self._metrics.rate_limited.labels(rate_class).inc()
        return wait

    async def hit(self, user_id: str, rate_class: str) -> None:
        """:meth:`check`, raising :class:`RateLimited` on a refusal."""
        wait = await self.check(user_id, rate_class)
        if wait is not None:
            raise RateLimited(wait, detail=f"rate class {rate_class}")


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
