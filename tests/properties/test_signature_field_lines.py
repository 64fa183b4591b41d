"""Signature fields split over several field lines (RFC 9651 section 4.2, RFC 9421 section 4.3), by property."""

from __future__ import annotations

import dataclasses

import aiohttp
from hypothesis import assume, given
from hypothesis import strategies as st

from messenger_gw.sdk import GatewayClient
from tests.conftest import Recorder
from tests.properties.signing import (
    APP_VERSION,
    BODY,
    QUERY,
    SIGNATURE_FIELDS,
    Signing,
    send,
    session_of,
    sign,
    signings,
    split_signature_fields,
)


@given(
    signing=signings(),
    intermediary=signings(),
    intermediary_first=st.booleans(),
    query=QUERY,
    body=BODY,
    app_version=APP_VERSION,
)
async def test_a_signature_on_a_field_line_of_its_own_is_accepted(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    signing: Signing,
    intermediary: Signing,
    intermediary_first: bool,
    query: str,
    body: bytes,
    app_version: str,
) -> None:
    """An intermediary's signature on one line and the client's on another: the lines are one field."""
    assume(intermediary.label != signing.label)
    keyid, key = session_of(alice)
    request = sign(
        alice.base_url,
        key=key,
        keyid=keyid,
        signing=signing,
        query=query,
        body=body,
        app_version=app_version,
        intermediary=intermediary,
        intermediary_first=intermediary_first,
    )
    split_signature_fields(request)
    forwarded = len(recorder.to("/user/get_users_info"))
    status, reply = await send(http, alice.base_url, request)
    assert status == 200, (status, reply)
    assert len(recorder.to("/user/get_users_info")) == forwarded + 1


@given(
    signing=signings(), other=signings(), body=BODY, which=st.sampled_from(SIGNATURE_FIELDS), valid_first=st.booleans()
)
async def test_the_same_label_on_two_field_lines_is_refused(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    signing: Signing,
    other: Signing,
    body: bytes,
    which: str,
    valid_first: bool,
) -> None:
    """A second line reusing the label is a duplicate dictionary key once the lines are combined, wherever it is."""
    keyid, key = session_of(alice)
    request = sign(alice.base_url, key=key, keyid=keyid, signing=signing, query="", body=body, app_version="1")
    twin = sign(
        alice.base_url,
        key=key,
        keyid=keyid,
        signing=dataclasses.replace(other, label=signing.label),
        query="",
        body=body,
        app_version="1",
    )
    line = (which, twin.field(which))
    index = next(i for i, (k, _) in enumerate(request.fields) if k == which)
    request.fields.insert(index + 1 if valid_first else index, line)
    before = len(recorder.requests)
    status, reply = await send(http, alice.base_url, request)
    assert status == 401, (status, reply)
    assert reply["errCode"] == 40100
    assert len(recorder.requests) == before
