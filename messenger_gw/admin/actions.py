"""Moderation actions that span the gateway and OpenIM: force logout, ban, unban.

A ban writes the ban record first, so the gateway side holds whatever
happens next: every replica drops its cached answer at once (pub/sub), the
user's stored imTokens and gateway sessions go, and OpenIM logs the user
out on every platform. A platform OpenIM fails to log out is reported and
kept in ``gw:pending-force-logout``, which a background task retries until
OpenIM accepts it. Banning again re-runs every step: the call is idempotent.

Once the ban record is written, a step the store fails is reported in
``unfinished`` and the next steps still run: the answer says what happened
(the ban holds) rather than a 503 that would say it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from messenger_gw import keys
from messenger_gw.auth import Sessions
from messenger_gw.background import running
from messenger_gw.moderation import Ban, Bans
from messenger_gw.openim import (
    USER_PLATFORM_IDS,
    AdminTokenManager,
    ImTokens,
    OpenIMAPIError,
    OpenIMClient,
    OpenIMError,
)
from messenger_gw.operation_id import new_operation_id
from messenger_gw.store import Store, StoreError

log = logging.getLogger(__name__)

RETRY_INTERVAL = 5.0

T = TypeVar("T")


def describe(exc: OpenIMError) -> str:
    if isinstance(exc, OpenIMAPIError):
        return f"error: OpenIM errCode {exc.errcode} ({exc.msg})"
    return f"error: {type(exc).__name__}"


class Moderation:
    def __init__(
        self,
        store: Store,
        openim: OpenIMClient,
        admin_tokens: AdminTokenManager,
        sessions: Sessions,
        im_tokens: ImTokens,
        bans: Bans,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._openim = openim
        self._admin_tokens = admin_tokens
        self._sessions = sessions
        self._im_tokens = im_tokens
        self._bans = bans
        self._clock = clock

    async def force_logout(self, user_id: str, platforms: Iterable[int] | None, operation_id: str) -> dict[int, str]:
        """Log the user out of OpenIM: the given platforms, else those holding a stored token, else all 1-9.

        Answers an outcome per platform ("ok" or "error: ..."); failures are queued for retry.
        """
        if platforms is None:
            platforms = await self._im_tokens.stored_platforms(user_id) or list(USER_PLATFORM_IDS)
        results = await self._log_out_of_openim(user_id, platforms, operation_id)
        await self._remember_failures(user_id, results)
        return results

    async def log_out_everywhere(
        self, user_id: str, platforms: Iterable[int] | None, operation_id: str
    ) -> dict[str, Any]:
        """Force logout, and end what the gateway holds for the user: stored tokens and sessions.

        Each step runs whether the one before it could reach the store or not; those it could
        not are named in the report's ``unfinished``.
        """
        if platforms is None:  # read before the tokens are forgotten: they say which platforms are in use
            platforms = await self._im_tokens.stored_platforms(user_id) or list(USER_PLATFORM_IDS)
        unfinished: list[str] = []
        await _attempt("imTokens", self._im_tokens.forget(user_id), unfinished)
        revoked = await _attempt("sessions", self._sessions.revoke_user(user_id), unfinished)
        results = await self._log_out_of_openim(user_id, platforms, operation_id)
        await _attempt("forceLogoutRetry", self._remember_failures(user_id, results), unfinished)
        return _report(user_id, revoked, results, unfinished)

    async def ban(
        self, user_id: str, *, reason: str, actor: str, expires_in: float | None, operation_id: str
    ) -> dict[str, Any]:
        now = self._clock()
        ban = Ban(user_id, reason, actor, int(now), None if expires_in is None else int(now + expires_in))
        await self._bans.put(ban, now=now)  # first: from here on the gateway refuses the user
        report = await self.log_out_everywhere(user_id, USER_PLATFORM_IDS, operation_id)
        return {"ban": ban.as_json()} | report

    async def unban(self, user_id: str) -> bool:
        return await self._bans.remove(user_id)

    async def retry_pending(self) -> int:
        """One pass over the force logouts OpenIM failed; the number still failing afterwards."""
        still_failing = 0
        for user_id, raw in (await self._store.hgetall(keys.PENDING_FORCE_LOGOUT)).items():
            results = await self.force_logout(user_id, orjson.loads(raw), new_operation_id())
            still_failing += sum(1 for outcome in results.values() if outcome != "ok")
            log.info("retried force logout", extra={"results": {str(p): r for p, r in results.items()}})
        return still_failing

    async def retry_pending_forever(self) -> None:
        while True:
            await asyncio.sleep(RETRY_INTERVAL)
            try:
                await self.retry_pending()
            except StoreError as exc:
                log.warning("force-logout retry pass skipped: %s", exc)

    async def _log_out_of_openim(self, user_id: str, platforms: Iterable[int], operation_id: str) -> dict[int, str]:
        results: dict[int, str] = {}
        for platform_id in platforms:

            async def logout(admin: str, platform: int = platform_id) -> None:
                await self._openim.force_logout(admin, user_id, platform, operation_id=operation_id)

            try:
                await self._admin_tokens.call(logout)
                results[platform_id] = "ok"
            except OpenIMError as exc:
                results[platform_id] = describe(exc)
        return results

    async def _remember_failures(self, user_id: str, results: dict[int, str]) -> None:
        failed = [p for p, outcome in results.items() if outcome != "ok"]
        if failed:
            await self._store.hset(keys.PENDING_FORCE_LOGOUT, {user_id: orjson.dumps(failed)})
            return
        try:
            await self._store.hdel(keys.PENDING_FORCE_LOGOUT, user_id)
        except StoreError as exc:
            # Nothing of this call is left to do; a stale entry only makes a later pass log out again.
            log.warning("pending force logout of a user not cleared: %s", exc)


async def _attempt(step: str, work: Awaitable[T], unfinished: list[str]) -> T | None:
    """What ``work`` answers; None, with ``step`` added to ``unfinished``, when the store failed it."""
    try:
        return await work
    except StoreError as exc:
        log.warning("moderation step %s not done: %s", step, exc)
        unfinished.append(step)
        return None


def _report(user_id: str, revoked: int | None, results: dict[int, str], unfinished: list[str]) -> dict[str, Any]:
    return {
        "userID": user_id,
        "sessionsRevoked": revoked,
        "forceLogout": {str(p): outcome for p, outcome in results.items()},
        "unfinished": unfinished,
        "complete": not unfinished and all(outcome == "ok" for outcome in results.values()),
    }


def retrying(moderation: Moderation) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    return running(moderation.retry_pending_forever(), name="force-logout-retry")


MODERATION: web.AppKey[Moderation] = web.AppKey("moderation", Moderation)
