"""Reading and writing OpenIM's client frames (openim-sdk-protocol.md 2.3) as the guard does."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from messenger_gw.ws import frames

SDK_FRAME = b'{"reqIdentifier":1003,"msgIncr":"m1","sendID":"alice","operationID":"op","data":"CgVhbGljZQ=="}'


def test_a_frame_as_the_sdk_writes_it_is_read_and_marked_to_be_relayed_as_it_came() -> None:
    request = frames.decode_request(SDK_FRAME)
    assert request == frames.Request(1003, "m1", "alice", "op", "", "CgVhbGljZQ==", b"\n\x05alice", canonical=True)


def test_other_spellings_are_read_as_go_reads_them_the_last_one_winning_and_are_rewritten() -> None:
    raw = orjson.dumps(
        {
            "SENDID": "mallory",
            "sendid": "alice",
            "ReqIdentifier": 1006,
            "msgincr": "m",
            "extra": 1,
            "operationID": None,
            "DATA": "",
        }
    )
    request = frames.decode_request(raw)
    assert request is not None
    assert (request.send_id, request.req_identifier, request.operation_id, request.canonical) == (
        "alice",
        1006,
        "",
        False,
    )
    assert orjson.loads(frames.encode_request(request)) == {
        "reqIdentifier": 1006,
        "token": "",
        "sendID": "alice",
        "operationID": "",
        "msgIncr": "m",
        "data": "",
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"reqIdentifier": "1003"}',  # a string is no int32 to Go
        b'{"reqIdentifier": true}',
        b'{"reqIdentifier": 4294967296}',
        b'{"reqIdentifier": 1003.0}',
        b'{"sendID": 7}',
        b'{"data": "not base64!"}',
        b'{"data": "YQ"}',  # padding missing
        b'{"data": 12}',
    ],
)
def test_what_openims_decoder_would_refuse_is_no_request(raw: bytes) -> None:
    assert frames.decode_request(raw) is None


def test_an_answer_is_openims_resp_in_gos_field_order_with_null_data() -> None:
    assert frames.answer(1005, "m", "op", 1002, "NoPermissionError") == (
        b'{"reqIdentifier":1005,"msgIncr":"m","operationID":"op","errCode":1002,"errMsg":"NoPermissionError",'
        b'"data":null}'
    )
    assert orjson.loads(frames.KICK)["reqIdentifier"] == 2002
    assert frames.handshake_answer(1501) == '{"errCode":1501,"errMsg":"TokenExpiredError","errDlt":""}'


def test_gzip_is_read_within_its_bound_only() -> None:
    assert frames.gunzip(gzip.compress(SDK_FRAME), 1000) == SDK_FRAME
    assert frames.gunzip(frames.gzip(SDK_FRAME), 1000) == SDK_FRAME
    assert frames.gunzip(gzip.compress(b"x" * 2000), 1000) is None, "expands beyond the bound"
    assert frames.gunzip(gzip.compress(SDK_FRAME)[:-4], 1000) is None, "cut short"
    assert frames.gunzip(SDK_FRAME, 1000) is None, "not gzip"


def test_data_is_standard_base64() -> None:
    payload = bytes(range(256))
    raw = orjson.dumps({"data": base64.b64encode(payload).decode()})
    request = frames.decode_request(raw)
    assert request is not None
    assert request.data == payload
