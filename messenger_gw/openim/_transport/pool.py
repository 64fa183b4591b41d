"""HTTP/1.1 to one origin, OpenIM's REST API: a bounded pool of keep-alive connections.

The gateway's other peers (the user service, webhooks in tests) go through
aiohttp's ``ClientSession``. Calls to OpenIM do not: every /im request makes
one, and through ``ClientSession`` a call costs about 65 µs of CPU (request and
response objects, URL handling, cookie jar, traces, timers), a third of the
gateway's whole cost per request. This pool makes the same call for about a
tenth of that (``docs/performance.md``, "The upstream client"). It does only
what calls to OpenIM need:

* requests with a body of bytes, written in one piece with ``Host`` and
  ``Content-Length``; a caller's header named ``Host``, ``Content-Length``,
  ``Transfer-Encoding`` or ``Connection`` (which would change the framing), a
  header holding CR or LF, or a target holding a space or a control character,
  is refused (``ValueError``) before anything is sent;
* HTTP/1.1 or 1.0 answers framed by ``Content-Length``, chunked, or by the end
  of the connection, parsed by httptools (llhttp, as in uvicorn), and decoded
  when OpenIM gzips them (``Accept-Encoding: gzip`` is asked for), within the
  bounds below;
* a bounded pool, most recently used connection first; a bounded wait for a
  free connection and a bounded connect; idle connections closed after
  ``keepalive`` seconds, before the server's own idle limit is likely to bite;
* a connection is reused only after a complete answer that allows keep-alive.
  An answer abandoned before its end, by the caller or by cancellation,
  closes its connection. Nothing is ever sent twice; trying again after a
  :class:`ConnectError` is the caller's choice.

Answers are buffered up to :data:`HIGH_WATER` bytes before reading from the
socket pauses; reading the answer resumes it. A compressed answer is decoded
:data:`DECODE_STEP` bytes at a time, as it is read: what has arrived but is not
decoded yet stays compressed, and reading from the socket waits for it.

Errors, all :class:`UpstreamError`:

* ConnectError - no connection could be made; nothing was sent.
* ConnectTimeout - no connection within the pool or connect timeout; nothing was sent.
* AnswerRefused - the answer breaks a rule the pool keeps; its ``kind`` names the
  rule: ``upgrade`` (a 101: nothing asks to switch protocols), ``http_version``
  (not HTTP/1.1 or 1.0), ``header_too_large``, ``too_many_headers``,
  ``answer_too_large`` (the bounds below).
* UpstreamError itself - the connection failed or closed before the answer was
  complete, or the answer is not HTTP/1.1 the pool can read.

Every error's ``kind`` is the label it is counted under (``openim/client.py``). The
connection an error happened on is dropped, never handed out again.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import zlib
from collections.abc import Sequence
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
KEEPALIVE = 15.0

# What an answer can make the pool hold. The header bounds are aiohttp's client's
# (``ClientSession`` in aiohttp 3.14: ``max_field_size=8190``, ``max_headers=128``).
MAX_FIELD_SIZE = 8190  # one header field: its name, ": " and its value
MAX_HEADERS = 128  # fields in one answer's head and trailers together
# Bytes of head (or of trailers) in a row: what the two bounds above allow, and a bound on what
# httptools holds while a field is still arriving (it keeps the field whole until it ends).
MAX_HEAD_BYTES = MAX_FIELD_SIZE * (MAX_HEADERS + 1)
# A compressed answer is decoded this much at a time, the rest held compressed until it is read:
# deflate expands up to about 1000 times, so one socket read decoded whole could take hundreds of MiB.
DECODE_STEP = 64 * 1024
# An answer's body, decoded: a few KiB of gzip cannot expand beyond it, and no answer read whole
# holds more. An OpenIM answer is one page of a list; one this large is not one anybody asked for.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# A caller's header with one of these names would change how the request is framed or routed.
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class PoolState(NamedTuple):
    open: int  # idle or carrying a call
    idle: int
    waiting: int  # calls waiting for a connection


class UpstreamError(Exception):
    """The call failed in transport: see the module's docstring for the subclasses."""

    kind = "unavailable"  # the ``kind`` label the failure is counted under: one of a fixed few


class ConnectError(UpstreamError):
    kind = "connect"


class ConnectTimeout(UpstreamError):
    kind = "timeout"


