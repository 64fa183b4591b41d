"""Prometheus metrics: one registry per app, names per the Prometheus naming guide.

Labels are bounded sets (route template, method, status, OpenIM route and
errCode, failure kind); a user ID is never a label.

The per-request series (requests, their durations, requests in flight, and
the durations of calls to OpenIM) are tallied in plain Python as requests
end and moved into prometheus-client's metrics by :meth:`Metrics.flush`, at
every scrape and every second (:func:`flushing`): each update of a
prometheus-client value takes a lock, and in the multiprocess mode of
``serve --workers N`` writes a memory-mapped file, and per request that cost
the 2-worker /im path about 15% of its throughput (``docs/performance.md``).
Another worker's requests therefore show in a scrape up to a second late.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .background import running

# `*_created` series double the exposition for no use in Prometheus' text format.
disable_created_metrics()  # type: ignore[no-untyped-call]


class PoolState(Protocol):
    """What the pool of connections to OpenIM reports at each flush (the pool's own ``PoolState`` has these)."""

    @property
    def open(self) -> int: ...
    @property
    def idle(self) -> int: ...
    @property
    def waiting(self) -> int: ...


access_log = logging.getLogger("messenger_gw.access")

# prometheus-client's multiprocess mode: set (by `serve --workers N`) before any metric exists.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; dense below 100 ms where the gateway's own overhead lives.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_BOUNDS = (*LATENCY_BUCKETS, math.inf)
FLUSH_INTERVAL = 1.0

UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _BatchHistogram(Histogram):
    def observe_tally(self, tally: _Tally) -> None:
        """As many observations at once as :meth:`observe` one by one would record.

        prometheus-client has no public call for this; it keeps one value per bucket (not
        cumulative) and one for the sum, which is what this adds to. ``test_metrics`` checks
        the exposition against the same observations made one by one.
        """
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(tally.sum)
        for value, count in zip(self._buckets, tally.buckets, strict=True):
            if count:
                value.inc(count)


class _Tally:
    """Observations of one series since the last flush."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * len(_BOUNDS)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        self.buckets[bisect.bisect_left(_BOUNDS, seconds)] += 1


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "messenger_gw_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = _BatchHistogram(
            "messenger_gw_http_request_duration_seconds",
            "Time from request received to response prepared, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Bounded like the labels themselves: route templates x methods x statuses.
        self._requests: defaultdict[tuple[str, str, int], _Tally] = defaultdict(_Tally)
        self._openim_calls: defaultdict[str, _Tally] = defaultdict(_Tally)
        self._in_flight = 0
        self.http_in_flight = Gauge(
            "messenger_gw_http_requests_in_flight",
            "Requests being handled right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.openim_duration = _BatchHistogram(
            "messenger_gw_openim_request_duration_seconds",
            "Duration of calls to OpenIM's REST API, by OpenIM route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.openim_errors = Counter(
            "messenger_gw_openim_errors",
            "Calls to OpenIM that failed, by OpenIM route and kind (connect, timeout, protocol, errcode).",
            ["route", "kind"],
            registry=r,
        )
        self.openim_errcodes = Counter(
            "messenger_gw_openim_errcodes",
            "Non-zero errCodes OpenIM answered, by OpenIM route and errCode.",
            ["route", "code"],
            registry=r,
        )
        self.auth_failures = Counter(
            "messenger_gw_auth_failures",
            "Requests whose authentication was refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "messenger_gw_rate_limited",
            "Requests refused by a rate limit, by class (the route classes of RATE_LIMITS, or handshake).",
            ["class"],
            registry=r,
        )
        self.rate_limit_overshoot = Counter(
            "messenger_gw_rate_limit_overshoot",
            "WebSocket requests let through on this worker's view of a bucket that the store then found empty"
            " (the user sent elsewhere too), by class.",
            ["class"],
            registry=r,
        )
        self.rate_limit_unevaluated = Counter(
            "messenger_gw_rate_limit_unevaluated",
            "Requests whose route-class rate limit could not be evaluated (the store failed), by class and the"
            " policy applied (open: let through; closed: refused 503).",
            ["class", "policy"],
            registry=r,
        )
        self.im_token_recoveries = Counter(
            "messenger_gw_im_token_recoveries",
            "OpenIM token errors on /im answered by replacing the token and replaying once, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "messenger_gw_webhook_requests",
            "Webhook calls from OpenIM, by callbackCommand and outcome"
            " (allowed, blocked_*, stored, spooled, rejected_*, wrong_secret, wrong_address).",
            ["command", "outcome"],
            registry=r,
        )
        self.webhook_rule_failures = Counter(
            "messenger_gw_webhook_rule_failures",
            "before-callbacks whose rules could not be evaluated (store down; body too large, malformed or under a"
            " wrong secret or address), by the policy applied.",
            ["policy"],
            registry=r,
        )
        self.webhook_events = Counter(
            "messenger_gw_webhook_events",
            "after-events processed, by callbackCommand, content type and session type (empty when not a message).",
            ["command", "content_type", "session_type"],
            registry=r,
        )
        self.webhook_dead_letters = Counter(
            "messenger_gw_webhook_dead_letters",
            "after-events moved to the dead-letter stream after repeated failures, by callbackCommand.",
            ["command"],
            registry=r,
        )
        self.admin_token_refreshes = Counter(
            "messenger_gw_admin_token_refreshes",
            "Attempts to obtain OpenIM's admin token, by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.audit_writes = Counter(
            "messenger_gw_audit_writes",
            "Admin audit entries, by outcome: stored at once, queued after a failed write, stored_late by a retry,"
            " dropped (given up: only the error log holds it).",
            ["outcome"],
            registry=r,
        )
        self.audit_waiting = Gauge(
            "messenger_gw_audit_entries_waiting",
            "Admin audit entries waiting in the gateway's memory for the store to take them.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.openim_connections = Gauge(
            "messenger_gw_openim_connections",
            "The pool of connections to OpenIM: open (idle or carrying a call), idle, and calls waiting for one.",
            ["state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._openim_pool: Callable[[], PoolState] | None = None
        self.legacy_requests = Counter(
            "messenger_gw_legacy_requests",
            "Requests to the legacy chat service's routes, by route template and verdict: forwarded (the old"
            " service answered), gone (410 in this phase), refused (authentication or ban), failed (the old service"
            " unreachable, too slow or not speaking HTTP).",
            ["route", "verdict"],
            registry=r,
        )
        self.legacy_errors = Counter(
            "messenger_gw_legacy_upstream_errors",
            "Calls to the legacy chat service that failed, by route template and kind (connect, timeout, unavailable,"
            " or the rule an answer broke).",
            ["route", "kind"],
            registry=r,
        )
        self.legacy_duration = Histogram(
            "messenger_gw_legacy_upstream_duration_seconds",
            "Duration of calls to the legacy chat service, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_connections = Gauge(
            "messenger_gw_ws_connections",
            "WebSockets the guard holds open right now (each with its connection to OpenIM's msg-gateway).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ws_upgrades = Counter(
            "messenger_gw_ws_upgrades",
            "WebSocket upgrades to /ws, by outcome: accepted, refused_<reason> (as OpenIM answers them),"
            " refused_origin, refused_busy, refused_by_openim, openim_unreachable, openim_timeout.",
            ["outcome"],
            registry=r,
        )
        self.ws_frames = Counter(
            "messenger_gw_ws_frames",
            "Client request frames the guard read, by reqIdentifier (other: not one of OpenIM's) and verdict"
            " (relayed, refused).",
            ["req_identifier", "verdict"],
            registry=r,
        )
        self._ws_frames: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.ws_refusals = Counter(
            "messenger_gw_ws_refusals",
            "Client request frames the guard refused, by reason (ws/policy.py REASONS).",
            ["reason"],
            registry=r,
        )
        self.ws_disconnects = Counter(
            "messenger_gw_ws_disconnects",
            "Guarded WebSockets that ended, by why: client, openim, idle, refusals, envelope, drain, or the kick's"
            " reason (banned, revoked, replaced, expired).",
            ["reason"],
            registry=r,
        )
        self.admin_token_fetched = Gauge(
            "messenger_gw_admin_token_fetched_timestamp_seconds",
            "When the admin token in use was fetched (unix time); its age is time() minus this.",
            registry=r,
            multiprocess_mode="max",
        )
        self.gif_requests = Counter(
            "messenger_gw_gif_requests",
            "GIF searches and trending pages, by provider and outcome: cached (from the store), fetched (this"
            " replica asked the provider), shared (another request's fetch), provider_error,"
            " provider_timeout.",
            ["provider", "outcome"],
            registry=r,
        )
        self.gif_provider_duration = Histogram(
            "messenger_gw_gif_provider_request_duration_seconds",
            "Duration of calls to the GIF provider, failed ones included, by provider.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sticker_catalog_loads = Counter(
            "messenger_gw_sticker_catalog_loads",
            "Sticker catalog reads at start-up and after its files changed, by outcome (loaded, rejected: the"
            " previous catalog stays).",
            ["outcome"],
            registry=r,
        )

    def request_started(self) -> float:
        self._in_flight += 1
        return time.perf_counter()

    def request_answered(self, request: web.Request, status: int, started: float) -> None:
        """Count and time one answered request, and write its access line."""
        elapsed = time.perf_counter() - started
        method = request.method if request.method in KNOWN_METHODS else "other"
        route = request.get(ROUTE_LABEL) or route_template(request)
        self._in_flight -= 1
        self._requests[route, method, status].add(elapsed)
        # The route template, never the raw path: a webhook path carries a secret.
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={"method": method, "route": route, "status": status, "duration_ms": round(elapsed * 1000, 3)},
            )

    def openim_failed(self, route: str, kind: str, errcode: int | None = None) -> None:
        self.openim_errors.labels(route, kind).inc()
        if errcode is not None:
            self.openim_errcodes.labels(route, str(errcode)).inc()

    def ws_frame(self, req_identifier: str, verdict: str) -> None:
        """Count one client frame of the WebSocket guard (tallied here, exported at the next flush)."""
        self._ws_frames[req_identifier, verdict] += 1

    def openim_call_done(self, route: str, seconds: float) -> None:
        self._openim_calls[route].add(seconds)

    def watch_openim_pool(self, state: Callable[[], PoolState]) -> None:
        """Export what ``state`` says of the pool of connections to OpenIM at every flush."""
        self._openim_pool = state

    def flush(self) -> None:
        """Move the requests and OpenIM calls tallied since the last flush into the exported metrics."""
        self.http_in_flight.set(self._in_flight)
        if self._openim_pool is not None:
            pool = self._openim_pool()
            self.openim_connections.labels("open").set(pool.open)
            self.openim_connections.labels("idle").set(pool.idle)
            self.openim_connections.labels("waiting").set(pool.waiting)
        requests, self._requests = self._requests, defaultdict(_Tally)
        for (route, method, status), tally in requests.items():
            self.http_duration.labels(route, method).observe_tally(tally)
            self.http_requests.labels(route, method, str(status)).inc(tally.count)
        calls, self._openim_calls = self._openim_calls, defaultdict(_Tally)
        for route, tally in calls.items():
            self.openim_duration.labels(route).observe_tally(tally)
        ws_frames, self._ws_frames = self._ws_frames, defaultdict(int)
        for (req_identifier, verdict), count in ws_frames.items():
            self.ws_frames.labels(req_identifier, verdict).inc(count)

    def render(self) -> bytes:
        self.flush()
        if MULTIPROCESS_DIR in os.environ:
            # Workers of `serve --workers N` share a folder of value files: answer for all of them.
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


@contextlib.asynccontextmanager
async def flushing(metrics: Metrics, interval: float = FLUSH_INTERVAL) -> AsyncIterator[None]:
    """Flush ``metrics`` every ``interval`` seconds while in the block, and once more on leaving it."""

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(interval)
            metrics.flush()

    try:
        async with running(flush_periodically(), name="metrics-flusher"):
            yield
    finally:
        metrics.flush()


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
# Set by a handler whose route template says too little (the /im catch-all): a bounded label.
ROUTE_LABEL: web.RequestKey[str] = web.RequestKey("route_label", str)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/im/{tail}``), never the raw path."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    return resource.canonical


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
