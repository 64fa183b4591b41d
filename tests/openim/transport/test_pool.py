"""The pool of HTTP/1.1 connections to OpenIM, against servers that write exactly the bytes a test gives."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import logging
import socket
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from messenger_gw.openim._transport.pool import (
    DECODE_STEP,
    HIGH_WATER,
    MAX_ANSWER_BYTES,
    MAX_FIELD_SIZE,
    MAX_HEADERS,
    Answer,
    ConnectError,
    ConnectTimeout,
    PoolState,
    UpstreamError,
    UpstreamPool,
)
from tests.conftest import LOOPBACK, free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = [("operationID", "op-1"), ("Content-Type", "application/json")]


class RawServer:
    """A loopback server running ``handler`` per connection; it counts connections and keeps requests."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://{LOOPBACK}:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def answering(*answers: bytes) -> Handler:
    """Answer each request on a connection with the next of ``answers``, then keep the connection open."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        await reader.read()

    return handler


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., UpstreamPool]]:
    made: list[UpstreamPool] = []

    def pool(
        url: str, max_connections: int = 4, connect: float = 10, wait: float = 10, keepalive: float = 15
    ) -> UpstreamPool:
        # Deadlines a test does not check are generous: on a loaded machine a loopback connect has taken over 1 s.
        made.append(UpstreamPool(url, max_connections=max_connections, connect=connect, pool=wait, keepalive=keepalive))
        return made[-1]

    yield pool
    for pool_ in made:
        await pool_.close()


async def body_of(pool: UpstreamPool, target: str = "/msg/get_server_time", body: bytes = b"{}") -> bytes:
    answer = await pool.request("POST", target, HEADERS, body)
    try:
        return await answer.read()
    finally:
        answer.close()


async def test_a_request_carries_host_length_headers_and_body(serve: Callable[[Handler], Awaitable[RawServer]]) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(ok(b'{"errCode":0}'))
        await reader.read()

    server = await serve(handler)
    pool = UpstreamPool(server.url, max_connections=1, connect=1, pool=1)
    try:
        assert await body_of(pool, "/msg/send_msg?x=1", b'{"a":1}') == b'{"errCode":0}'
    finally:
        await pool.close()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /msg/send_msg?x=1 HTTP/1.1"
    host = server.url.removeprefix("http://").encode()
    assert set(lines[1:]) == {
        b"Host: " + host,
        b"Accept-Encoding: gzip",
        b"operationID: op-1",
        b"Content-Type: application/json",
        b"Content-Length: 7",
    }
    assert body == b'{"a":1}'


async def test_a_connection_is_kept_alive_and_reused(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    server = await serve(answering(*[ok(b"%d" % i) for i in range(3)]))
    pool = pools(server.url)
    assert [await body_of(pool) for _ in range(3)] == [b"0", b"1", b"2"]
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Encoding: gzip\r\n\r\n",  # body filled in below
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
    ],
    ids=["chunked", "length", "gzip", "until-close", "http-1.0"],
)
async def test_every_framing_reads_the_same_body(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], answer: bytes
) -> None:
    if b"gzip" in answer:
        packed = gzip.compress(b"hello world")
        answer = answer.replace(b"Content-Length: 11", b"Content-Length: %d" % len(packed)) + packed
    closes = b"Content-Length" not in answer and b"chunked" not in answer

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer)
            if closes:
                return  # and the server closes the connection

    server = await serve(handler)
    pool = pools(server.url)
    assert await body_of(pool) == b"hello world"
    assert await body_of(pool) == b"hello world"
    assert server.connections == (2 if closes or b"HTTP/1.0" in answer else 1)


async def test_a_deflate_answer_is_decoded(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    packed = zlib.compress(b'{"errCode":0}')
    server = await serve(answering(ok(packed, "Content-Encoding: deflate")))
    assert await body_of(pools(server.url)) == b'{"errCode":0}'


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (ok(b"not gzip at all", "Content-Encoding: gzip"), "gzip encoding is broken"),
        (ok(gzip.compress(b"x" * 1000)[:-12], "Content-Encoding: gzip"), "gzip stream is truncated"),
        (ok(b"xx", "Content-Encoding: br"), "encoding it was not offered"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP/1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "closed the connection before the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed the connection before the answer"),
    ],
    ids=["bad-gzip", "truncated-gzip", "brotli", "not-http", "short-body", "short-head"],
)
async def test_an_answer_that_cannot_be_read_is_an_upstream_error_and_its_connection_is_dropped(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], answer: bytes, error: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        writer.close()

    server = await serve(handler)
    pool = pools(server.url, max_connections=1)
    with pytest.raises(UpstreamError, match=error):
        await body_of(pool)
    with pytest.raises(UpstreamError, match=error):  # the slot came back: a second call is not stuck
        await body_of(pool)
    assert server.connections == 2


def refusing_first(answer: bytes) -> Handler:
    """Answer the first connection's request with ``answer``, every later connection's with ``ok(b"fine")``."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(answer if connections == 1 else ok(b"fine"))
        await reader.read()  # until the pool drops the connection

    return handler


