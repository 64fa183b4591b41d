"""The guard's WebSocket client to OpenIM's msg-gateway, against a loopback server that writes exactly the bytes a
test gives and keeps what the client sent it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
import uvloop

from messenger_gw.ws import _openim_socket
from messenger_gw.ws._openim_socket import (
    HIGH_WATER,
    OpenIMSocket,
    Refused,
    UpgradeFailed,
    connect,
    server_frame,
)
from tests.conftest import LOOPBACK

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def fragment(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, len(payload)) + payload


def upgrade_answer(request: bytes, accept: bytes | None = None) -> bytes:
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
    accept = accept or base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return head + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"


class MsgGateway:
    """OpenIM's msg-gateway as the wire shows it: ``answer`` makes its answer to the upgrade; then it writes what
    :meth:`write` is given and reads the client's frames, unmasked, into ``received``."""

    def __init__(self, answer: Callable[[bytes], bytes] = upgrade_answer) -> None:
        self.answer = answer
        self.request = b""
        self.received: asyncio.Queue[tuple[int, bytes, bool]] = asyncio.Queue()
        self.eof = asyncio.Event()
        self.url = ""
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.url = f"ws://{LOOPBACK}:{self._server.sockets[0].getsockname()[1]}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request = await reader.readuntil(b"\r\n\r\n")
        self._writer = writer
        self._connected.set()
        writer.write(self.answer(self.request))
        try:
            while True:
                first, second = await reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
                await self.received.put((first & 0x0F, payload, bool(second & 0x80)))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof.set()

    async def write(self, *chunks: bytes) -> None:
        await self._connected.wait()
        assert self._writer is not None
        for chunk in chunks:
            self._writer.write(chunk)
            await self._writer.drain()
            await asyncio.sleep(0.01)  # each its own read on the other side

    async def close(self) -> None:
        assert self._server is not None
        if self._writer is not None:
            self._writer.close()
        self._server.close()
        await self._server.wait_closed()


