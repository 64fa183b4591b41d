"""The msg-gateway's live connections: who is online where, and the one way frames leave.

Every frame to a client goes through its connection's queue and one writer task, so a reply
and the pushes that follow it leave in the order they were queued (the sender's own echo of a
message must come after its 1003 reply: protocol document 2.7), and kicking a connection from
another connection's handler never waits on the kicked client.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import gzip
import logging
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from messenger_gw.protocol import sdkws_pb2

log = logging.getLogger(__name__)

# internal/msggateway/constant.go
PUSH_MSG = 2001
KICK_ONLINE_MSG = 2002
SUB_USER_ONLINE_STATUS = 2005


def frame(req_identifier: int, data: bytes | None, *, msg_incr: str = "", operation_id: str = "",
          err_code: int = 0, err_msg: str = "") -> dict[str, Any]:  # fmt: skip
    """A ``Resp`` as Go's JSON encoder writes it: ``data`` is base64, ``null`` for a nil slice."""
    return {
        "reqIdentifier": req_identifier,
        "msgIncr": msg_incr,
        "operationID": operation_id,
        "errCode": err_code,
        "errMsg": err_msg,
        "data": data,
    }


@dataclasses.dataclass(eq=False)
class Connection:
    user_id: str
    platform_id: int
    token: str
    compress: bool  # compression=gzip: binary frames are gzipped both ways
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    subscribed: set[str] = dataclasses.field(default_factory=set)
    # (kind, payload); None closes the TCP connection once what precedes it is written
    _queue: asyncio.Queue[tuple[str, Any] | None] = dataclasses.field(default_factory=asyncio.Queue)
    _writer: asyncio.Task[None] | None = None
    closed: bool = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write())

    def send(self, resp: dict[str, Any]) -> None:
        """Queue a binary frame (a ``Resp``)."""
        if not self.closed:
            self._queue.put_nowait(("binary", resp))

    def send_text(self, text: str) -> None:
        if not self.closed:
            self._queue.put_nowait(("text", text))

    def close_after_queued(self) -> None:
        """Close the TCP connection, without a close frame (gorilla's ``conn.Close()``), once
        what is queued has been written."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    def kick(self) -> None:
        """2002, then the connection closes (``Client.KickOnlineMessage``)."""
        self.send(frame(KICK_ONLINE_MSG, None))
        self.close_after_queued()

    async def stop(self) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                self._abort()
                return
            kind, payload = item
            try:
                if kind == "text":
                    await self.ws.send_str(payload)
                else:
                    await self.ws.send_bytes(self._encode(payload))
            except (ConnectionError, RuntimeError) as exc:
                log.info("msg-gateway write failed: %s", type(exc).__name__)
                self._abort()
                return

    def _encode(self, resp: dict[str, Any]) -> bytes:
        data = resp["data"]
        if data is not None:
            resp = resp | {"data": _b64(data)}
        raw = orjson.dumps(resp)
        return gzip.compress(raw) if self.compress else raw

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Connections:
    """Live connections by user and platform (``UserMap``), and the online-status subscriptions."""

    def __init__(self) -> None:
        self._by_user: dict[str, list[Connection]] = collections.defaultdict(list)
        self._subscribers: dict[str, set[Connection]] = collections.defaultdict(set)

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    def of(self, user_id: str, platform_id: int | None = None) -> list[Connection]:
        return [c for c in self._by_user.get(user_id, []) if platform_id is None or c.platform_id == platform_id]

    def __iter__(self) -> Iterator[Connection]:
        for conns in list(self._by_user.values()):
            yield from conns

    def register(self, conn: Connection) -> list[Connection]:
        """Add ``conn``; under multi-login policy 1 the user's older connections on the same
        platform are kicked (2002, then closed). Returns the kicked connections."""
        older = self.of(conn.user_id, conn.platform_id)
        for old in older:
            self._remove(old)
            old.kick()
        self._by_user[conn.user_id].append(conn)
        self._status_changed(conn.user_id)
        return older

    def unregister(self, conn: Connection) -> None:
        if self._remove(conn):
            self._status_changed(conn.user_id)
        for user_id in conn.subscribed:
            self._subscribers[user_id].discard(conn)
        conn.subscribed.clear()

    def kick(self, user_id: str, platform_id: int) -> int:
        """``KickUserOffline`` (force_logout): every connection of the user on that platform."""
        conns = self.of(user_id, platform_id)
        for conn in conns:
            self._remove(conn)
            conn.kick()
        if conns:
            self._status_changed(user_id)
        return len(conns)

    def push(self, user_ids: list[str], conversation_id: str, msg: sdkws_pb2.MsgData, operation_id: str) -> None:
        """2001 to every connection of each user (``Client.PushMessage``): one message per frame,
        under ``notificationMsgs`` for an ``n_`` conversation, else under ``msgs``."""
        push = sdkws_pb2.PushMessages()
        pulled = (push.notificationMsgs if conversation_id.startswith("n_") else push.msgs)[conversation_id]
        pulled.Msgs.append(msg)
        data = push.SerializeToString()
        for user_id in dict.fromkeys(user_ids):
            for conn in self.of(user_id):
                conn.send(frame(PUSH_MSG, data, operation_id=operation_id))

    def online_platforms(self, user_id: str) -> list[int]:
        return sorted({c.platform_id for c in self.of(user_id)})

    def subscribe(self, conn: Connection, add: list[str], remove: list[str]) -> None:
        for user_id in remove:
            if user_id in conn.subscribed:
                conn.subscribed.discard(user_id)
                self._subscribers[user_id].discard(conn)
        for user_id in add:
            conn.subscribed.add(user_id)
            self._subscribers[user_id].add(conn)

    def _remove(self, conn: Connection) -> bool:
        conns = self._by_user.get(conn.user_id, [])
        if conn not in conns:
            return False
        conns.remove(conn)
        if not conns:
            del self._by_user[conn.user_id]
        return True

    def _status_changed(self, user_id: str) -> None:
        subscribers = self._subscribers.get(user_id)
        if not subscribers:
            return
        tips = sdkws_pb2.SubUserOnlineStatusTips(
            subscribers=[
                sdkws_pb2.SubUserOnlineStatusElem(userID=user_id, onlinePlatformIDs=self.online_platforms(user_id))
            ]
        )
        data = tips.SerializeToString()
        for conn in list(subscribers):
            conn.send(frame(SUB_USER_ONLINE_STATUS, data))
