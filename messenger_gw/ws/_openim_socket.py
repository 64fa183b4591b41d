"""The guard's WebSocket to OpenIM's msg-gateway: a client written for relaying, OpenIM's frames forwarded unread.

The guard checks what clients send and nothing OpenIM sends, and a server's frames are unmasked on
both hops, so OpenIM's frames need no reading: this client writes them to the client's transport as
they came, whole frames at a time (so the guard's own frames and aiohttp's control frames to the
client always fall between two), and reads only OpenIM's control frames: a ping is answered, a close
ends the relay. With aiohttp's client each of OpenIM's frames was read into a message and framed again
for the client, about a tenth of the guard's CPU per frame (``docs/performance.md``).

Bounded as aiohttp's client bounds it: the upgrade's answer (its head at most ``MAX_HEAD_BYTES`` and
``MAX_HEADERS`` fields, ``Sec-WebSocket-Accept`` checked, a refusal's body at most ``MAX_REFUSAL_BODY``
bytes), a frame's length (``max_frame``), what arrives before the client's upgrade is written
(``MAX_EARLY_BYTES``); a masked frame, RSV bits, an unknown opcode or a malformed control frame from
OpenIM drop the connection, as a protocol error does in aiohttp. A client that reads slower than OpenIM
writes pauses the reading from OpenIM (above ``HIGH_WATER`` bytes unsent to it) until it catches up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import os
import socket
import ssl
import struct
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlencode, urlsplit

import httptools

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
MAX_REFUSAL_BODY = 64 * 1024
MAX_EARLY_BYTES = 1024 * 1024
HIGH_WATER = 64 * 1024  # asyncio's own default for a transport's write buffer
LOW_WATER = 16 * 1024
DRAIN_POLL = 0.005
MAX_DRAIN_POLL = 0.2
STALL_LIMIT = 60.0  # a client that takes nothing OpenIM sent it for this long is dropped
LAST_FRAME_WAIT = 2.0  # how long a kick waits for the end of a message OpenIM split

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0, 1, 2, 8, 9, 10
_NO_STATUS = 1005  # RFC 6455: a close frame without a code
_PROTOCOL_ERROR = 1002


class UpgradeFailed(Exception):
    """OpenIM's msg-gateway answered the upgrade with something that is not a WebSocket."""


class Refused(Exception):
    """OpenIM answered the upgrade with plain HTTP (its refusal), to pass on as it came."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        super().__init__(f"OpenIM answered the upgrade with HTTP {status}")
        self.status = status
        self.content_type = content_type
        self.body = body


def sendable_close_code(code: int) -> int:
    """``code`` if a close frame may carry it (RFC 6455, section 7.4), else 1000."""
    return code if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999 else 1000


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A frame as a server writes it: final, unmasked."""
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A frame as a client must write it: final, masked with a fresh key (RFC 6455, section 5.3)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    if not length:
        return header + mask
    keys = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    return header + mask + (int.from_bytes(payload, "little") ^ keys).to_bytes(length, "little")