class Sink:
    """The client's transport as the socket sees it: what is written, in the writes it came in."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0  # what a slow client has not taken yet
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


def whole_frames(write: bytes) -> bool:
    """Whether ``write`` is a run of whole frames (so nothing else written between two writes splits one)."""
    pos = 0
    while pos < len(write):
        length, head = write[pos + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(write[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(write[pos + 2 : pos + 10], "big"), 10
        pos += head + length
    return pos == len(write)


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - a condition on what a fake transport was given
            await asyncio.sleep(0.005)
    assert condition(), what


@pytest.fixture
async def gateway() -> AsyncIterator[MsgGateway]:
    server = MsgGateway()
    await server.start()
    yield server
    await server.close()


Open = Callable[..., Awaitable[tuple[OpenIMSocket, Sink]]]


@pytest.fixture
async def opened(gateway: MsgGateway) -> AsyncIterator[Open]:
    sockets: list[OpenIMSocket] = []

    async def open_(*, attach: bool = True) -> tuple[OpenIMSocket, Sink]:
        socket = await connect(gateway.url, [("sendID", "alice"), ("sdkType", "js")], max_frame=1024)
        sockets.append(socket)
        sink = Sink()
        if attach:
            socket.attach(cast(asyncio.Transport, sink))
        return socket, sink

    yield open_
    for socket in sockets:
        socket.close(1000)


# -- the upgrade -----------------------------------------------------------------------------------


async def test_the_upgrade_asks_for_a_websocket_with_the_query_and_checks_the_accept(
    gateway: MsgGateway, opened: Open
) -> None:
    await opened()
    head = gateway.request.decode()
    assert head.startswith("GET /?sendID=alice&sdkType=js HTTP/1.1\r\n")
    for line in ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", f"Host: {LOOPBACK}:"):
        assert line in head


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: upgrade_answer(request, accept=b"d3Jvbmc="),
        lambda request: upgrade_answer(request).replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        lambda request: upgrade_answer(request).replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: x\r\n\r\n"),
        lambda request: b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Big: " + b"v" * 70_000,
        lambda request: b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ],
    ids=["wrong_accept", "not_websocket", "unasked_extension", "head_too_large", "not_http"],
)
async def test_an_answer_that_is_no_websocket_fails_the_upgrade(answer: Callable[[bytes], bytes]) -> None:
    server = MsgGateway(answer)
    await server.start()
    try:
        with pytest.raises(UpgradeFailed):
            async with asyncio.timeout(5):
                await connect(server.url, [], max_frame=1024)
    finally:
        await server.close()


async def test_a_plain_http_answer_is_a_refusal_passed_on_with_its_status_type_and_body() -> None:
    body = b'{"errCode":1602,"errMsg":"args err"}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    server = MsgGateway(lambda request: answer)
    await server.start()
    try:
        with pytest.raises(Refused) as refusal:
            await connect(server.url, [], max_frame=1024)
    finally:
        await server.close()
    assert (refusal.value.status, refusal.value.content_type, refusal.value.body) == (
        200,
        "application/json; charset=utf-8",
        body,
    )


# -- OpenIM's frames, to the client -------------------------------------------------------------------


async def test_openims_frames_reach_the_client_as_they_came_in_whole_frames(gateway: MsgGateway, opened: Open) -> None:
    _, sink = await opened()
    frames = [
        server_frame(TEXT, b'{"errCode":0}'),
        fragment(BINARY, b"first part ", fin=False),
        fragment(0, b"second part ", fin=False),
        fragment(0, b"last part", fin=True),
        server_frame(BINARY, b"x" * 300),  # a 16-bit length
    ]
    stream = b"".join(frames)
    # Cut anywhere: inside a header, inside a payload, two frames in one read.
    await gateway.write(stream[:1], stream[1:7], stream[7:40], stream[40:41], stream[41:])
    await until(lambda: sink.data == stream, "every frame, byte for byte")
    assert all(whole_frames(write) for write in sink.writes)


async def test_what_openim_sends_before_the_clients_upgrade_is_written_is_forwarded_first(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened(attach=False)
    hello = server_frame(TEXT, b'{"errCode":0,"errMsg":"","errDlt":""}')
    await gateway.write(hello)
    await asyncio.sleep(0.05)
    socket.attach(cast(asyncio.Transport, sink))
    assert sink.data == hello


async def test_the_guards_own_frame_waits_for_the_end_of_a_message_openim_split(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened()
    start, end = fragment(BINARY, b"a pull's answer, ", fin=False), fragment(0, b"its end", fin=True)
    await gateway.write(start)
    await until(lambda: sink.data == start, "the first part")
    socket.send_to_client(b"a refusal")
    assert sink.data == start, "not inside OpenIM's message"
    await gateway.write(end)
    await until(lambda: sink.data == start + end + server_frame(BINARY, b"a refusal"), "after its last part")


async def test_a_kick_is_the_last_frame_the_client_gets_and_its_connection_is_closed(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened()
    socket.last_to_client(b"kick")
    assert sink.data == server_frame(BINARY, b"kick")
    assert sink.closed
    await gateway.write(server_frame(BINARY, b"a push"))
    await asyncio.sleep(0.05)
    assert sink.data == server_frame(BINARY, b"kick"), "nothing of OpenIM's after it"


async def test_a_ping_is_answered_with_its_payload_and_not_forwarded(gateway: MsgGateway, opened: Open) -> None:
    _, sink = await opened()
    await gateway.write(server_frame(PING, b"heartbeat"))
    async with asyncio.timeout(5):
        assert await gateway.received.get() == (PONG, b"heartbeat", True)
    assert sink.data == b""


async def test_openims_close_ends_the_relay_with_its_code_and_reason(gateway: MsgGateway, opened: Open) -> None:
    socket, sink = await opened()
    await gateway.write(server_frame(BINARY, b"last"), server_frame(CLOSE, (4001).to_bytes(2, "big") + b"bye"))
    async with asyncio.timeout(5):
        assert await socket.ended == (4001, "bye")
        assert await gateway.received.get() == (CLOSE, (4001).to_bytes(2, "big"), True)
        await gateway.eof.wait()
    assert sink.data == server_frame(BINARY, b"last")


@pytest.mark.parametrize(
    "frame",
    [
        b"\x82\x83abcdxyz",  # masked
        b"\xc2\x01x",  # RSV1, no extension agreed
        b"\x83\x01x",  # opcode 3
        b"\x82\x7e\x04\x01" + b"x" * 1025,  # over max_frame
        b"\x89\x7e\x00\x80" + b"x" * 128,  # a ping over 125 bytes
        b"\x09\x01x",  # a fragmented ping
    ],
    ids=["masked", "rsv", "opcode", "too_long", "control_too_long", "control_fragmented"],
)
async def test_a_frame_that_breaks_the_protocol_drops_the_connection(
    gateway: MsgGateway, opened: Open, frame: bytes
) -> None:
    socket, sink = await opened()
    await gateway.write(frame)
    async with asyncio.timeout(5):
        assert await socket.ended is None
        assert await gateway.received.get() == (CLOSE, (1002).to_bytes(2, "big"), True)
        await gateway.eof.wait()
    assert sink.data == b""


async def test_a_client_that_does_not_read_pauses_the_reading_from_openim(gateway: MsgGateway, opened: Open) -> None:
    _, sink = await opened()
    first, second = server_frame(BINARY, b"first"), server_frame(BINARY, b"second")
    sink.buffered = HIGH_WATER + 1
    await gateway.write(first)
    await until(lambda: sink.data == first, "the first frame")
    await gateway.write(second)
    await asyncio.sleep(0.1)
    assert sink.data == first, "nothing more read from OpenIM while the client lags"
    sink.buffered = 0
    await until(lambda: sink.data == first + second, "read again once it caught up")


async def test_a_long_frame_arriving_in_many_reads_is_forwarded_once_whole(gateway: MsgGateway) -> None:
    socket = await connect(gateway.url, [], max_frame=1 << 20)
    sink = Sink()
    socket.attach(cast(asyncio.Transport, sink))
    long, short = server_frame(BINARY, b"p" * 200_000), server_frame(TEXT, b"next")
    stream = long + short
    chunks = [stream[n : n + 4096] for n in range(0, len(stream), 4096)]
    await gateway.write(*chunks[:3])
    await gateway.write(b"".join(chunks[3:]))
    await until(lambda: sink.data == stream, "both frames")
    assert sink.writes[0].startswith(long), "the long frame in one write, once it was whole"
    assert all(whole_frames(write) for write in sink.writes)
    socket.close(1000)


async def test_after_a_kick_that_waited_for_a_split_message_nothing_is_misread(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened()
    start, end = fragment(BINARY, b"part one ", fin=False), fragment(0, b"and its end", fin=True)
    await gateway.write(start)
    await until(lambda: sink.data == start, "the first part")
    socket.last_to_client(b"kick")
    await gateway.write(end[:5], end[5:] + server_frame(BINARY, b"a push"))  # its last frame in two reads
    await until(lambda: sink.closed, "closed after the kick")
    assert sink.data == start + end + server_frame(BINARY, b"kick"), "the message, the kick, and nothing after"
    await gateway.write(server_frame(PING, b"still read right"))
    async with asyncio.timeout(5):
        assert await gateway.received.get() == (PONG, b"still read right", True)


async def test_a_kick_whose_message_never_ends_drops_the_client_without_a_frame_inside_it(
    gateway: MsgGateway, opened: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_openim_socket, "LAST_FRAME_WAIT", 0.05)
    socket, sink = await opened()
    start = fragment(BINARY, b"part one ", fin=False)
    await gateway.write(start)
    await until(lambda: sink.data == start, "the first part")
    socket.last_to_client(b"kick")
    await until(lambda: sink.closed, "dropped")
    assert sink.data == start, "no kick inside OpenIM's message: it would break the client's protocol"


async def test_the_guards_held_frames_are_dropped_once_it_stops_forwarding(gateway: MsgGateway, opened: Open) -> None:
    socket, sink = await opened()
    start = fragment(BINARY, b"part one ", fin=False)
    await gateway.write(start)
    await until(lambda: sink.data == start, "the first part")
    socket.send_to_client(b"a refusal")
    socket.stop_forwarding()  # the guard closes the client's socket: nothing after its close frame
    await gateway.write(fragment(0, b"the end", fin=True))
    await asyncio.sleep(0.05)
    assert sink.data == start


async def test_frames_openim_sent_before_dropping_the_connection_still_reach_the_client(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened(attach=False)
    refusal = server_frame(TEXT, b'{"errCode":1505}')
    await gateway.write(refusal)
    await gateway.close()  # as OpenIM's RespondWithError: the answer, then the connection dropped
    async with asyncio.timeout(5):
        assert await socket.ended is None
    socket.attach(cast(asyncio.Transport, sink))
    assert sink.data == refusal


async def test_whole_frames_before_one_that_breaks_the_protocol_still_reach_the_client(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, sink = await opened()
    good = server_frame(BINARY, b"good")
    await gateway.write(good + b"\x82\x83abcdxyz")
    async with asyncio.timeout(5):
        assert await socket.ended is None
    assert sink.data == good


async def test_a_client_that_takes_nothing_for_the_stall_limit_is_dropped(
    gateway: MsgGateway, opened: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_openim_socket, "STALL_LIMIT", 0.1)
    _, sink = await opened()
    sink.buffered = HIGH_WATER + 1
    await gateway.write(server_frame(BINARY, b"unread"))
    await until(lambda: sink.aborted, "dropped")


# -- the client's frames, to OpenIM --------------------------------------------------------------------


async def test_the_clients_frames_reach_openim_masked_as_they_were(gateway: MsgGateway, opened: Open) -> None:
    socket, _ = await opened()
    await socket.send(b'{"reqIdentifier":1003}')
    await socket.send('{"type":"ping"}')
    await socket.send(b"y" * 1000)
    async with asyncio.timeout(5):
        assert await gateway.received.get() == (BINARY, b'{"reqIdentifier":1003}', True)
        assert await gateway.received.get() == (TEXT, b'{"type":"ping"}', True)
        assert await gateway.received.get() == (BINARY, b"y" * 1000, True)


async def test_a_send_waiting_on_openim_gives_up_when_the_guard_stops_forwarding(
    gateway: MsgGateway, opened: Open
) -> None:
    socket, _ = await opened()
    socket.pause_writing()  # as the transport says when OpenIM stops reading
    send = asyncio.create_task(socket.send(b"stuck"))
    await asyncio.sleep(0.05)
    assert not send.done()
    socket.stop_forwarding()  # the idle sweep, a drain
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(5):
            await send


def test_the_relay_works_on_uvloop_whose_transports_are_not_asyncios() -> None:
    async def exchange() -> None:
        server = MsgGateway()
        await server.start()
        try:
            socket = await connect(server.url, [], max_frame=1024)
            sink = Sink()
            socket.attach(cast(asyncio.Transport, sink))
            await socket.send(b"up")
            await server.write(server_frame(BINARY, b"down"))
            async with asyncio.timeout(5):
                assert await server.received.get() == (BINARY, b"up", True)
            await until(lambda: sink.data == server_frame(BINARY, b"down"), "OpenIM's frame")
            socket.close(1000)
        finally:
            await server.close()

    uvloop.run(exchange())
