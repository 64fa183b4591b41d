"""The WebSocket benchmark's load: OpenIM SDK-shaped sockets, each of its own user, driven as the SDK drives them.

    python ws_load.py frames URL LOGINS CONNECTIONS SECONDS PACE_MS
        small SendMsg frames (a 1:1 text, as the SDK's sendMessage builds it), each connection sending its next
        once the last is answered, or every PACE_MS when that is above 0; prints one JSON line: frames answered,
        duration, p50 and p99 of the time from a frame sent to its answer, errors (refused answers included)
    python ws_load.py idle URL LOGINS CONNECTIONS SECONDS
        opens CONNECTIONS sockets, then holds them for SECONDS, each pinging every 10 s as the SDK does; prints
        the sockets opened, the pongs missed and the sockets lost, then waits for a line on stdin before closing

LOGINS is a file of ``userID<TAB>imToken`` lines, one per connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import WSMsgType

from messenger_gw.protocol import sdkws_pb2

PING_INTERVAL = 10.0  # the SDK's heartbeat


def query(user_id: str, token: str) -> dict[str, str]:
    return {"sendID": user_id, "token": token, "platformID": "5", "operationID": "bench", "isBackground": "false",
            "isMsgResp": "true", "sdkType": "js"}  # fmt: skip


def frame_prefix(user_id: str) -> tuple[bytes, bytes]:
    """The frame of one small SendMsg, split around its msgIncr."""
    msg = sdkws_pb2.MsgData(
        sendID=user_id, recvID="bench_peer", clientMsgID="0" * 32, senderPlatformID=5, senderNickname=user_id,
        sessionType=1, msgFrom=100, contentType=101, content=b'{"content":"see you at noon"}', createTime=1,
        status=1,
    )  # fmt: skip
    data = base64.b64encode(msg.SerializeToString()).decode()
    head = b'{"reqIdentifier":1003,"msgIncr":"'
    tail = f'","sendID":"{user_id}","operationID":"bench","data":"{data}"}}'.encode()
    return head, tail


async def open_socket(
    http: aiohttp.ClientSession, url: str, user_id: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url, params=query(user_id, token), timeout=aiohttp.ClientWSTimeout(ws_close=2))
    hello = await ws.receive(timeout=10)
    if hello.type is not WSMsgType.TEXT or '"errCode":0' not in hello.data:
        raise RuntimeError(f"handshake refused: {hello.data!r}")
    return ws


async def frames(url: str, logins: list[tuple[str, str]], connections: int, seconds: float, pace_ms: float) -> None:
    latencies: list[float] = []
    errors = 0
    answered = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(*(open_socket(http, url, *logins[i]) for i in range(connections)))
        start = time.perf_counter()
        stop = start + seconds

        async def drive(ws: aiohttp.ClientWebSocketResponse, user_id: str) -> None:
            nonlocal errors, answered
            head, tail = frame_prefix(user_id)
            n = 0
            pace = pace_ms / 1000
            due = time.perf_counter() + random.random() * pace  # noqa: S311 - spread the paced connections over one interval
            while True:
                if pace:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += pace
                now = time.perf_counter()
                if now >= stop:
                    return
                n += 1
                await ws.send_bytes(head + str(n).encode() + tail)
                message = await ws.receive()
                if message.type is not WSMsgType.BINARY:
                    errors += 1
                    return
                latencies.append(time.perf_counter() - now)
                answered += 1
                if b'"errCode":0' not in message.data:
                    errors += 1

        await asyncio.gather(*(drive(ws, logins[i][0]) for i, ws in enumerate(sockets)))
        duration = time.perf_counter() - start
        for ws in sockets:
            await ws.close()
    latencies.sort()
    quantile = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    print(json.dumps({
        "frames": answered, "duration_s": duration, "fps": answered / duration, "errors": errors,
        "p50_us": quantile[49] * 1e6, "p99_us": quantile[98] * 1e6,
    }), flush=True)  # fmt: skip


async def idle(url: str, logins: list[tuple[str, str]], connections: int, seconds: float) -> None:
    lost = 0
    missed = 0
    stop = math.inf  # set once every socket is open: each pings from the moment it opened

    async def hold(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal lost, missed
        await asyncio.sleep(random.random() * PING_INTERVAL)  # noqa: S311 - spread the pings
        while time.perf_counter() < stop:
            try:
                await ws.send_str('{"type":"ping"}')
                pong = await ws.receive(timeout=PING_INTERVAL)
            except TimeoutError:
                missed += 1
                continue
            except ConnectionError:
                lost += 1
                return
            if pong.type is not WSMsgType.TEXT:
                lost += 1
                return
            await asyncio.sleep(PING_INTERVAL)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        holding: list[asyncio.Task[None]] = []
        failed = 0
        reasons: set[str] = set()
        for start in range(0, connections, 200):
            batch = await asyncio.gather(
                *(open_socket(http, url, *logins[i]) for i in range(start, min(connections, start + 200))),
                return_exceptions=True,
            )
            for ws in batch:
                if isinstance(ws, aiohttp.ClientWebSocketResponse):
                    sockets.append(ws)
                    holding.append(asyncio.create_task(hold(ws)))
                else:
                    failed += 1
                    reasons.add(type(ws).__name__)
        print(json.dumps({"opened": len(sockets), "failed": failed, "reasons": sorted(reasons)}), flush=True)
        stop = time.perf_counter() + seconds
        await asyncio.gather(*holding)
        print(json.dumps({"held": len(sockets) - lost, "lost": lost, "missed_pongs": missed}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the RSS is read meanwhile
        for ws in sockets:
            await ws.close()


def main() -> None:
    mode, url, logins_file, connections, seconds = sys.argv[1:6]
    logins = [tuple(line.split("\t")) for line in Path(logins_file).read_text().splitlines() if line]
    uvloop.install()
    if mode == "frames":
        asyncio.run(frames(url, logins, int(connections), float(seconds), float(sys.argv[6])))  # type: ignore[arg-type]
    else:
        asyncio.run(idle(url, logins, int(connections), float(seconds)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