async def refused(pool: UpstreamPool, server: RawServer, kind: str) -> UpstreamError:
    """The first call's answer is refused as ``kind``; its connection is dropped, and its slot serves the next call."""
    with pytest.raises(UpstreamError) as refusal:
        async with asyncio.timeout(5):
            await body_of(pool)
    assert refusal.value.kind == kind
    assert pool.state() == PoolState(open=0, idle=0, waiting=0)
    assert await body_of(pool) == b"fine"
    assert server.connections == 2
    assert pool.state() == PoolState(open=1, idle=1, waiting=0)
    return refusal.value


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    ],
    ids=["101", "100-then-101"],
)
async def test_a_101_answer_is_refused_as_an_upstream_error_without_a_fatal_protocol_error(
    serve: Callable[[Handler], Awaitable[RawServer]],
    pools: Callable[..., UpstreamPool],
    caplog: pytest.LogCaptureFixture,
    answer: bytes,
) -> None:
    server = await serve(refusing_first(answer))
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        refusal = await refused(pools(server.url, max_connections=1), server, "upgrade")
    assert "switched protocols (101)" in str(refusal)
    assert [record.getMessage() for record in caplog.records if record.name == "asyncio"] == []


def field(name: str, size: int) -> str:
    """A header field line of exactly ``size`` bytes (name, ": ", value)."""
    return f"{name}: {'v' * (size - len(name) - 2)}\r\n"


@pytest.mark.parametrize("size", [MAX_FIELD_SIZE, MAX_FIELD_SIZE + 1])
async def test_a_header_field_over_8190_bytes_is_refused(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], size: int
) -> None:
    answer = ok(b"big", field("X-Big", size).removesuffix("\r\n")).replace(
        b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\n"
    )
    server = await serve(refusing_first(answer))
    pool = pools(server.url, max_connections=1)
    if size > MAX_FIELD_SIZE:
        await refused(pool, server, "header_too_large")
    else:
        assert await body_of(pool) == b"big"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Endless: " + b"v" * (2 << 20),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Endless: " + b"v" * (2 << 20),
    ],
    ids=["head", "trailers"],
)
async def test_a_head_that_never_ends_is_refused_before_it_is_held_whole(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], answer: bytes
) -> None:
    server = await serve(refusing_first(answer))
    await refused(pools(server.url, max_connections=1), server, "header_too_large")


@pytest.mark.parametrize("fields", [MAX_HEADERS, MAX_HEADERS + 1])
async def test_more_than_128_header_fields_are_refused(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], fields: int
) -> None:
    answer = ok(b"many", *[f"X-Field-{n}: {n}" for n in range(fields - 1)])  # and Content-Length
    server = await serve(refusing_first(answer))
    pool = pools(server.url, max_connections=1)
    if fields > MAX_HEADERS:
        await refused(pool, server, "too_many_headers")
    else:
        assert await body_of(pool) == b"many"


async def read_in_parts(answer: Answer, sizes: list[int]) -> None:
    """Read ``answer`` to its end 64 KiB at a time, noting the size of each part in ``sizes``."""
    while not answer.at_eof():
        sizes.append(len(await answer.read(65536)))


def gzipped_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, wbits=31)
    block = bytes(1 << 20)
    whole, rest = divmod(size, len(block))
    return b"".join([*(packer.compress(block) for _ in range(whole)), packer.compress(block[:rest]), packer.flush()])


@pytest.mark.parametrize("reading", ["whole", "in-parts"])
async def test_a_small_gzip_answer_that_would_expand_beyond_the_bound_is_refused(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], reading: str
) -> None:
    bomb = gzipped_zeros(MAX_ANSWER_BYTES + 1)
    assert len(bomb) < MAX_ANSWER_BYTES // 500
    server = await serve(refusing_first(ok(bomb, "Content-Encoding: gzip")))
    pool = pools(server.url, max_connections=1)
    if reading == "whole":
        await refused(pool, server, "answer_too_large")
        return
    answer = await pool.request("POST", "/x", HEADERS, b"")
    parts: list[int] = []
    with pytest.raises(UpstreamError) as refusal:
        await read_in_parts(answer, parts)
    answer.close()
    assert refusal.value.kind == "answer_too_large"
    assert sum(parts) <= MAX_ANSWER_BYTES
    assert pool.state() == PoolState(open=0, idle=0, waiting=0)


