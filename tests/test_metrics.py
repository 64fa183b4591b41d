"""Tallied request metrics reach the exposition exactly as observations made one by one would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from messenger_gw.metrics import LATENCY_BUCKETS, ROUTE_LABEL, Metrics, _Tally

SECONDS = [0.0, 0.0004, 0.001, 0.0011, 0.003, 0.01, 0.2, 0.9999, 2.5, 7.0, 10.0, 11.0, 3600.0]


def test_a_tally_flushed_equals_the_same_observations_one_by_one() -> None:
    tallied, one_by_one = Metrics(), CollectorRegistry()
    reference = Histogram(
        "messenger_gw_openim_request_duration_seconds",
        "Duration of calls to OpenIM's REST API, by OpenIM route.",
        ["route"],
        buckets=LATENCY_BUCKETS,
        registry=one_by_one,
    )
    for seconds in SECONDS:
        tallied.openim_call_done("/msg/send_msg", seconds)
        reference.labels("/msg/send_msg").observe(seconds)
    tallied.flush()
    expected = [line for line in generate_latest(one_by_one).decode().splitlines() if "/msg/send_msg" in line]
    exposed = generate_latest(tallied.registry).decode().splitlines()
    assert expected
    assert all(line in exposed for line in expected)


def test_nothing_is_exported_before_a_flush_and_nothing_twice() -> None:
    metrics = Metrics()
    metrics.openim_call_done("/msg/send_msg", 0.002)
    assert (
        metrics.registry.get_sample_value(
            "messenger_gw_openim_request_duration_seconds_count", {"route": "/msg/send_msg"}
        )
        is None
    )
    metrics.flush()
    metrics.flush()
    assert (
        metrics.registry.get_sample_value(
            "messenger_gw_openim_request_duration_seconds_count", {"route": "/msg/send_msg"}
        )
        == 1
    )


def test_a_tally_puts_each_observation_in_the_first_bucket_that_holds_it() -> None:
    tally = _Tally()
    for seconds in (0.001, 0.0010001, 10.0, 10.5):
        tally.add(seconds)
    assert tally.count == 4
    assert tally.buckets[0] == 1  # le=0.001 holds 0.001 itself
    assert tally.buckets[1] == 1
    assert tally.buckets[len(LATENCY_BUCKETS) - 1] == 1  # le=10
    assert tally.buckets[-1] == 1  # +Inf


def test_requests_in_flight_are_exported_at_each_flush() -> None:
    from aiohttp.test_utils import make_mocked_request

    metrics = Metrics()
    started = [metrics.request_started() for _ in range(3)]
    metrics.flush()
    assert metrics.registry.get_sample_value("messenger_gw_http_requests_in_flight") == 3
    request = make_mocked_request("GET", "/healthz")
    request[ROUTE_LABEL] = "/healthz"
    for at in started:
        metrics.request_answered(request, 200, at)
    metrics.flush()
    assert metrics.registry.get_sample_value("messenger_gw_http_requests_in_flight") == 0
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert metrics.registry.get_sample_value("messenger_gw_http_requests_total", labels) == 3
