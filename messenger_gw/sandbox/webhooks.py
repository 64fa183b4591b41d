"""The sandbox's webhook sender: OpenIM's callbacks in its wire format (contract, section 8).

* POST to ``url + "/" + callbackCommand`` (plain concatenation), JSON with a
  trailing newline (Go's ``json.Encoder``), ``Content-Type: application/json;
  charset=utf-8`` and the ``operationID`` header.
* before-callbacks run in the request path: a reply with ``actionCode == 0``
  and ``nextCode == 1`` blocks with the reply's errCode (0 becomes 500);
  anything else continues. A transport failure or timeout blocks with 90004,
  a reply that is not JSON with 90007 (``failedContinue`` is ignored, as in v3.8.3).
* after-callbacks are fire-and-forget: the reply and any failure are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

from .envelope import CodeError

log = logging.getLogger(__name__)

TIMEOUT = 5.0


class WebhookSender:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self.url: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def before(self, command: str, body: dict[str, Any], operation_id: str) -> None:
        """Raise the CodeError OpenIM would if the receiver blocks (or fails)."""
        if self.url is None:
            return
        try:
            raw = await self._post(command, body, operation_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CodeError(90004, f"webhook unreachable: {type(exc).__name__}") from None
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CodeError(90007, "webhook reply is not JSON") from None
        if isinstance(reply, dict) and reply.get("actionCode", 0) == 0 and reply.get("nextCode", 0) == 1:
            code = reply.get("errCode") or 500
            raise CodeError(int(code), str(reply.get("errDlt", "")), msg=str(reply.get("errMsg", "")))

    def after(self, command: str, body: dict[str, Any], operation_id: str) -> None:
        if self.url is None:
            return
        task = asyncio.create_task(self._after(command, body, operation_id))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def flush(self) -> None:
        """Wait for the after-callbacks under way (tests use it)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight))

    async def _after(self, command: str, body: dict[str, Any], operation_id: str) -> None:
        try:
            await self._post(command, body, operation_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("after-callback %s not delivered (ignored, as OpenIM does): %s", command, exc)

    async def _post(self, command: str, body: dict[str, Any], operation_id: str) -> bytes:
        assert self.url is not None
        payload = orjson.dumps({"callbackCommand": command} | body) + b"\n"
        headers = {"Content-Type": "application/json; charset=utf-8", "operationID": operation_id}
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with self._session.post(
            self.url + "/" + command, data=payload, headers=headers, timeout=timeout
        ) as reply:
            return await reply.read()  # the status is not checked, only the body
