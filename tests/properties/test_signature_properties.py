"""RFC 9421 at the gateway's door, by property: what a conforming signer sends is accepted, any change refused,
and no header value or field line makes the gateway fail."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import http_sf
from hypothesis import assume, given
from hypothesis import strategies as st

from messenger_gw.auth.signatures import content_digest
from messenger_gw.sdk import GatewayClient
from tests.conftest import Recorder
from tests.properties.signing import (
    APP_VERSION,
    BODY,
    QUERY,
    REQUIRED_COMPONENTS,
    SIGNATURE_FIELDS,
    Request,
    Signing,
    send,
    session_of,
    sign,
    signings,
)


def refused(status: int, reply: Any) -> bool:
    return status == 401 and isinstance(reply, dict) and reply.get("errCode") == 40100 and "data" not in reply


# -- every valid signature is accepted ---------------------------------------------------------------


@given(
    signing=signings(),
    intermediary=st.none() | signings(),
    intermediary_first=st.booleans(),
    query=QUERY,
    body=BODY,
    app_version=APP_VERSION,
)
async def test_every_signature_a_conforming_signer_makes_is_accepted(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    signing: Signing,
    intermediary: Signing | None,
    intermediary_first: bool,
    query: str,
    body: bytes,
    app_version: str,
) -> None:
    """In one field line each, beside another signature an intermediary added (RFC 9421 section 4.3) or alone."""
    assume(intermediary is None or intermediary.label != signing.label)
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
    forwarded = len(recorder.to("/user/get_users_info"))
    status, reply = await send(http, alice.base_url, request)
    assert status == 200, (status, reply)
    assert len(recorder.to("/user/get_users_info")) == forwarded + 1
    assert recorder.to("/user/get_users_info")[-1].body == body


# -- every change to a signed request is refused ------------------------------------------------------


def _members(request: Request, name: str) -> dict[str, Any]:
    return dict(http_sf.parse(request.field(name).encode(), tltype="dictionary"))  # type: ignore[arg-type]


def _set_member(request: Request, name: str, label: str, member: Any) -> None:
    members = _members(request, name)
    members[label] = member
    request.replace_field(name, http_sf.ser(members))


def _change_input(label: str, change: Callable[[list[Any], dict[str, Any]], None]) -> Callable[[Request], None]:
    def apply(request: Request) -> None:
        items, params = _members(request, "Signature-Input")[label]
        items, params = list(items), dict(params)
        change(items, params)
        _set_member(request, "Signature-Input", label, (items, params))

    return apply


@st.composite
def mutations(draw: st.DrawFn, signing: Signing) -> tuple[str, Callable[[Request], None]]:
    """One change an attacker could make to a signed request, named for the failure message."""
    label = signing.label
    covered = set(signing.components)
    choices: dict[str, Callable[[Request], None]] = {}

    flip = draw(st.integers(0, 31 * 8 - 1))

    def signature_bit(request: Request) -> None:
        value, params = _members(request, "Signature")[label]
        raw = bytearray(value)
        raw[flip // 8] ^= 1 << (flip % 8)
        _set_member(request, "Signature", label, (bytes(raw), params))

    choices["a bit of the signature"] = signature_bit
    extra = draw(st.from_regex(r"[a-z]{1,4}=[0-9]{1,3}", fullmatch=True))

    def query(request: Request) -> None:
        request.query = f"{request.query}&{extra}" if request.query else extra

    choices["the query"] = query

    def path(request: Request) -> None:
        request.path = "/im/user/get_self_user_info"

    choices["the path"] = path
    padding = draw(st.sampled_from([b" ", b"\n", b"\t"]))

    def body(request: Request) -> None:
        request.body += padding

    choices["the body"] = body

    def body_and_digest(request: Request) -> None:
        request.body += padding
        request.replace_field("Content-Digest", content_digest(request.body))

    choices["the body with its digest"] = body_and_digest
    if "x-app-version" in covered:
        choices["a covered header"] = lambda r: r.replace_field("X-App-Version", r.field("X-App-Version") + "x")
        choices["a covered header dropped"] = lambda r: r.replace_field("X-App-Version", None)
    if "content-type" in covered:
        choices["the covered content type"] = lambda r: r.replace_field("Content-Type", "application/json; x=1")
    if covered & {"@authority", "@target-uri"}:
        choices["the authority"] = lambda r: r.fields.append(("Host", "localhost"))
    delta = draw(st.integers(1, 30) | st.integers(-30, -1))
    choices["created"] = _change_input(label, lambda _, p: p.__setitem__("created", p["created"] + delta))
    choices["the nonce"] = _change_input(label, lambda _, p: p.__setitem__("nonce", p["nonce"] + "x"))
    choices["the keyid"] = _change_input(label, lambda _, p: p.__setitem__("keyid", p["keyid"] + "x"))
    choices["a parameter added"] = _change_input(label, lambda _, p: p.__setitem__("x", 1))
    if signing.include_alg:
        choices["alg dropped"] = _change_input(label, lambda _, p: p.pop("alg"))
    else:
        choices["alg added"] = _change_input(label, lambda _, p: p.__setitem__("alg", "hmac-sha256"))
    dropped = draw(st.sampled_from(signing.components))
    choices["a component dropped"] = _change_input(
        label, lambda items, _: items.remove(next(i for i in items if i[0] == dropped))
    )
    if len(signing.components) > 1:
        first, second = sorted(
            draw(st.lists(st.integers(0, len(signing.components) - 1), min_size=2, max_size=2, unique=True))
        )

        def swap(items: list[Any], _: dict[str, Any]) -> None:
            items[first], items[second] = items[second], items[first]

        choices["two components swapped"] = _change_input(label, swap)
    added = draw(st.sampled_from(["@authority", "@scheme", "@request-target", "x-app-version"]))
    if added not in covered:
        choices["a component added"] = _change_input(label, lambda items, _: items.append((added, {})))
    choices["the label of the signature"] = lambda r: r.replace_field(
        "Signature", http_sf.ser({f"{label}x": member for member in _members(r, "Signature").values()})
    )
    choices["Signature dropped"] = lambda r: r.replace_field("Signature", None)
    choices["Signature-Input dropped"] = lambda r: r.replace_field("Signature-Input", None)
    choices["Content-Digest dropped"] = lambda r: r.replace_field("Content-Digest", None)
    name = draw(st.sampled_from(sorted(choices)))
    return name, choices[name]


@given(data=st.data(), signing=signings(), query=QUERY, body=BODY, app_version=APP_VERSION)
async def test_every_change_to_a_signed_request_is_refused(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    data: st.DataObject,
    signing: Signing,
    query: str,
    body: bytes,
    app_version: str,
) -> None:
    keyid, key = session_of(alice)
    request = sign(
        alice.base_url, key=key, keyid=keyid, signing=signing, query=query, body=body, app_version=app_version
    )
    what, mutate = data.draw(mutations(signing))
    mutate(request)
    before = len(recorder.requests)
    status, reply = await send(http, alice.base_url, request)
    assert refused(status, reply), (what, status, reply)
    assert len(recorder.requests) == before, what


@given(signing=signings(), query=QUERY, body=BODY, app_version=APP_VERSION)
async def test_a_signed_request_sent_twice_is_refused_the_second_time(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    signing: Signing,
    query: str,
    body: bytes,
    app_version: str,
) -> None:
    keyid, key = session_of(alice)
    request = sign(
        alice.base_url, key=key, keyid=keyid, signing=signing, query=query, body=body, app_version=app_version
    )
    assert (await send(http, alice.base_url, request))[0] == 200
    assert refused(*await send(http, alice.base_url, dataclasses.replace(request, fields=list(request.fields))))


# -- no header value and no field line makes the gateway fail -----------------------------------------

FIELD_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=300)
SF_MEMBER = st.one_of(
    st.from_regex(r"\([ -(*-~]{0,40}\)(;[a-z]+=[ -+\--:<-~]{0,12}){0,4}", fullmatch=True),
    st.from_regex(r":[A-Za-z0-9+/=]{0,60}:", fullmatch=True),
    st.from_regex(r"\"[ -~]{0,30}\"", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[a-zA-Z*][a-zA-Z0-9_.:/*%-]{0,10}", fullmatch=True),
    st.from_regex(r"\?[01]", fullmatch=True),
)
SF_DICTIONARY = st.lists(st.tuples(st.from_regex(r"[a-zA-Z0-9*_-]{0,6}", fullmatch=True), SF_MEMBER), max_size=4).map(
    lambda members: ", ".join(f"{k}={v}" for k, v in members)
)


@st.composite
def edited(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars)))
        what = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(list(' ,;=()":\\*%-09azAZ+/\t')))
        if what == "insert" or not chars:
            chars.insert(at, char)
        elif at < len(chars):
            if what == "delete":
                del chars[at]
            else:
                chars[at] = char
    return "".join(chars)


@st.composite
def field_lines(draw: st.DrawFn, value: str) -> list[str]:
    """``value`` sent as one field line, or cut into several at commas or anywhere."""
    if draw(st.booleans()) or len(value) < 2:
        return [value]
    cuts = sorted(draw(st.lists(st.integers(1, len(value) - 1), max_size=3, unique=True)))
    bounds = [0, *cuts, len(value)]
    return [value[a:b] for a, b in itertools.pairwise(bounds)]


@given(data=st.data(), signing=signings(), body=BODY)
async def test_no_signature_field_value_or_split_makes_the_gateway_fail(
    alice: GatewayClient, http: aiohttp.ClientSession, data: st.DataObject, signing: Signing, body: bytes
) -> None:
    """Random structured fields, near-misses of a valid signature, any text, each cut into any field lines:
    accepted or refused with the envelope, never an error of the gateway's own."""
    keyid, key = session_of(alice)
    request = sign(alice.base_url, key=key, keyid=keyid, signing=signing, query="", body=body, app_version="1")
    values = {name: request.field(name) for name in (*SIGNATURE_FIELDS, "Content-Digest")}
    fields = [(k, v) for k, v in request.fields if k not in values]
    for name, valid in values.items():
        value = data.draw(st.one_of(st.just(valid), edited(valid), SF_DICTIONARY, FIELD_TEXT), label=name)
        fields += [(name, line) for line in data.draw(field_lines(value), label=f"{name} lines")]
    request.fields = fields
    status, reply = await send(http, alice.base_url, request)
    assert status in (200, 401), (status, reply)
    assert isinstance(reply, dict)
    assert "errCode" in reply
    if status == 401:
        assert refused(status, reply)


@given(
    signing=signings(),
    missing=st.lists(st.sampled_from(REQUIRED_COMPONENTS), min_size=1, unique=True),
    body=BODY,
)
async def test_a_signature_that_leaves_out_a_required_component_is_refused(
    alice: GatewayClient,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    signing: Signing,
    missing: list[str],
    body: bytes,
) -> None:
    """Correctly made, but not binding the method, path, query or body: worthless to the gateway."""
    keyid, key = session_of(alice)
    narrower = dataclasses.replace(signing, components=tuple(c for c in signing.components if c not in missing))
    request = sign(alice.base_url, key=key, keyid=keyid, signing=narrower, query="", body=body, app_version="1")
    before = len(recorder.requests)
    assert refused(*await send(http, alice.base_url, request))
    assert len(recorder.requests) == before