class AnswerRefused(UpstreamError):
    """The answer is one the pool does not read: ``kind`` says which rule it broke."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class UpstreamPool:
    """Connections to ``origin`` (``http://host:port`` or ``https://...``), at most ``max_connections``."""

    def __init__(
        self,
        origin: str,
        *,
        max_connections: int,
        connect: float,
        pool: float,
        keepalive: float = KEEPALIVE,
        tls: ssl.SSLContext | None = None,
        kept_headers: frozenset[str] = frozenset(),
    ) -> None:
        """``tls`` is the context for an https origin; by default, the system's trusted CAs. The header fields
        of an answer named in ``kept_headers`` (lower case) are kept in :attr:`Answer.headers`; OpenIM's
        callers read none, so by default none is kept."""
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.path.strip("/")
            or parts.query
        ):
            raise ValueError("an upstream origin is http(s)://host[:port], with no credentials, path or query")
        if max_connections < 1 or connect <= 0 or pool <= 0 or keepalive <= 0:
            raise ValueError("max_connections, connect, pool and keepalive must be positive")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self._max = max_connections
        self._connect_timeout = connect
        self._pool_timeout = pool
        self._keepalive = keepalive
        self._kept_headers = frozenset(name.lower().encode("latin-1") for name in kept_headers)
        self._prefix = f"\r\nHost: {parts.netloc}\r\nAccept-Encoding: gzip\r\n"
        self._idle: list[_Connection] = []  # the most recently used last
        self._connections: set[_Connection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        """Send one request with ``headers`` (name and value pairs); return its answer once the status
        line and headers are in."""
        for name, _ in headers:
            if name.lower() in FRAMING_HEADERS:
                raise ValueError(f"the pool sets {name} itself: a caller may not")
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("a header name or value holds CR or LF")
        if " " in target or not target.isprintable():
            raise ValueError("the request target holds a space or a control character")
        head = f"{method} {target} HTTP/1.1{self._prefix}{fields}Content-Length: {len(body)}\r\n\r\n"
        connection = self._idle.pop() if self._idle else None
        if connection is None or connection.idle_since + self._keepalive < connection.loop.time():
            connection = await self._acquire(connection)
        return await connection.send(head.encode("utf-8", "surrogateescape"), body)

    def state(self) -> PoolState:
        waiting = sum(not waiter.done() for waiter in self._waiters)
        return PoolState(open=len(self._connections), idle=len(self._idle), waiting=waiting)

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._connections):
            connection.abort()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # the aborted transports report their loss

    # -- the pool --------------------------------------------------------------------------

    async def _acquire(self, stale: _Connection | None) -> _Connection:
        if stale is not None:  # idle too long: so has every connection idle before it
            for connection in [*self._idle, stale]:
                connection.abort()
            self._idle.clear()
        if self._closed:
            raise UpstreamError("the upstream pool is closed")
        if self._busy():
            await self._wait_for_a_connection()
            if self._idle:
                return self._idle.pop()
        self._connecting += 1
        try:
            connection = await self._connect()
            if connection.closed:  # before this task resumed
                raise ConnectError(f"{self.origin} closed the connection as it opened")
            self._connections.add(connection)
            return connection
        except BaseException:
            self._wake_a_waiter()  # the slot is free again
            raise
        finally:
            self._connecting -= 1

    def _busy(self) -> bool:
        """Every connection the limit allows is open or opening."""
        return len(self._connections) + self._connecting >= self._max

    async def _wait_for_a_connection(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._pool_timeout):
                while not self._idle and self._busy():
                    waiter = loop.create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._wake_a_waiter()  # woken, then given up: the turn passes on
                        elif waiter in self._waiters:
                            self._waiters.remove(waiter)
                        raise
                    if self._closed:
                        raise UpstreamError("the upstream pool is closed")
        except TimeoutError:
            raise ConnectTimeout(f"no free connection to {self.origin} within {self._pool_timeout:g} s") from None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {self.origin} took over {self._connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {self.origin}: {exc}") from exc
        return connection

    def _reuse(self, connection: _Connection) -> None:
        if self._closed:
            connection.abort()
            return
        connection.idle_since = connection.loop.time()
        self._idle.append(connection)
        self._wake_a_waiter()

    def _forget(self, connection: _Connection) -> None:
        """The connection is closing: it no longer counts against the limit."""
        self._connections.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._wake_a_waiter()

    def _wake_a_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Answer:
    """An answer's status, and its body as it arrives."""

    __slots__ = (
        "_connection", "_decoder", "_done", "_ended", "_error", "_headers", "_parts", "_size", "_tail", "_total",
        "_waiter", "headers", "status",
    )  # fmt: skip

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self._headers: asyncio.Future[None] = connection.loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None
        self._tail = b""  # compressed body that has arrived and is not decoded yet
        self._parts: collections.deque[bytes] = collections.deque()
        self._size = 0  # in _parts
        self._total = 0  # of the body so far, decoded
        self._ended = False  # all of the answer has arrived
        self._done = False  # ... and is decoded
        self._error: UpstreamError | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []  # the final answer's fields the pool keeps (kept_headers)

    def at_eof(self) -> bool:
        """The whole body has been read."""
        return self._done and not self._parts

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all of it for -1), b"" at its end; waits only when none is in."""
        while not self._parts or (size < 0 and not self._done):
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            if self._tail:  # arrived, compressed: decoding it needs no wait
                self._decode(HIGH_WATER if size >= 0 else MAX_ANSWER_BYTES + 1)
                continue
            if self._connection is None:
                raise UpstreamError("the answer was closed before its end")
            self._connection.resume_reading()  # reading the whole body may need more than HIGH_WATER
            self._waiter = self._connection.loop.create_future()
            await self._waiter
        if size < 0 or self._size <= size:
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts.clear()
        else:
            data = self._take(size)
        self._size -= len(data)
        if self._size < LOW_WATER:
            if self._tail:
                self._decode(HIGH_WATER)
            elif self._connection is not None:
                self._connection.resume_reading()
        return data

    def close(self) -> None:
        """Done with the answer: an unfinished one closes its connection."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._done:
            connection.abort()
        self._parts.clear()
        self._tail = b""

    def _take(self, size: int) -> bytes:
        taken: list[bytes] = []
        wanted = size
        while wanted:
            part = self._parts.popleft()
            if len(part) > wanted:
                part, rest = part[:wanted], part[wanted:]
                self._parts.appendleft(rest)
            taken.append(part)
            wanted -= len(part)
        return b"".join(taken)

    # -- fed by the connection ----------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._decoder is None:
            self._push(data)
        else:
            self._tail = self._tail + data if self._tail else data
            self._decode(HIGH_WATER)

    def _push(self, data: bytes) -> None:
        self._total += len(data)
        if self._total > MAX_ANSWER_BYTES:
            self._refuse(AnswerRefused("answer_too_large", f"the answer's body is over {MAX_ANSWER_BYTES} bytes"))
            return
        self._parts.append(data)
        self._size += len(data)
        self._wake()
        if self._size > HIGH_WATER and self._connection is not None:
            self._connection.pause_reading()

    def _decode(self, room: int) -> None:
        """Decode what has arrived while less than ``room`` bytes wait unread."""
        decoder = self._decoder
        assert decoder is not None
        while self._tail and self._size < room and self._error is None:
            try:
                data = decoder.decompress(self._tail, DECODE_STEP)
            except zlib.error:
                self._refuse(UpstreamError("the answer's gzip encoding is broken"))
                return
            self._tail = b"" if decoder.eof else decoder.unconsumed_tail
            if data:
                self._push(data)
        if self._error is not None:
            return
        if self._tail:
            if self._connection is not None:  # no more from the socket until this is read
                self._connection.pause_reading()
        elif self._ended:
            self._finish()

    def _end(self) -> None:
        self._ended = True
        if self._error is None and not self._tail:
            self._finish()

    def _finish(self) -> None:
        """All of the answer is in and decoded, but for what zlib holds back."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            rest = decoder.flush()  # all input is consumed: at most what zlib held back
            if not decoder.eof:
                self._refuse(UpstreamError("the answer's gzip stream is truncated"))
                return
            if rest:
                self._push(rest)
                if self._error is not None:
                    return
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:  # only now: an answer refused while it is decoded drops it
            connection._answered()
        self._wake()

    def _refuse(self, error: UpstreamError) -> None:
        """The answer cannot be read on: its reader gets ``error``, and its connection, if it still has it, goes."""
        self._fail(error)
        connection, self._connection = self._connection, None
        if connection is not None:
            connection._fail(error)  # dropped, and it feeds this answer no more

    def _fail(self, error: UpstreamError) -> None:
        if self._done or self._error is not None:
            return
        self._error = error
        self._tail = b""
        if not self._headers.done():
            self._headers.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls its ``on_*`` methods while parsing an answer."""

    def __init__(self, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle_since = 0.0
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: Answer | None = None
        self._framed = False  # the answer's length is known: it does not end with the connection
        self._paused = False
        self._closed = False  # aborted, or lost: out of the pool either way
        # Of the message being parsed (an interim answer is a message of its own):
        self._first = False  # no byte of the answer has arrived yet
        self._keep_alive = False  # the answer allows the connection to carry the next call
        self._in_head = False  # its head is not complete: what follows is trailers
        self._fields = 0  # header fields so far, trailers included
        self._unframed_bytes = 0  # bytes since the last body data: head, chunk sizes, trailers
        self._encoding: bytes | None = None
        self._kept: list[tuple[str, str]] = []  # of the message's head, in kept_headers

    async def send(self, head: bytes, body: bytes) -> Answer:
        if self._closed or self._transport is None:  # closed while idle, after the pool handed it out
            raise UpstreamError(f"the connection to {self._pool.origin} closed")
        answer = self._answer = Answer(self)
        self._framed = False
        self._first = True
        self._keep_alive = False
        self._next_message()
        self._transport.writelines((head, body))
        try:
            await answer._headers
        except BaseException:
            answer.close()
            raise
        return answer

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool._forget(self)  # at once: its slot is free now, not when the loss is reported
            if self._transport is not None:
                self._transport.abort()

    def pause_reading(self) -> None:
        if not self._paused and self._transport is not None and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self._transport is not None and not self._closed:
            self._paused = False
            self._transport.resume_reading()

    # -- asyncio --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, not by inheritance
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # nothing was asked: the stream is out of step
            self.abort()
            return
        if self._first:
            self._first = False
            if data[0] != 72:  # "H": llhttp takes an answer in RTSP/1.0 or ICE/1.0 as one in HTTP/1.0
                self._fail(AnswerRefused("http_version", f"{self._pool.origin} sent an answer that is not HTTP/1.x"))
                return
        self._unframed_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a callback below refused the answer
            refusal = exc.__context__
            if not isinstance(refusal, UpstreamError):
                raise
            self._fail(refusal)
        except httptools.HttpParserError as exc:
            self._failed(f"sent an answer that is not HTTP/1.1 ({exc})")
        else:
            if self._unframed_bytes > MAX_HEAD_BYTES and self._answer is not None:
                what = f"{self._pool.origin} sent over {MAX_HEAD_BYTES} bytes of header"
                self._fail(AnswerRefused("header_too_large", what))

    def eof_received(self) -> bool:
        return False  # close: an answer is never written to a connection half closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._closed = True
            self._pool._forget(self)
        answer = self._answer
        if answer is not None and answer._headers.done() and not self._framed:
            self._answer = None
            answer._end()  # an answer of unknown length ends with its connection
        elif answer is not None:
            self._failed("closed the connection before the answer was complete")

    # -- httptools ------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADERS:
            what = f"{self._pool.origin} sent over {MAX_HEADERS} header fields"
            raise AnswerRefused("too_many_headers", what)
        if len(name) + len(value) + 2 > MAX_FIELD_SIZE:
            what = f"{self._pool.origin} sent a header field over {MAX_FIELD_SIZE} bytes"
            raise AnswerRefused("header_too_large", what)
        if not self._in_head:  # a trailer: the body it follows was framed and decoded by the head
            return
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self._framed = True
        elif lower == b"content-encoding":  # several are several encodings, none of them offered
            self._encoding = value if self._encoding is None else self._encoding + b"," + value
        elif lower in self._pool._kept_headers:
            self._kept.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        answer = self._answer
        if answer is None:  # a second answer to one request: the stream is out of step
            self._failed("sent an answer nothing asked for")
            return
        version = self._parser.get_http_version()
        if version != "1.1" and version != "1.0":  # llhttp also takes 0.9 and 2.0 here
            raise AnswerRefused("http_version", f"{self._pool.origin} answered in HTTP/{version}")
        status = self._parser.get_status_code()
        if status == 101:  # nothing asked to switch protocols: llhttp would stop parsing here
            raise AnswerRefused("upgrade", f"{self._pool.origin} switched protocols (101) unasked")
        self._in_head = False
        encoding, self._encoding = self._encoding, None
        if status < 200:  # 1xx: an interim answer, the real one follows; its headers describe no body
            return
        answer.status = status
        answer.headers = self._kept
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in (b"gzip", b"x-gzip", b"deflate"):
                answer._decoder = zlib.decompressobj(wbits=47)  # zlib or gzip, told apart by their headers
            elif encoding != b"identity":
                raise UpstreamError(f"{self._pool.origin} answered in an encoding it was not offered ({encoding!r})")
        if status in (204, 304):
            self._framed = True
        if not answer._headers.done():
            answer._headers.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._unframed_bytes = 0
        answer = self._answer
        if answer is not None:
            answer._feed(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        if answer is None or answer.status < 200:  # the end of an interim answer
            self._answer = answer
            self._framed = False
            self._next_message()
            return
        self._keep_alive = self._parser.should_keep_alive()
        answer._end()  # which hands the connection back by _answered once the answer is decoded, or drops it

    def _answered(self) -> None:
        """The answer it carried is complete, read from the socket and decoded."""
        self.resume_reading()  # reading the answer paused it: the next call's answer must get through
        if self._keep_alive and not self._closed:
            self._pool._reuse(self)
        else:
            self.abort()

    def _next_message(self) -> None:
        self._in_head = True
        self._fields = 0
        self._unframed_bytes = 0
        self._encoding = None
        self._kept = []

    def _failed(self, what: str) -> None:
        self._fail(UpstreamError(f"{self._pool.origin} {what}"))

    def _fail(self, error: UpstreamError) -> None:
        """The answer cannot be read: its caller gets ``error`` and the connection is dropped."""
        answer, self._answer = self._answer, None
        if answer is not None:
            answer._fail(error)
        self.abort()
