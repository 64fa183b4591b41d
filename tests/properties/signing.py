"""Requests signed by an independent RFC 9421 implementation (http-message-signatures), sent as field lines.

The gateway's own signer is never used here: what these requests prove accepted or refused is
what any conforming client would send, not what the gateway's SDK happens to produce.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import http_sf
import orjson
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from messenger_gw.sdk import GatewayClient

ROUTE = "/im/user/get_users_info"
OPTIONAL_COMPONENTS = ("@authority", "@scheme", "@target-uri", "@request-target", "content-type", "x-app-version")
REQUIRED_COMPONENTS = ("@method", "@path", "@query", "content-digest")
SIGNATURE_FIELDS = ("Signature-Input", "Signature")


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: bytes) -> None:
        self.key = key

    def resolve_public_key(self, key_id: str) -> bytes:
        return self.key

    def resolve_private_key(self, key_id: str) -> bytes:
        return self.key


@dataclasses.dataclass
class _Message:
    """What http-message-signatures reads of a request, and where it writes the signature fields."""

    method: str
    url: str
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Signing:
    """How one signature is made: every choice a conforming signer may make within the gateway's profile."""

    label: str
    components: tuple[str, ...]
    nonce: str
    created_offset: int
    expires_in: int | None
    include_alg: bool
    tag: str | None


@dataclasses.dataclass
class Request:
    """A request as it goes on the wire: ``fields`` are its header field lines, in order, repeats kept."""

    path: str
    query: str
    body: bytes
    fields: list[tuple[str, str]]

    def target(self, base_url: str) -> URL:
        return URL(base_url + self.path + (f"?{self.query}" if self.query else ""), encoded=True)

    def field(self, name: str) -> str:
        [value] = [v for k, v in self.fields if k.lower() == name.lower()]
        return value

    def replace_field(self, name: str, value: str | None) -> None:
        index = next(i for i, (k, _) in enumerate(self.fields) if k.lower() == name.lower())
        if value is None:
            del self.fields[index]
        else:
            self.fields[index] = (self.fields[index][0], value)


def sign(
    base_url: str,
    *,
    key: bytes,
    keyid: str,
    signing: Signing,
    query: str,
    body: bytes,
    app_version: str,
    intermediary: Signing | None = None,
    intermediary_first: bool = False,
) -> Request:
    """A request signed as ``signing`` says; with ``intermediary``, a second signature by an unknown key too."""
    url = base_url + ROUTE + (f"?{query}" if query else "")
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    message = _Message(
        "POST",
        url,
        {"Content-Type": "application/json", "X-App-Version": app_version, "Content-Digest": f"sha-256=:{digest}:"},
    )
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_Keys(key))
    foreign = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_Keys(os.urandom(32)))
    order: list[tuple[HTTPMessageSigner, str, Signing]] = [(signer, keyid, signing)]
    if intermediary is not None:
        hop = (foreign, "intermediary-" + os.urandom(4).hex(), intermediary)
        order = [hop, *order] if intermediary_first else [*order, hop]
    for index, (by, key_id, how) in enumerate(order):
        now = int(time.time())
        by.sign(
            message,
            key_id=key_id,
            created=_at(now + how.created_offset),
            expires=_at(now + how.expires_in) if how.expires_in is not None else None,
            # Hypothesis replays an example while it shrinks one: the nonce must still be new each time.
            nonce=(os.urandom(6).hex() + how.nonce)[:128],
            label=how.label,
            tag=how.tag,
            include_alg=how.include_alg,
            covered_component_ids=how.components,
            append_if_signature_exists=index > 0,
            use_existing_digest=True,
        )
    return Request(ROUTE, query, body, list(message.headers.items()))


def _at(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def split_signature_fields(request: Request) -> None:
    """Send each signature's ``Signature-Input`` and ``Signature`` members on field lines of their own
    (RFC 9651 section 4.2: a recipient combines the lines of a field, in order, with commas)."""
    fields = [(k, v) for k, v in request.fields if k not in SIGNATURE_FIELDS]
    for name in SIGNATURE_FIELDS:
        members = dict(http_sf.parse(request.field(name).encode(), tltype="dictionary"))  # type: ignore[arg-type]
        fields += [(name, http_sf.ser({label: member})) for label, member in members.items()]
    request.fields = fields


async def send(http: aiohttp.ClientSession, base_url: str, request: Request) -> tuple[int, Any]:
    """POST ``request`` exactly as built; the status and the JSON answer (None if it is not JSON)."""
    headers = CIMultiDict(request.fields)
    headers.setdefault("Accept-Encoding", "identity")
    async with http.post(request.target(base_url), data=request.body, headers=headers) as response:
        raw = await response.read()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, None


def session_of(client: GatewayClient) -> tuple[str, bytes]:
    assert client.state is not None
    return client.state.session_id, client.state.key


# -- strategies ------------------------------------------------------------------------------------

SF_KEY = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,11}", fullmatch=True)
# Any sf-string character, '"' and '\' included (the signer escapes them).
SF_STRING_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=128)
QUERY = st.one_of(
    st.just(""),
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True),
            st.from_regex(r"([A-Za-z0-9._~-]|%[0-9A-F]{2}){0,10}", fullmatch=True),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
)
JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
EXTRA_FIELDS = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k.casefold() != "userids"),
    st.recursive(
        JSON_SCALAR,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)
BODY = st.builds(
    lambda ids, extra: orjson.dumps({"userIDs": ids} | extra),
    st.lists(st.sampled_from(["alice", "bob"]), max_size=3),
    EXTRA_FIELDS,
)
APP_VERSION = st.from_regex(r"[!-~]([ !-~]{0,20}[!-~])?", fullmatch=True)


@st.composite
def signings(draw: st.DrawFn, *, components: Sequence[str] = REQUIRED_COMPONENTS) -> Signing:
    optional = draw(st.lists(st.sampled_from(OPTIONAL_COMPONENTS), unique=True, max_size=len(OPTIONAL_COMPONENTS)))
    return Signing(
        label=draw(SF_KEY),
        components=tuple(draw(st.permutations([*components, *optional]))),
        nonce=draw(SF_STRING_TEXT),
        # Within the gateway's 300 s window, with room for the time the example itself takes.
        created_offset=draw(st.integers(-240, 240)),
        expires_in=draw(st.none() | st.integers(60, 3600)),
        include_alg=draw(st.booleans()),
        tag=draw(st.none() | SF_STRING_TEXT),
    )
