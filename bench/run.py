"""``make bench``: the /im chain against a fixed upstream, side by side with a bare proxy, on loopback.

Starts redis-server, nginx answering one static OpenIM envelope (it satisfies every call the
gateway makes: get_admin_token, get_user_token, the proxied route), and a stand-in user-service.
Then, for each worker count, drives wrk at:

  (a) the upstream directly,
  (b) a bare aiohttp pass-through proxy (bench/passthrough.py) with the same worker count,
  (c) messenger-gw's full /im chain with requests pre-signed with distinct nonces, warm caches,

flat out, and then (b) and (c) again paced at half of (b)'s peak rate. It prints requests per
second, p50/p99 latency, errors, each worker's peak RSS, the ratios (c)/(b) and (c)/(a), and the
store round trips per request on the warm path, and writes it all to bench/results/*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from messenger_gw import keys
from messenger_gw.client import GatewayClient

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
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


def children_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


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
        "MESSENGER_GW_USER_SERVICE_URL": user_service,
        "MESSENGER_GW_USER_SERVICE_TOKEN": "bench-user-service-token",
        "MESSENGER_GW_PHASE": "4",
        "MESSENGER_GW_HANDSHAKE_RATE_LIMIT": "0",
        "MESSENGER_GW_LOG_LEVEL": "warning",  # the access log line is info: off, as in (b)
    }


def run_config(
    workers: int, seconds: int, folder: Path, redis_url: str, upstream: str, user_service: str
) -> dict[str, Any]:
    connections = 32 * workers
    port_b, port_c = free_port(), free_port()
    redis.Redis.from_url(redis_url).flushall()  # each configuration starts cold
    results: dict[str, dict[str, Any]] = {}
    print(f"\n== {workers} worker(s), {connections} connections, {seconds}s per run ==", flush=True)

    results["a_upstream"] = wrk(upstream, connections, seconds, None, 0)

    passthrough = [sys.executable, str(BENCH / "passthrough.py"), LOOPBACK, str(port_b), upstream]
    with started(*[passthrough] * workers) as proxies:
        wait_http(f"http://{LOOPBACK}:{port_b}/ready")
        wrk(f"http://{LOOPBACK}:{port_b}", connections, 2, None, 0)  # warm-up
        results["b_passthrough"] = wrk(f"http://{LOOPBACK}:{port_b}", connections, seconds, None, 0)
        half_rate = results["b_passthrough"]["rps"] / 2
        pace = connections * 1000 / half_rate
        results["b_passthrough_paced"] = wrk(f"http://{LOOPBACK}:{port_b}", connections, seconds, None, pace)
        results["b_passthrough"]["peak_rss_mb"] = peak_rss_mb([p.pid for p in proxies])

    env = gateway_env(port_c, redis_url, upstream, user_service)
    gateway = [sys.executable, "-m", "messenger_gw", "serve", "--workers", str(workers)]
    url = f"http://{LOOPBACK}:{port_c}"
    with started(gateway, env=env) as (parent,):
        wait_http(url + "/healthz")
        expected = max(5_000, int(results["b_passthrough"]["rps"] * seconds * 1.5))
        warm, flat, paced = asyncio.run(presign(url, [expected // 4, expected, int(half_rate * seconds * 1.5)]))
        wrk(url, connections, 2, write_batch(folder / "warm.tsv", warm), 0)
        store = redis.Redis.from_url(redis_url)
        before = command_calls(store)
        results["c_gateway"] = flat_result = wrk(url, connections, seconds, write_batch(folder / "flat.tsv", flat), 0)
        after = command_calls(store)
        requests = max(1, flat_result["requests"])
        sets = after.get("set", 0) - before.get("set", 0)
        calls = sum(after.values()) - sum(before.values())
        # Redis counts the SETs a script runs as commands of their own: a claim batch is one EVALSHA
        # (one round trip) and a SET per nonce. Round trips are every command but those SETs; the
        # SETs per request show whether anything else set a key.
        flat_result["store_round_trips_per_request"] = round((calls - sets) / requests, 3)
        flat_result["store_sets_per_request"] = round(sets / requests, 3)
        results["c_gateway_paced"] = wrk(url, connections, seconds, write_batch(folder / "paced.tsv", paced), pace)
        results["c_gateway"]["peak_rss_mb"] = peak_rss_mb(children_of(parent.pid) or [parent.pid])

    a, b, c = results["a_upstream"], results["b_passthrough"], results["c_gateway"]
    summary = {
        "c_over_b_throughput": round(c["rps"] / b["rps"], 3),
        "c_over_a_throughput": round(c["rps"] / a["rps"], 3),
        "paced_rate_rps": round(half_rate),
        "p99_added_at_half_rate_ms": round(
            (results["c_gateway_paced"]["p99_us"] - results["b_passthrough_paced"]["p99_us"]) / 1000, 3
        ),
    }
    print_table(results, summary)
    return {"workers": workers, "connections": connections, "seconds": seconds, "runs": results, "summary": summary}


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


def run_webhooks(workers: int, seconds: int, redis_url: str, upstream: str, user_service: str) -> dict[str, Any]:
    """(d) after-callbacks flat out, each stored durably; (e) before-callbacks paced at 1,000 per second."""
    connections = 32 * workers
    port = free_port()
    store = redis.Redis.from_url(redis_url)
    store.flushall()
    env = gateway_env(port, redis_url, upstream, user_service) | {"MESSENGER_GW_WEBHOOK_SECRETS": WEBHOOK_SECRET}
    url = f"http://{LOOPBACK}:{port}"
    results: dict[str, dict[str, Any]] = {}
    print(f"\n== webhooks: {workers} worker(s), {connections} connections, {seconds}s per run ==", flush=True)
    with started([sys.executable, "-m", "messenger_gw", "serve", "--workers", str(workers)], env=env):
        wait_http(url + "/healthz")
        path = f"/webhooks/openim/{WEBHOOK_SECRET}/"
        wrk(url, connections, 2, None, 0, route=path + AFTER, body=callback(AFTER))  # warm-up
        before = int(store.xlen(keys.WEBHOOK_STREAM))
        after = wrk(url, connections, seconds, None, 0, route=path + AFTER, body=callback(AFTER))
        stored = int(store.xlen(keys.WEBHOOK_STREAM)) - before
        after |= {"stored": stored, "stored_per_second": stored / (after["duration_us"] / 1e6)}
        results["d_after_callbacks"] = after
        pace = connections * 1000 / 1000  # 1,000 per second across all connections
        results["e_before_callbacks_paced"] = wrk(
            url, connections, seconds, None, pace, route=path + BEFORE, body=callback(BEFORE)
        )
    d, e = results["d_after_callbacks"], results["e_before_callbacks_paced"]
    print(f"{'run':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<26}{r['rps']:>10.0f}{r['p50_us'] / 1000:>9.2f}{r['p99_us'] / 1000:>9.2f}{r['errors']:>8.0f}")
    per_worker = d["stored_per_second"] / workers
    print(f"after-events stored durably: {d['stored']} ({d['stored_per_second']:.0f}/s, {per_worker:.0f}/s per worker)")
    print(f"before-callback p99 at {e['rps']:.0f}/s: {e['p99_us'] / 1000:.2f} ms")
    return {"workers": workers, "connections": connections, "seconds": seconds, "runs": results}


def print_table(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"{'run':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  peak RSS MB/worker")
    for name, r in results.items():
        rss = " ".join(f"{v:g}" for v in r.get("peak_rss_mb", []))
        print(
            f"{name:<22}{r['rps']:>10.0f}{r['p50_us'] / 1000:>9.2f}{r['p99_us'] / 1000:>9.2f}{r['errors']:>8.0f}  {rss}"
        )
    c = results["c_gateway"]
    print(f"(c)/(b) throughput {summary['c_over_b_throughput']}   (c)/(a) {summary['c_over_a_throughput']}")
    print(f"p99 added over (b) at {summary['paced_rate_rps']} req/s: {summary['p99_added_at_half_rate_ms']} ms")
    print(
        f"store round trips per request on the warm path: {c['store_round_trips_per_request']}"
        f" (SETs per request, the nonce claims they carry: {c['store_sets_per_request']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, action="append", help="worker counts to run (default: 1 and 2)")
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    for tool in ("redis-server", "nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench: {tool} is missing; run it through `make bench`", file=sys.stderr)
            return 1
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory(prefix="messenger-gw-bench-") as tmp:
        folder = Path(tmp)
        redis_port, upstream_port, user_port = free_port(), free_port(), free_port()
        upstream, user_service = f"http://{LOOPBACK}:{upstream_port}", f"http://{LOOPBACK}:{user_port}"
        services = [
            ["redis-server", "--bind", LOOPBACK, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            [nginx, "-c", str(nginx_config(folder, upstream_port)), "-p", str(folder)],
            [sys.executable, str(BENCH / "user_service.py"), LOOPBACK, str(user_port)],
        ]
        with started(*services):
            wait_http(upstream + "/")
            wait_redis(f"redis://{LOOPBACK}:{redis_port}")
            date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            report = {
                "date": date,
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                "configs": [
                    run_config(w, args.seconds, folder, f"redis://{LOOPBACK}:{redis_port}", upstream, user_service)
                    for w in (args.workers or [1, 2])
                ],
                "webhooks": [
                    run_webhooks(w, args.seconds, f"redis://{LOOPBACK}:{redis_port}", upstream, user_service)
                    for w in (args.workers or [1, 2])
                ],
            }
    out = BENCH / "results" / f"{date.replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
