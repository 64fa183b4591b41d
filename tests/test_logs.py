"""JSON-lines log records."""

from __future__ import annotations

import logging

import orjson

from messenger_gw.logs import OPERATION_ID_VAR, JsonFormatter


def record(msg: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("messenger_gw.test", logging.WARNING, __file__, 1, msg, None, None)
    entry.__dict__.update(extra)
    return entry


def test_a_record_is_one_json_object_with_the_operation_id() -> None:
    token = OPERATION_ID_VAR.set("op-7")
    try:
        line = JsonFormatter().format(record("refused", reason="bad_signature"))
    finally:
        OPERATION_ID_VAR.reset(token)
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["operationID"] == "op-7"
    assert entry["msg"] == "refused"
    assert entry["level"] == "warning"
    assert entry["reason"] == "bad_signature"
    assert entry["ts"].endswith("Z")


def test_outside_a_request_there_is_no_operation_id() -> None:
    assert "operationID" not in orjson.loads(JsonFormatter().format(record("started")))
