"""The pool of connections to OpenIM, by property: whatever bytes OpenIM answers with, the caller gets the answer
they encode or an UpstreamError, the pool is left with no connection it lost track of, and the next call on it
gets its own answer, never the rest of the last one's."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from messenger_gw.openim._transport.pool import UpstreamError, UpstreamPool
from tests.openim.transport.test_pool import HEADERS, RawServer, read_request

FOLLOW_UP = b'{"errCode":0,"errMsg":"","errDlt":"","data":{"followUp":true}}'
TOKEN = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True)
FIELD_VALUE = st.from_regex(r"[!-~]([ \t!-~]{0,40}[!-~])?", fullmatch=True)
FRAMED_BY = {b"content-length", b"transfer-encoding", b"content-encoding", b"connection"}


class Script:
    """What the server answers: the next call's bytes, then FOLLOW_UP to every call after it."""

    def __init__(self) -> None:
        self.first: bytes = b""
        self.close_after_first = False
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            self.served += 1
            if self.served == 1:
                writer.write(self.first)
                await writer.drain()
                if self.close_after_first:
                    return
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(FOLLOW_UP), FOLLOW_UP))
                await writer.drain()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, UpstreamPool]]:
    script = Script()
    server = RawServer(script.handle)
    await server.start()
    pool = UpstreamPool(server.url, max_connections=2, connect=1, pool=1)
    yield script, pool
    await pool.close()
    await server.close()


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, int, bytes, bool]:
    """A well-formed HTTP/1.1 answer: (its bytes, status, the body it encodes, whether it ends with the connection)."""
    status = draw(st.sampled_from([200, 200, 200, 400, 404, 500, 503]))
    body = draw(
        st.builds(
            lambda data, pad: orjson.dumps({"errCode": 0, "errMsg": "", "errDlt": "", "data": data, "pad": pad}),
            st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4),
            st.text(max_size=draw(st.sampled_from([10, 2_000, 300_000]))),
        )
    )
    encoding = draw(st.sampled_from(["identity", "none", "gzip", "x-gzip", "deflate", "GZIP"]))
    encoded = body
    if encoding.lower() in ("gzip", "x-gzip"):
        encoded = gzip.compress(body, compresslevel=draw(st.integers(1, 9)))
    elif encoding == "deflate":
        encoded = zlib.compress(body)
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    headers: list[tuple[str, str]] = [("Content-Type", "application/json; charset=utf-8")]
    headers += [
        (name, value)
        for name, value in draw(st.lists(st.tuples(TOKEN, FIELD_VALUE), max_size=6))
        if name.lower().encode() not in FRAMED_BY
    ]
    if encoding != "none":
        headers.append(("Content-Encoding", encoding))
    if framing == "length":
        headers.append(("Content-Length", str(len(encoded))))
        payload = encoded
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=5)))
        pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True) if b > a]
        ext = draw(st.sampled_from(["", ";name=value"]))
        payload = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in pieces) + b"0\r\n\r\n"
    else:
        headers.append(("Connection", "close"))
        payload = encoded
    ends_connection = framing == "close" or version == "HTTP/1.0"
    if version == "HTTP/1.0" and framing == "chunked":
        version = "HTTP/1.1"  # chunked is HTTP/1.1's
        ends_connection = framing == "close"
    interim = b"".join(
        b"HTTP/1.1 %d Interim\r\n%s\r\n" % (code, b"Link: </a>; rel=preload\r\n" if code == 103 else b"")
        for code in draw(st.lists(st.sampled_from([100, 103]), max_size=2))
    )
    head = f"{version} {status} Whatever\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return interim + head.encode() + payload, status, body, ends_connection


@st.composite
def damaged(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` cut short, with bytes changed, inserted or dropped, or something else entirely."""
    how = draw(st.sampled_from(["truncate", "flip", "insert", "drop", "garbage", "upgrade", "two answers"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "garbage":
        return draw(st.binary(max_size=200))
    if how == "upgrade":
        return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + raw
    if how == "two answers":
        return raw + raw
    at = draw(st.integers(0, max(0, len(raw) - 1)))
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1 :] if raw else raw
    if how == "insert":
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return raw[:at] + raw[at + draw(st.integers(1, 8)) :]


@given(answer=answers(), data=st.data())
async def test_any_answer_is_read_whole_or_refused_and_leaves_the_pool_in_step(
    scripted: tuple[Script, UpstreamPool],
    caplog: pytest.LogCaptureFixture,
    answer: tuple[bytes, int, bytes, bool],
    data: st.DataObject,
) -> None:
    script, pool = scripted
    raw, status, body, ends_connection = answer
    intact = data.draw(st.sampled_from([True, False]), label="intact")
    script.first = raw if intact else data.draw(damaged(raw), label="damaged")
    script.close_after_first = ends_connection or not intact
    script.served = 0
    caplog.clear()
    try:
        received = await pool.request("POST", "/msg/get_server_time", HEADERS, b"{}")
        try:
            got = (received.status, await received.read())
        finally:
            received.close()
    except UpstreamError:
        got = None
    event("intact" if intact else f"damaged: {'refused' if got is None else 'read'}")
    if intact:
        assert got == (status, body)
    # No connection the pool counts but nobody holds, and none waiting.
    await asyncio.sleep(0)
    state = pool.state()
    assert (state.open, state.waiting) == (state.idle, 0), state
    # The next call gets its own answer, never bytes of the last one's. It may find its connection closed
    # by the server meanwhile (an UpstreamError: nothing is sent twice), so it may take a second call.
    for attempt in range(2):
        try:
            follow = await pool.request("POST", "/msg/get_server_time", HEADERS, b"{}")
            try:
                assert (follow.status, await follow.read()) == (200, FOLLOW_UP)
            finally:
                follow.close()
            break
        except UpstreamError:
            assert attempt == 0, "a fresh connection failed too"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