async def test_a_gzip_answer_is_decoded_a_step_at_a_time_as_it_is_read(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    size = 32 << 20
    bomb = gzipped_zeros(size)  # 32 KiB: it arrives whole at once
    server = await serve(answering(ok(bomb, "Content-Encoding: gzip"), ok(b"next")))
    pool = pools(server.url, max_connections=1)
    tracemalloc.start()
    try:
        answer = await pool.request("POST", "/x", HEADERS, b"")
        await asyncio.sleep(0.1)
        parts = [len(await answer.read(65536))]
        _, held = tracemalloc.get_traced_memory()
        await read_in_parts(answer, parts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    answer.close()
    assert held < HIGH_WATER + DECODE_STEP + (1 << 20), "decoded as it is read, not when it arrives"
    assert peak < 4 << 20
    assert (sum(parts), max(parts)) == (size, 65536)
    assert await body_of(pool) == b"next", "the connection goes on to the next call"
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 100 Continue\r\nContent-Encoding: gzip\r\n\r\n" + ok(b"plain"),
        b"HTTP/1.1 103 Early Hints\r\nContent-Encoding: br\r\nLink: </a.css>\r\n\r\n" + ok(b"plain"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nplain\r\n0\r\nContent-Encoding: gzip\r\n\r\n",
    ],
    ids=["100", "103", "trailer"],
)
async def test_content_encoding_outside_the_answers_head_is_ignored(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], answer: bytes
) -> None:
    server = await serve(answering(answer, answer))
    pool = pools(server.url, max_connections=1)
    assert [await body_of(pool), await body_of(pool)] == [b"plain", b"plain"]
    assert server.connections == 1


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"RTSP/1.0", b"ICE/1.0"])
async def test_an_answer_in_another_protocol_version_is_refused(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], version: bytes
) -> None:
    server = await serve(refusing_first(ok(b"{}").replace(b"HTTP/1.1", version, 1)))
    await refused(pools(server.url, max_connections=1), server, "http_version")


async def test_a_refused_connection_is_a_connect_error(pools: Callable[..., UpstreamPool]) -> None:
    pool = pools(f"http://{LOOPBACK}:{free_port()}")
    with pytest.raises(ConnectError, match="cannot connect"):
        await body_of(pool)


async def test_a_connect_that_hangs_is_a_connect_timeout(pools: Callable[..., UpstreamPool]) -> None:
    # A listener whose backlog is full drops further SYNs, so connecting to it hangs.
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        url = f"http://{LOOPBACK}:{listener.getsockname()[1]}"
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                filler.connect_ex(listener.getsockname())
            pool = pools(url, connect=0.2)
            with pytest.raises(ConnectTimeout, match=r"connecting to .* took over 0\.2 s"):
                await body_of(pool)
        finally:
            for filler in fillers:
                filler.close()


async def test_calls_beyond_the_limit_wait_for_a_connection_then_time_out(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(ok(b"done"))
            await writer.drain()

    server = await serve(handler)
    pool = pools(server.url, max_connections=1, wait=0.2)
    first = asyncio.create_task(body_of(pool))
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectTimeout, match="no free connection"):
        await body_of(pool)
    waiting = asyncio.create_task(body_of(pool))
    await asyncio.sleep(0.05)
    assert pool.state() == PoolState(open=1, idle=0, waiting=1)
    release.set()
    assert await first == b"done"
    assert await waiting == b"done"
    assert server.connections == 1
    assert pool.state() == PoolState(open=1, idle=1, waiting=0)


async def test_many_calls_share_few_connections_and_calls_given_up_while_waiting_do_not_stall_the_rest(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    busy = peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy, peak
        while True:
            await read_request(reader)
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.002)
            busy -= 1
            writer.write(ok(b"ok"))
            await writer.drain()

    server = await serve(handler)
    pool = pools(server.url, max_connections=3, wait=5)
    calls = [asyncio.create_task(body_of(pool)) for _ in range(120)]
    await asyncio.sleep(0.01)
    given_up = calls[60::2]  # some still waiting for a connection, some perhaps already sent
    for call in given_up:
        call.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    finished = [r for call, r in zip(calls, results, strict=True) if call not in given_up]
    assert finished == [b"ok"] * len(finished)
    assert all(r == b"ok" or isinstance(r, asyncio.CancelledError) for r in results)
    assert peak <= 3
    state = pool.state()
    assert state.waiting == 0
    assert state.idle == state.open <= 3