class OpenIMSocket(asyncio.Protocol):
    """One socket to OpenIM: :func:`connect` opens it; :meth:`attach` starts forwarding to the client."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: bytes, max_frame: int) -> None:
        self._loop = loop
        self._key = key
        self._max_frame = max_frame
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head_bytes = 0
        self._fields = 0
        self._headers: dict[bytes, bytes] = {}
        self._status = 0
        self._body = bytearray()
        self._buffer = bytearray()  # an incomplete frame; before attach, everything
        self._needed = 0  # the length of that frame, when its header is in: no parsing before it is whole
        self._sink: asyncio.Transport | None = None
        self._forwarding = True
        self._fragmented = False  # inside a message OpenIM split into frames
        self._held: list[bytes] = []  # the guard's frames to the client, held until that message ends
        self._close_after_held = False
        self._paused_writing = False
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._resuming: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[tuple[int, str] | None] = loop.create_future()
        """OpenIM's close (code, reason), or None when the connection dropped or broke the protocol."""

    # -- the upgrade ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            self._frames(data)
            return
        self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
            return
        except (httptools.HttpParserError, UpgradeFailed) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, UpgradeFailed) else exc
            self._fail_handshake(UpgradeFailed(str(cause)))
            return
        if self._status == 0 and self._head_bytes > MAX_HEAD_BYTES:
            self._fail_handshake(UpgradeFailed(f"an answer head over {MAX_HEAD_BYTES} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADERS:
            raise UpgradeFailed(f"an answer of over {MAX_HEADERS} header fields")
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        if self._status == 101 and not self._parser.should_upgrade():
            raise UpgradeFailed("101 without Upgrade: websocket")

    def on_body(self, body: bytes) -> None:
        room = MAX_REFUSAL_BODY - len(self._body)
        if room > 0:
            self._body += body[:room]

    def on_message_complete(self) -> None:
        if self._status != 101:
            self._refused()

    def _refused(self) -> None:
        content_type = self._headers.get(b"content-type", b"application/json").decode("latin-1")
        self._fail_handshake(Refused(self._status, content_type, bytes(self._body)))

    def _upgraded(self, tail: bytes) -> None:
        headers = self._headers
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())  # noqa: S324 - RFC 6455's own digest
        if self._status != 101:
            self._fail_handshake(UpgradeFailed(f"an upgrade answered {self._status}"))
        elif headers.get(b"upgrade", b"").lower() != b"websocket":
            self._fail_handshake(UpgradeFailed("an upgrade to something other than websocket"))
        elif headers.get(b"sec-websocket-accept") != accept:
            self._fail_handshake(UpgradeFailed("a wrong Sec-WebSocket-Accept"))
        elif headers.get(b"sec-websocket-extensions"):
            self._fail_handshake(UpgradeFailed("an extension nothing asked for"))
        else:
            self._parser = None
            if not self._handshake.done():
                self._handshake.set_result(None)
            if tail:
                self._frames(tail)

    def _fail_handshake(self, exc: Exception) -> None:
        self._parser = None
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        self.close_transport()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._handshake.done():
            if self._status and self._status != 101:
                self._refused()  # a refusal whose body ended with the connection
            else:
                self._handshake.set_exception(ConnectionResetError("OpenIM closed the connection during the upgrade"))
        self._wake_sender()
        if self._close_after_held and self._fragmented:
            self._give_up_last()  # the message a kick waited for will not end now
        self._end(None)

    # -- OpenIM's frames, to the client -----------------------------------------------------------

    def attach(self, sink: asyncio.Transport) -> None:
        """Forward to ``sink`` (the client's transport, its upgrade written) what came and what comes."""
        self._sink = sink
        early, self._buffer = bytes(self._buffer), bytearray()
        if early:
            self._frames(early)

    def _frames(self, data: bytes) -> None:
        if self._sink is None:  # the client's upgrade is not written yet: kept, within a bound
            if not self.ended.done():
                self._buffer += data
                if len(self._buffer) > MAX_EARLY_BYTES:
                    self._protocol_error()
            return
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:  # a long frame still arriving: appended, not parsed again
                return
            buf, self._buffer = bytes(self._buffer), bytearray()
        else:
            buf = data
        size, pos, start = len(buf), 0, 0
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            opcode = first & 0x0F
            # Masked, RSV bits no extension was agreed for, too long, or a control frame that is long,
            # fragmented or unknown: a protocol error, after the whole frames before it.
            if (
                second & 0x80
                or first & 0x70
                or length > self._max_frame
                or (opcode > _BINARY and (length > 125 or not first & 0x80 or opcode not in (_CLOSE, _PING, _PONG)))
                or _BINARY < opcode < _CLOSE
            ):
                self._forward(buf[start:pos])
                self._protocol_error()
                return
            end = pos + head + length
            if end > size:
                self._needed = end - pos
                break
            if opcode <= _BINARY:  # continuation, text, binary: the client's, as they came
                if opcode != _CONTINUATION or first & 0x80:
                    self._fragmented = not first & 0x80
                pos = end
                if self._close_after_held and not self._fragmented:  # the message a kick waited for has ended
                    self._forward(buf[start:pos])
                    self._release_held()
                    return
                continue
            self._forward(buf[start:pos])
            payload = buf[pos + head : end]
            if opcode == _PING:  # OpenIM's heartbeat for web clients: answered here, as aiohttp's autoping did
                self._write(_client_frame(_PONG, payload))
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else _NO_STATUS
                self._write(_client_frame(_CLOSE, payload[:2]))  # the close handshake, then the connection
                self.close_transport()
                self._end((code, payload[2:].decode(errors="replace")))
                return
            pos = start = end
        if start < pos:
            self._forward(buf if start == 0 and pos == size else buf[start:pos])
        if pos < size:
            self._buffer = bytearray(buf[pos:])
            if size - pos < 10:
                self._needed = 0  # the header itself is incomplete: parse with the next bytes
        if self._held and not self._fragmented:
            self._release_held()

    def _forward(self, frames: bytes) -> None:
        sink = self._sink
        if not frames or not self._forwarding or sink is None or sink.is_closing():
            return
        sink.write(frames)
        if not self._reading_paused and sink.get_write_buffer_size() > HIGH_WATER and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
            self._resuming = self._loop.create_task(self._resume_when_drained(sink))

    async def _resume_when_drained(self, sink: asyncio.Transport) -> None:
        """The client is slow: read OpenIM again once what it has not taken is down to ``LOW_WATER``; drop a client
        that takes nothing for ``STALL_LIMIT`` seconds."""
        # Polled, less often the longer it lasts: the transport is aiohttp's, whose protocol tells nobody when it
        # drains.
        delay, stalled_since = DRAIN_POLL, self._loop.time()
        while not sink.is_closing() and sink.get_write_buffer_size() > LOW_WATER:
            if self._loop.time() - stalled_since > STALL_LIMIT:
                sink.abort()
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DRAIN_POLL)
        self._reading_paused = False
        if self._transport is not None and not sink.is_closing():
            self._transport.resume_reading()

    def send_to_client(self, payload: bytes) -> None:
        """The guard's own binary frame to the client (an answer), never inside a message OpenIM split."""
        self._held.append(server_frame(_BINARY, payload))
        if not self._fragmented:
            self._release_held()

    def last_to_client(self, payload: bytes) -> None:
        """``payload`` (a kick) the last frame the client gets, once any message OpenIM was writing has ended
        (else, after ``LAST_FRAME_WAIT``, none); then the client's connection is dropped."""
        self._close_after_held = True
        self._held.append(server_frame(_BINARY, payload))
        if not self._fragmented:
            self._release_held()
        else:
            self._loop.call_later(LAST_FRAME_WAIT, self._give_up_last)

    def stop_forwarding(self) -> None:
        """Nothing more to the client, OpenIM's or the guard's held frames; a send waiting on OpenIM gives up."""
        self._forwarding = False
        self._held = []
        self._wake_sender()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        sink = self._sink
        if sink is None or sink.is_closing():
            return
        if held and self._forwarding:
            sink.write(b"".join(held))
        if self._close_after_held:
            self._forwarding = False
            sink.close()  # what is written leaves first

    def _give_up_last(self) -> None:
        """The message a kick waited for did not end: the client's connection dropped without it (a frame
        inside that message would break the client's protocol)."""
        if self._close_after_held and self._fragmented and self._sink is not None:
            self._held = []
            self._forwarding = False
            self._sink.close()

    # -- the client's frames, to OpenIM ------------------------------------------------------------

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def send(self, payload: bytes | str) -> None:
        """A client's frame to OpenIM (bytes as binary, text as text), waiting while OpenIM is not reading."""
        if isinstance(payload, str):
            self._write(_client_frame(_TEXT, payload.encode()))
        else:
            self._write(_client_frame(_BINARY, payload))
        if self._paused_writing:
            if self._drained is None:
                self._drained = self._loop.create_future()
            await self._drained

    def _wake_sender(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("OpenIM's connection is gone"))
        self._drained = None

    def _write(self, frame: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("OpenIM's connection is gone")
        self._transport.write(frame)

    def close(self, code: int) -> None:
        """End the socket to OpenIM with a close frame (OpenIM ends its side when it reads it); dropped at once
        when OpenIM is not reading, since nothing more would reach it."""
        self._forwarding = False
        self._wake_sender()
        if self._close_after_held and self._fragmented:
            self._give_up_last()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._paused_writing:
            transport.abort()
            return
        transport.write(_client_frame(_CLOSE, code.to_bytes(2, "big")))
        transport.close()

    def close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _protocol_error(self) -> None:
        self.close(_PROTOCOL_ERROR)
        self._end(None)

    def _end(self, result: tuple[int, str] | None) -> None:
        if self._sink is not None:
            self._buffer = bytearray()  # before attach it holds whole frames the client is still to get
        if not self.ended.done():
            self.ended.set_result(result)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One context for every ``wss://`` dial: making one reads the CA bundle (tens of ms of CPU)."""
    return ssl.create_default_context()


async def connect(
    url: str, query: Iterable[tuple[str, str]], *, headers: Iterable[tuple[str, str]] = (), max_frame: int
) -> OpenIMSocket:
    """Open a WebSocket to ``url`` with ``query``; :class:`Refused` carries a plain-HTTP answer, :class:`UpgradeFailed`
    any other that is no WebSocket, ``OSError`` a connection that failed. The caller bounds the time it takes."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + "?" + "&".join(filter(None, (parts.query, urlencode(list(query)))))
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16))
    _, openim = await loop.create_connection(
        lambda: OpenIMSocket(loop, key, max_frame),
        parts.hostname,
        port,
        ssl=_tls_context() if tls else None,
    )
    host = parts.netloc.rpartition("@")[2]
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers]
    try:
        openim._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await openim._handshake
    except BaseException:
        openim.close_transport()
        raise
    return openim
