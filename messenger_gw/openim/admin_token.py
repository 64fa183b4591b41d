"""OpenIM's admin token: cached, refreshed by one task, fetched again once on a token error.

Each ``get_admin_token`` call leaves the admin's older tokens valid for five
more minutes only (contract, section 11), so fetching per request or per
health probe would churn tokens and kick in-flight calls. The manager holds
one token younger than ``max_age`` (< 300 s): a background task replaces it
at ``refresh_at`` of its age, callers that find none share a single fetch,
and a probe only ever looks at what is cached (:meth:`current`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from messenger_gw.metrics import Metrics
from messenger_gw.operation_id import new_operation_id
from messenger_gw.settings import Secret

from .client import OpenIMClient, OpenIMError, TokenError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


class AdminTokenManager:
    def __init__(
        self,
        client: OpenIMClient,
        secret: Secret,
        admin_user_id: str,
        *,
        metrics: Metrics,
        max_age: float = 240.0,
        refresh_at: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < max_age < 300:
            raise ValueError("max_age must be under OpenIM's 300 s grace period")
        if not 0 < refresh_at < 1:
            raise ValueError("refresh_at is a fraction of max_age, between 0 and 1")
        self._client = client
        self._secret = secret
        self._admin_user_id = admin_user_id
        self._metrics = metrics
        self._max_age = max_age
        self._refresh_after = max_age * refresh_at
        self._clock = clock
        self._token: str | None = None
        self._fetched_at = 0.0
        self._fetching: asyncio.Task[str] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def current(self) -> str | None:
        """The cached token if it is still young enough; never fetches."""
        if self._token is not None and self._age() < self._max_age:
            return self._token
        return None

    async def get(self) -> str:
        """A usable admin token, fetching one (shared by concurrent callers) if none is cached."""
        return self.current() or await self._fetch_once()

    def invalidate(self, token: str) -> None:
        """Drop ``token`` if it is the cached one (OpenIM refused it)."""
        if self._token == token:
            self._token = None

    async def call(self, operation: Callable[[str], Awaitable[T]]) -> T:
        """Run ``operation(admin_token)``; on a token error fetch a new token and run it once more."""
        token = await self.get()
        try:
            return await operation(token)
        except TokenError:
            self.invalidate(token)
            return await operation(await self.get())

    async def start(self) -> None:
        """Start the background refresher; the first token is fetched right away."""
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever(), name="admin-token-refresher")

    async def stop(self) -> None:
        for task in (self._refresher, self._fetching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OpenIMError):
                    await task
        self._refresher = self._fetching = None

    # -- internals ---------------------------------------------------------------------

    def _age(self) -> float:
        return self._clock() - self._fetched_at

    async def _fetch_once(self) -> str:
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch(), name="admin-token-fetch")
            self._fetching.add_done_callback(self._forget_fetch)
        # shield: a caller that gives up must not cancel the fetch the others wait on.
        return await asyncio.shield(self._fetching)

    def _forget_fetch(self, task: asyncio.Task[str]) -> None:
        if self._fetching is task:
            self._fetching = None
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters got it, or nobody waits

    async def _fetch(self) -> str:
        try:
            issued = await self._client.get_admin_token(
                self._secret.reveal(), self._admin_user_id, operation_id=new_operation_id()
            )
        except OpenIMError:
            self._metrics.admin_token_refreshes.labels("error").inc()
            raise
        self._metrics.admin_token_refreshes.labels("ok").inc()
        self._metrics.admin_token_fetched.set(time.time())
        self._token, self._fetched_at = issued.token, self._clock()
        return issued.token

    async def _refresh_forever(self) -> None:
        failures = 0
        while True:
            if self._token is not None:
                await asyncio.sleep(max(0.0, self._refresh_after - self._age()))
            try:
                await self._fetch_once()
                failures = 0
            except OpenIMError as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("admin token refresh failed (attempt %d, next in %gs): %s", failures, delay, exc)
                await asyncio.sleep(delay)


ADMIN_TOKENS: web.AppKey[AdminTokenManager] = web.AppKey("admin_tokens", AdminTokenManager)