async def test_a_call_given_up_before_its_answer_closes_its_connection(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    hang_once = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            if not hang_once.is_set():
                hang_once.set()
                await reader.read()  # until the client goes away
                return
            writer.write(ok(b"late"))
            await writer.drain()

    server = await serve(handler)
    pool = pools(server.url, max_connections=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await body_of(pool)
    # The answer to the abandoned call must never be read as the answer to the next.
    assert await body_of(pool) == b"late"
    assert server.connections == 2


async def test_a_long_answer_is_read_in_parts_and_not_buffered_whole(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    body = bytes(range(256)) * 65536  # 16 MiB: more than the socket buffers hold
    drained = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(body))
        await writer.drain()
        drained.set()
        await reader.read()

    server = await serve(handler)
    answer = await pools(server.url).request("POST", "/x", HEADERS, b"")
    await asyncio.sleep(0.2)
    assert not drained.is_set(), "the pool stops reading while the answer waits unread"
    parts = []
    while not answer.at_eof():
        parts.append(await answer.read(65536))
    answer.close()
    assert drained.is_set()
    assert b"".join(parts) == body
    assert max(map(len, parts)) <= 65536


async def test_a_connection_whose_answer_ended_while_its_reading_was_paused_carries_the_next_call(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    body = b"x" * (3 * HIGH_WATER)  # read whole, it ends with more than HIGH_WATER unread: reading is paused
    server = await serve(answering(ok(body), ok(b"next")))
    pool = pools(server.url, max_connections=1)
    assert await body_of(pool) == body
    async with asyncio.timeout(2):
        assert await body_of(pool) == b"next"
    assert server.connections == 1


@pytest.mark.parametrize("closed_by", ["server", "keepalive"])
async def test_an_idle_connection_closed_by_the_server_or_past_keepalive_is_replaced(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], closed_by: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"once"))
        await writer.drain()
        if closed_by == "keepalive":
            await reader.read()  # else close, as a server's idle timeout would

    server = await serve(handler)
    pool = pools(server.url, keepalive=0.05 if closed_by == "keepalive" else 15)
    assert await body_of(pool) == b"once"
    await asyncio.sleep(0.1)
    assert await body_of(pool) == b"once"
    assert server.connections == 2


async def test_a_line_break_in_a_header_or_the_target_is_refused_before_anything_is_sent(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool]
) -> None:
    server = await serve(answering(ok(b"x")))
    pool = pools(server.url)
    for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb"):
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("POST", "/x", [("token", value)], b"")
    for target in ("/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nPOST /y", "/x y", "/x\ty"):
        with pytest.raises(ValueError, match="request target"):
            await pool.request("POST", target, [], b"")
    assert server.connections == 0


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION"])
async def test_a_header_that_would_change_the_framing_is_refused_before_anything_is_sent(
    serve: Callable[[Handler], Awaitable[RawServer]], pools: Callable[..., UpstreamPool], name: str
) -> None:
    server = await serve(answering(ok(b"x")))
    pool = pools(server.url)
    with pytest.raises(ValueError, match=f"sets {name} itself"):
        await pool.request("POST", "/x", [*HEADERS, (name, "0")], b"")
    assert server.connections == 0


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for the loopback address, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_an_https_origin_is_reached_over_verified_tls(tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    server = RawServer(answering(ok(b"secure"), ok(b"again")), tls=server_tls)
    await server.start()
    trusting = UpstreamPool(
        server.url, max_connections=1, connect=1, pool=1, tls=ssl.create_default_context(cafile=cert_file)
    )
    untrusting = UpstreamPool(server.url, max_connections=1, connect=1, pool=1)
    try:
        assert server.url.startswith("https://")
        assert [await body_of(trusting), await body_of(trusting)] == [b"secure", b"again"]
        with pytest.raises(ConnectError, match="certificate verify failed"):
            await body_of(untrusting)
    finally:
        await trusting.close()
        await untrusting.close()
        await server.close()


def test_the_origin_must_be_an_origin() -> None:
    for url in ("ftp://h", "http://h/api", "http://u:p@h", "http://h?x=1", "http://"):
        with pytest.raises(ValueError, match="origin"):
            UpstreamPool(url, max_connections=1, connect=1, pool=1)


def test_the_pool_works_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[bytes, bytes, int]:
        server = RawServer(answering(ok(b"one"), ok(b"two")))
        await server.start()
        pool = UpstreamPool(server.url, max_connections=2, connect=1, pool=1)
        try:
            return await body_of(pool), await body_of(pool), server.connections
        finally:
            await pool.close()
            await server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == (b"one", b"two", 1)
