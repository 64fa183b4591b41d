"""``make bench``: the /im chain and the webhook route, each side by side with a bare baseline, on loopback.

Starts redis-server, nginx answering one static OpenIM envelope (it satisfies every call the
gateway makes: get_admin_token, get_user_token, the proxied route), and a stand-in user-service.
Then, for each worker count, drives wrk at:

  (a) the upstream directly, once;
  (b) a bare aiohttp pass-through proxy (bench/passthrough.py) with the same worker count, and
  (c) messenger-gw's full /im chain with requests pre-signed with distinct nonces, warm caches,
      flat out in turns (b c b c b c: the machine's speed drifts, so each pair runs back to back),
      then both paced at half of (b)'s rate, in turns too;
  (d0) a bare aiohttp handler doing one XADD per request (bench/bare_webhook.py), and
  (d) after-callbacks through the gateway's webhook route, in turns, every answered one checked
      in the stream; (e) before-callbacks paced at 1,000 per second;
  (f) a bare aiohttp WebSocket relay (bench/ws_relay.py) and (g) the gateway's WebSocket guard, both in front
      of one stand-in msg-gateway (bench/ws_upstream.py), in turns: small SendMsg frames flat out from
      SDK-shaped sockets (bench/ws_load.py), then paced at half of (f)'s rate; the guard once more without
      its send rate bucket (g0), to show what the store round trip costs; then as many idle guarded sockets
      as one worker holds, pinging as the SDK does, and the memory each takes.

Both servers of a pair run throughout, so neither starts cold. Each run prints requests per
second, p50/p99 latency, errors, and the CPU time (user + system, from /proc) the server's own
processes spent per request; each pair, the median and range over the rounds of every figure and
of the ratio taken round by round, with the peak RSS and the store round trips per request.
Everything goes to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import orjson
import redis

from messenger_gw import keys
from messenger_gw.sdk import GatewayClient

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOOPBACK = "127.0.0.1"
ROUTE = "/im/user/get_users_info"
BODY = '{"userIDs":["bench_user"]}'
STATIC_ENVELOPE = json.dumps(
    {
        "errCode": 0,
        "errMsg": "",
        "errDlt": "",
        # One body for every call: get_*_token (token, expireTimeSeconds), parse_token (userID,
        # platformID, expireTimeSeconds) and the proxied route.
        "data": {
            "token": "bench.static.token",
            "expireTimeSeconds": 7776000,
            "userID": "bench_user",
            "platformID": 5,
            "usersInfo": None,
        },
    },
    separators=(",", ":"),
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.1)


def wait_redis(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def started(*commands: list[str], env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        for command in commands
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def nginx_config(folder: Path, port: int) -> Path:
    config = folder / "nginx.conf"
    body = STATIC_ENVELOPE.replace("'", "\\'")
    config.write_text(
        f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {LOOPBACK}:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""
    )
    return config


def wrk(
    url: str,
    connections: int,
    seconds: int,
    requests: Path | None,
    pace_ms: float,
    *,
    route: str = ROUTE,
    body: str = BODY,
) -> dict[str, float]:
    threads = 2
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
        "-s", str(BENCH / "wrk" / "replay.lua"), url,
        "--", str(requests) if requests else "-", str(threads), route, body, f"{pace_ms:g}",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout  # noqa: S603
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    result |= {"rps": result["requests"] / (result["duration_us"] / 1e6), "errors": errors}
    return result


def peak_rss_mb(pids: list[int]) -> list[float]:
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(round(int(line.split()[1]) / 1024, 1))
    return peaks


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it: all the workers of a server, and nothing else."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += process_tree(int(child))
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User and system time the processes (all their threads) have used so far."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICKS


def measured(pids: list[int], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run`` (one wrk run), with the CPU time the server's processes spent on each request it answered."""
    before = cpu_seconds(pids)
    result = run()
    used = cpu_seconds(pids) - before
    return result | {"cpu_us_per_request": round(used * 1e6 / max(1, result["requests"]), 1)}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of a run repeated over the rounds."""
    return {key: spread([r[key] for r in runs]) for key in ("rps", "p50_us", "p99_us", "cpu_us_per_request")} | {
        "errors": sum(r["errors"] for r in runs),
        "rounds": len(runs),
    }


def ratios(numerator: list[dict[str, Any]], denominator: list[dict[str, Any]], key: str = "rps") -> dict[str, float]:
    """The ratio round by round (each pair run back to back), then its median and range."""
    return spread([n[key] / d[key] for n, d in zip(numerator, denominator, strict=True)])


async def presign(gateway_url: str, counts: list[int]) -> list[list[tuple[str, str, str]]]:
    """Log one session in, then sign ``count`` requests per batch, each with its own nonce."""
    async with GatewayClient(gateway_url) as client:
        await client.handshake(platform_id=5)
        await client.login({"userID": "bench_user", "code": "any"})
        batches = []
        for count in counts:
            batch = []
            for _ in range(count):
                headers = client.signed_headers("POST", ROUTE, BODY.encode())
                batch.append((headers["Signature-Input"], headers["Signature"], headers["Content-Digest"]))
            batches.append(batch)
        return batches


def write_batch(path: Path, batch: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join("\t".join(line) + "\n" for line in batch))
    return path


def command_calls(store: redis.Redis) -> dict[str, int]:
    """Calls per command name so far (INFO commandstats)."""
    stats: dict[str, dict[str, int]] = store.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def gateway_env(port: int, redis_url: str, upstream: str, user_service: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_GW_")} | {
        "MESSENGER_GW_LISTEN": f"{LOOPBACK}:{port}",
        "MESSENGER_GW_REDIS_URL": redis_url,
        "MESSENGER_GW_OPENIM_API_URL": upstream,
        "MESSENGER_GW_OPENIM_SECRET": "bench",
        "MESSENGER_GW_OPENIM_WS_URL": "ws://127.0.0.1:10001",
        "MESSENGER_GW_PUBLIC_IM_URL": f"http://{LOOPBACK}:{port}/im",
        "MESSENGER_GW_USER_SERVICE_URL": user_service,
        "MESSENGER_GW_USER_SERVICE_TOKEN": "bench-user-service-token",
        "MESSENGER_GW_PHASE": "4",
        "MESSENGER_GW_HANDSHAKE_RATE_LIMIT": "0",
        "MESSENGER_GW_LOG_LEVEL": "warning",  # the access log line is info: off, as in (b)
    }


def run_config(
    workers: int, seconds: int, rounds: int, folder: Path, redis_url: str, upstream: str, user_service: str
) -> dict[str, Any]:
    """(a) once; then (b) and (c) flat out in turns, ``rounds`` times; then both paced, in turns too."""
    connections = 32 * workers
    port_b, port_c = free_port(), free_port()
    redis.Redis.from_url(redis_url).flushall()  # each configuration starts cold
    print(f"\n== {workers} worker(s), {connections} connections, {rounds} rounds of {seconds}s ==", flush=True)
    a = wrk(upstream, connections, seconds, None, 0)

    passthrough = [sys.executable, str(BENCH / "passthrough.py"), LOOPBACK, str(port_b), upstream]
    env = gateway_env(port_c, redis_url, upstream, user_service)
    gateway = [sys.executable, "-m", "messenger_gw", "serve", "--workers", str(workers)]
    url_b, url_c = f"http://{LOOPBACK}:{port_b}", f"http://{LOOPBACK}:{port_c}"
    with started(*[passthrough] * workers) as proxies, started(gateway, env=env) as (parent,):
        wait_http(url_b + "/ready")
        wait_http(url_c + "/healthz")
        pids_b, pids_c = [p.pid for p in proxies], process_tree(parent.pid)
        warm_b = wrk(url_b, connections, 2, None, 0)
        # Enough distinct nonces for (c) to run twice as fast as (b) did while warming up: none replayed.
        flat_count = max(5_000, int(warm_b["rps"] * seconds * 2))
        pace = connections * 1000 / (warm_b["rps"] / 2)  # ms between requests on each connection
        paced_count = max(2_000, int(warm_b["rps"] / 2 * seconds * 2))
        batches = asyncio.run(presign(url_c, [flat_count // 4] + [flat_count] * rounds + [paced_count] * rounds))
        files = [write_batch(folder / f"batch{i}.tsv", batch) for i, batch in enumerate(batches)]
        del batches
        wrk(url_c, connections, 2, files[0], 0)  # warm-up: caches, connections, the JIT-less interpreter's caches
        store = redis.Redis.from_url(redis_url)
        b_runs: list[dict[str, Any]] = []
        c_runs: list[dict[str, Any]] = []
        for index in range(rounds):
            b_runs.append(measured(pids_b, lambda: wrk(url_b, connections, seconds, None, 0)))
            before = command_calls(store)
            c_runs.append(measured(pids_c, partial(wrk, url_c, connections, seconds, files[1 + index], 0)))
            after = command_calls(store)
            requests = max(1, c_runs[-1]["requests"])
            sets = after.get("set", 0) - before.get("set", 0)
            # Redis counts the SETs a script runs as commands of their own: a claim batch is one EVALSHA
            # (one round trip) and a SET per nonce. Round trips are every command but those SETs; the
            # SETs per request show whether anything else set a key.
            c_runs[-1]["store_round_trips_per_request"] = round(
                (sum(after.values()) - sum(before.values()) - sets) / requests, 3
            )
            c_runs[-1]["store_sets_per_request"] = round(sets / requests, 3)
            print_run(f"(b) round {index + 1}", b_runs[-1])
            print_run(f"(c) round {index + 1}", c_runs[-1])
        b_paced: list[dict[str, Any]] = []
        c_paced: list[dict[str, Any]] = []
        for index in range(rounds):
            b_paced.append(measured(pids_b, lambda: wrk(url_b, connections, seconds, None, pace)))
            c_paced.append(measured(pids_c, partial(wrk, url_c, connections, seconds, files[1 + rounds + index], pace)))
        rss = {"b": peak_rss_mb(pids_b), "c": peak_rss_mb(pids_c[1:] or pids_c)}

    summary = {
        "a_upstream": a,
        "b_passthrough": summary_of(b_runs),
        "c_gateway": summary_of(c_runs),
        "b_paced": summary_of(b_paced),
        "c_paced": summary_of(c_paced),
        "c_over_b_throughput": ratios(c_runs, b_runs),
        "c_over_b_cpu_per_request": ratios(c_runs, b_runs, "cpu_us_per_request"),
        "c_over_a_throughput": spread([c["rps"] / a["rps"] for c in c_runs]),
        "paced_rate_rps": round(warm_b["rps"] / 2),
        "p99_added_at_half_rate_ms": spread(
            [(c["p99_us"] - b["p99_us"]) / 1000 for c, b in zip(c_paced, b_paced, strict=True)]
        ),
        "store_round_trips_per_request": spread([c["store_round_trips_per_request"] for c in c_runs]),
        "store_sets_per_request": spread([c["store_sets_per_request"] for c in c_runs]),
        "peak_rss_mb": rss,
    }
    print_summary(summary)
    runs = {"b": b_runs, "c": c_runs, "b_paced": b_paced, "c_paced": c_paced}
    return {"workers": workers, "connections": connections, "seconds": seconds, "runs": runs, "summary": summary}


WEBHOOK_SECRET = "bench-webhook-secret-0001"
AFTER = "callbackAfterSendSingleMsgCommand"
BEFORE = "callbackBeforeSendSingleMsgCommand"


def callback(command: str) -> str:
    return json.dumps(
        {
            "sendID": "bench_user", "callbackCommand": command, "serverMsgID": "s1", "clientMsgID": "c1",
            "operationID": "op", "senderPlatformID": 5, "senderNickname": "b", "sessionType": 1, "msgFrom": 100,
            "contentType": 101, "status": 0, "sendTime": 1, "createTime": 1,
            "content": json.dumps({"content": "see you at noon"}), "seq": 0, "atUserList": None,
            "faceURL": "", "ex": "", "recvID": "other_user",
        },
        separators=(",", ":"),
    )  # fmt: skip


def run_webhooks(
    workers: int, seconds: int, rounds: int, redis_url: str, upstream: str, user_service: str
) -> dict[str, Any]:
    """(d) after-callbacks flat out through the gateway's route, in turns with (d0) the bare handler doing one
    XADD per request, ``rounds`` times; then (e) before-callbacks paced at 1,000 per second."""
    connections = 32 * workers
    port, port_bare = free_port(), free_port()
    store = redis.Redis.from_url(redis_url)
    store.flushall()
    env = gateway_env(port, redis_url, upstream, user_service) | {"MESSENGER_GW_WEBHOOK_SECRETS": WEBHOOK_SECRET}
    url, url_bare = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{port_bare}"
    bare_stream = "bench:bare-webhooks"
    bare = [sys.executable, str(BENCH / "bare_webhook.py"), LOOPBACK, str(port_bare), redis_url, bare_stream]
    path = f"/webhooks/openim/{WEBHOOK_SECRET}/"
    after_body, before_body = callback(AFTER), callback(BEFORE)
    print(
        f"\n== webhooks: {workers} worker(s), {connections} connections, {rounds} rounds of {seconds}s ==", flush=True
    )
    gateway = [sys.executable, "-m", "messenger_gw", "serve", "--workers", str(workers)]
    with started(gateway, env=env) as (parent,), started(*[bare] * workers) as handlers:
        wait_http(url + "/healthz")
        wait_http(url_bare + "/ready")
        pids, pids_bare = process_tree(parent.pid), [h.pid for h in handlers]
        wrk(url, connections, 2, None, 0, route=path + AFTER, body=after_body)  # warm-up
        wrk(url_bare, connections, 2, None, 0, route=path + AFTER, body=after_body)
        d_runs: list[dict[str, Any]] = []
        bare_runs: list[dict[str, Any]] = []
        for index in range(rounds):
            bare_runs.append(
                measured(
                    pids_bare, lambda: wrk(url_bare, connections, seconds, None, 0, route=path + AFTER, body=after_body)
                )
            )
            before = int(store.xlen(keys.WEBHOOK_STREAM))
            run = measured(pids, lambda: wrk(url, connections, seconds, None, 0, route=path + AFTER, body=after_body))
            stored = int(store.xlen(keys.WEBHOOK_STREAM)) - before
            # Every answered event must be in the stream: wrk counts answers, the stream what was kept.
            d_runs.append(run | {"stored": stored, "stored_per_second": stored / (run["duration_us"] / 1e6)})
            print_run(f"(d0) round {index + 1}", bare_runs[-1])
            print_run(f"(d) round {index + 1}", d_runs[-1])
        pace = connections * 1000 / 1000  # 1,000 per second across all connections
        e = measured(pids, lambda: wrk(url, connections, seconds, None, pace, route=path + BEFORE, body=before_body))
        print_run("(e) paced", e)
    summary = {
        "d0_bare_xadd": summary_of(bare_runs),
        "d_after_callbacks": summary_of(d_runs),
        "d_over_d0_throughput": ratios(d_runs, bare_runs),
        "d_over_d0_cpu_per_request": ratios(d_runs, bare_runs, "cpu_us_per_request"),
        "stored_per_second_per_worker": spread([d["stored_per_second"] / workers for d in d_runs]),
        # The stream may hold a few more than wrk counted (answers in flight when it stopped), never fewer.
        "answered_not_stored": max(0, sum(d["requests"] - d["stored"] for d in d_runs)),
        "e_before_callbacks_paced": e,
    }
    print_webhook_summary(summary)
    runs = {"d0": bare_runs, "d": d_runs, "e": [e]}
    return {"workers": workers, "connections": connections, "seconds": seconds, "runs": runs, "summary": summary}


WS_SECRET = "bench"  # the gateway's OPENIM_SECRET in gateway_env: imTokens are signed with it
WS_IDLE_TARGET = 10_000
WS_IDLE_SECONDS = 25  # long enough for every socket to ping twice


def ws_logins(redis_url: str, count: int, folder: Path) -> Path:
    """``count`` users' imTokens as OpenIM mints them (HS256 under the secret, OpenIM's claims), stored where a
    login leaves them (``im:token:<userID>``), one ``userID<TAB>token`` line each."""
    store = redis.Redis.from_url(redis_url)
    now = int(time.time())
    lines = []
    with store.pipeline(transaction=False) as pipe:
        for n in range(count):
            user = f"bench_ws_{n}"
            claims = {"UserID": user, "PlatformID": 5, "exp": now + 86400, "iat": now - 5}
            token = jwt.encode(claims, WS_SECRET, algorithm="HS256")
            pipe.hset(keys.im_token(user), "5", orjson.dumps({"token": token, "expiresAt": now + 86400}))
            lines.append(f"{user}\t{token}\n")
        pipe.execute()
    path = folder / "ws-logins.tsv"
    path.write_text("".join(lines))
    return path


def ws_frames(url: str, logins: Path, connections: int, seconds: int, pace_ms: float) -> dict[str, Any]:
    command = [sys.executable, str(BENCH / "ws_load.py"), "frames", url, str(logins), str(connections), str(seconds),
               f"{pace_ms:g}"]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout  # noqa: S603
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    # The same keys as a wrk run, so the summaries read both.
    return result | {"rps": result["fps"], "requests": result["frames"]}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def ws_idle(url: str, logins: Path, connections: int, worker: int) -> dict[str, Any]:
    """Open ``connections`` sockets through one worker, hold them pinging, and read the worker's RSS meanwhile."""
    before = rss_kb(worker)
    command = [sys.executable, str(BENCH / "ws_load.py"), "idle", url, str(logins), str(connections),
               str(WS_IDLE_SECONDS)]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as load:  # noqa: S603
        assert load.stdin is not None
        assert load.stdout is not None
        opened: dict[str, Any] = json.loads(load.stdout.readline())
        held: dict[str, Any] = json.loads(load.stdout.readline())
        after = rss_kb(worker)
        load.stdin.write("\n")
        load.stdin.flush()
        load.wait(120)
    return (
        opened
        | held
        | {
            "asked": connections,
            "rss_before_mb": round(before / 1024, 1),
            "rss_after_mb": round(after / 1024, 1),
            "rss_kib_per_connection": round((after - before) / max(1, held["held"]), 1),
        }
    )


def idle_capacity() -> int:
    """Guarded sockets one worker may hold: two descriptors each (the client's, OpenIM's) within its limit."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(WS_IDLE_TARGET, (soft - 200) // 2)


def run_websocket(
    workers: int, seconds: int, rounds: int, folder: Path, redis_url: str, user_service: str
) -> dict[str, Any]:
    """(f), (g) and (g0) flat out in turns, ``rounds`` times; then (f) and (g) paced at half of (f)'s rate, in turns;
    then idle sockets through one worker of (g)."""
    connections = 64 * workers
    port_up, port_f, port_g, port_g0 = free_port(), free_port(), free_port(), free_port()
    upstream = f"ws://{LOOPBACK}:{port_up}"
    print(
        f"\n== WebSocket: {workers} worker(s), {connections} connections, {rounds} rounds of {seconds}s ==", flush=True
    )
    redis.Redis.from_url(redis_url).flushall()
    idle = idle_capacity()
    logins = ws_logins(redis_url, max(connections, idle), folder)
    relay = [sys.executable, str(BENCH / "ws_relay.py"), LOOPBACK, str(port_f), upstream]
    gateway = [sys.executable, "-m", "messenger_gw", "serve", "--workers", str(workers)]
    guard = {"MESSENGER_GW_OPENIM_WS_URL_INTERNAL": upstream}
    # The send bucket is taken from for every frame, as deployed, and never empty: what is measured is its cost.
    env_g = gateway_env(port_g, redis_url, f"http://{LOOPBACK}:9", user_service) | guard | {
        "MESSENGER_GW_RATE_LIMITS": "send=1000000/s:1000000"}  # fmt: skip
    env_g0 = gateway_env(port_g0, redis_url, f"http://{LOOPBACK}:9", user_service) | guard | {
        "MESSENGER_GW_RATE_LIMITS": "send=off"}  # fmt: skip
    url_f, url_g, url_g0 = (f"ws://{LOOPBACK}:{port}/ws" for port in (port_f, port_g, port_g0))
    upstreams = [[sys.executable, str(BENCH / "ws_upstream.py"), LOOPBACK, str(port_up)]] * 2
    with (
        started(*upstreams),
        started(*[relay] * workers) as relays,
        started(gateway, env=env_g) as (parent_g,),
        started(gateway, env=env_g0) as (parent_g0,),
    ):
        wait_http(f"http://{LOOPBACK}:{port_up}/ready")
        wait_http(f"http://{LOOPBACK}:{port_f}/ready")
        wait_http(f"http://{LOOPBACK}:{port_g}/healthz")
        wait_http(f"http://{LOOPBACK}:{port_g0}/healthz")
        pids = {"f": [r.pid for r in relays], "g": process_tree(parent_g.pid), "g0": process_tree(parent_g0.pid)}
        urls = {"f": url_f, "g": url_g, "g0": url_g0}
        for name in ("f", "g", "g0"):  # warm-up
            ws_frames(urls[name], logins, connections, 2, 0)
        flat: dict[str, list[dict[str, Any]]] = {"f": [], "g": [], "g0": []}
        for index in range(rounds):
            for name in ("f", "g", "g0"):
                flat[name].append(measured(pids[name], partial(ws_frames, urls[name], logins, connections, seconds, 0)))
                print_run(f"({name}) round {index + 1}", flat[name][-1])
        peak = statistics.median(r["rps"] for r in flat["f"])
        pace = connections * 1000 / (peak / 2)  # ms between frames on each socket
        paced: dict[str, list[dict[str, Any]]] = {"f": [], "g": []}
        for index in range(rounds):
            for name in ("f", "g"):
                paced[name].append(
                    measured(pids[name], partial(ws_frames, urls[name], logins, connections, seconds, pace))
                )
                print_run(f"({name}) paced {index + 1}", paced[name][-1])
        rss = {"f": peak_rss_mb(pids["f"]), "g": peak_rss_mb(pids["g"][1:] or pids["g"])}
        idle_result = ws_idle(url_g, logins, idle, (pids["g"][1:] or pids["g"])[0]) if workers == 1 else None
    summary = {
        "f_relay": summary_of(flat["f"]),
        "g_guard": summary_of(flat["g"]),
        "g0_guard_without_send_bucket": summary_of(flat["g0"]),
        "f_paced": summary_of(paced["f"]),
        "g_paced": summary_of(paced["g"]),
        "g_over_f_throughput": ratios(flat["g"], flat["f"]),
        "g0_over_f_throughput": ratios(flat["g0"], flat["f"]),
        "g_over_f_cpu_per_frame": ratios(flat["g"], flat["f"], "cpu_us_per_request"),
        "paced_rate_fps": round(peak / 2),
        "p99_added_at_half_rate_ms": spread(
            [(g["p99_us"] - f["p99_us"]) / 1000 for g, f in zip(paced["g"], paced["f"], strict=True)]
        ),
        "peak_rss_mb": rss,
        "idle": idle_result,
    }
    print_websocket_summary(summary)
    runs = {"f": flat["f"], "g": flat["g"], "g0": flat["g0"], "f_paced": paced["f"], "g_paced": paced["g"]}
    return {"workers": workers, "connections": connections, "seconds": seconds, "runs": runs, "summary": summary}


def print_websocket_summary(s: dict[str, Any]) -> None:
    print("  medians over the rounds (min-max):")
    print(f"  {'run':<30}{'frames/s':>24}{'p99 ms':>20}{'CPU us/frame':>24}{'errors':>8}")
    for name in ("f_relay", "g_guard", "g0_guard_without_send_bucket", "f_paced", "g_paced"):
        r = s[name]
        print(
            f"  {name:<30}{_range(r['rps']):>24}{_range(r['p99_us'], 2, 1000):>20}"
            f"{_range(r['cpu_us_per_request'], 1):>24}{r['errors']:>8}"
        )
    print(f"  (g)/(f) frames/s {_range(s['g_over_f_throughput'], 3)}   (g0)/(f) {_range(s['g0_over_f_throughput'], 3)}")
    print(f"  (g)/(f) CPU per frame {_range(s['g_over_f_cpu_per_frame'], 3)}")
    print(f"  p99 added over (f) at {s['paced_rate_fps']} frames/s: {_range(s['p99_added_at_half_rate_ms'], 2)} ms")
    print(f"  peak RSS MB per worker: (f) {s['peak_rss_mb']['f']}  (g) {s['peak_rss_mb']['g']}")
    idle = s["idle"]
    if idle is not None:
        print(
            f"  idle: {idle['held']} of {idle['asked']} guarded sockets held by one worker ({idle['failed']} refused,"
            f" {idle['lost']} lost, {idle['missed_pongs']} pongs missed),"
            f" {idle['rss_kib_per_connection']} KiB RSS each",
            flush=True,
        )


def print_run(name: str, r: dict[str, Any]) -> None:
    print(
        f"  {name:<16}{r['rps']:>9.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms"
        f"  errors {r['errors']:.0f}  CPU {r['cpu_us_per_request']:6.1f} us/request",
        flush=True,
    )


def _range(s: dict[str, float], digits: int = 0, scale: float = 1) -> str:
    return f"{s['median'] / scale:.{digits}f} ({s['min'] / scale:.{digits}f}-{s['max'] / scale:.{digits}f})"


def print_summary(s: dict[str, Any]) -> None:
    print("  medians over the rounds (min-max):")
    print(f"  {'run':<16}{'req/s':>24}{'p50 ms':>20}{'p99 ms':>20}{'CPU us/request':>24}{'errors':>8}")
    for name in ("b_passthrough", "c_gateway", "b_paced", "c_paced"):
        r = s[name]
        print(
            f"  {name:<16}{_range(r['rps']):>24}{_range(r['p50_us'], 2, 1000):>20}{_range(r['p99_us'], 2, 1000):>20}"
            f"{_range(r['cpu_us_per_request'], 1):>24}{r['errors']:>8}"
        )
    a = s["a_upstream"]
    print(f"  (a) upstream {a['rps']:.0f} req/s, p99 {a['p99_us'] / 1000:.2f} ms, errors {a['errors']:.0f}")
    print(f"  (c)/(b) throughput {_range(s['c_over_b_throughput'], 3)}   (c)/(a) {_range(s['c_over_a_throughput'], 3)}")
    print(f"  (c)/(b) CPU per request {_range(s['c_over_b_cpu_per_request'], 3)}")
    print(f"  p99 added over (b) at {s['paced_rate_rps']} req/s: {_range(s['p99_added_at_half_rate_ms'], 2)} ms")
    print(
        f"  store round trips per request on the warm path: {_range(s['store_round_trips_per_request'], 3)}"
        f" (SETs per request, the nonce claims they carry: {_range(s['store_sets_per_request'], 3)})"
    )
    print(f"  peak RSS MB per worker: (b) {s['peak_rss_mb']['b']}  (c) {s['peak_rss_mb']['c']}", flush=True)


def print_webhook_summary(s: dict[str, Any]) -> None:
    print("  medians over the rounds (min-max):")
    for name in ("d0_bare_xadd", "d_after_callbacks"):
        r = s[name]
        print(
            f"  {name:<18}{_range(r['rps'])} req/s  p99 {_range(r['p99_us'], 2, 1000)} ms"
            f"  CPU {_range(r['cpu_us_per_request'], 1)} us/request  errors {r['errors']}"
        )
    print(f"  (d)/(d0) throughput {_range(s['d_over_d0_throughput'], 3)}")
    print(f"  (d)/(d0) CPU per request {_range(s['d_over_d0_cpu_per_request'], 3)}")
    print(
        f"  after-events stored durably per second per worker: {_range(s['stored_per_second_per_worker'])};"
        f" answered but not in the stream: {s['answered_not_stored']}"
    )
    e = s["e_before_callbacks_paced"]
    print(
        f"  (e) before-callback p99 at {e['rps']:.0f}/s: {e['p99_us'] / 1000:.2f} ms, errors {e['errors']:.0f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, action="append", help="worker counts to run (default: 1 and 2)")
    parser.add_argument("--seconds", type=int, default=6, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="how many times each compared pair runs, in turns")
    parser.add_argument(
        "--part", choices=("im", "webhooks", "websocket"), action="append", help="what to run (default: all three)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    for tool in ("redis-server", "nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench: {tool} is missing; run it through `make bench`", file=sys.stderr)
            return 1
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    RESULTS.mkdir(parents=True, exist_ok=True)  # before the runs: a fresh clone has no results yet
    with tempfile.TemporaryDirectory(prefix="messenger-gw-bench-") as tmp:
        folder = Path(tmp)
        redis_port, upstream_port, user_port = free_port(), free_port(), free_port()
        upstream, user_service = f"http://{LOOPBACK}:{upstream_port}", f"http://{LOOPBACK}:{user_port}"
        redis_url = f"redis://{LOOPBACK}:{redis_port}"
        services = [
            ["redis-server", "--bind", LOOPBACK, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            [nginx, "-c", str(nginx_config(folder, upstream_port)), "-p", str(folder)],
            [sys.executable, str(BENCH / "user_service.py"), LOOPBACK, str(user_port)],
        ]
        with started(*services):
            wait_http(upstream + "/")
            wait_redis(redis_url)
            date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            workers = args.workers or [1, 2]
            parts = args.part or ["im", "webhooks", "websocket"]
            report = {
                "date": date,
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load": os.getloadavg()},
                "seconds": args.seconds,
                "rounds": args.rounds,
                "configs": [
                    run_config(w, args.seconds, args.rounds, folder, redis_url, upstream, user_service) for w in workers
                ]
                if "im" in parts
                else [],
                "webhooks": [
                    run_webhooks(w, args.seconds, args.rounds, redis_url, upstream, user_service) for w in workers
                ]
                if "webhooks" in parts
                else [],
                "websocket": [
                    run_websocket(w, args.seconds, args.rounds, folder, redis_url, user_service) for w in workers
                ]
                if "websocket" in parts
                else [],
            }
    out = RESULTS / f"{date.replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
