"""RFC 9421 signing and verification, and RFC 9530 Content-Digest, without any server."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from messenger_gw.auth import signatures
from messenger_gw.auth.signatures import Message, SignatureRejected

KEY = bytes(range(32))
NOW = 1_795_000_000
BODY = b'{"userIDs":["u1"]}'


def message(body: bytes = BODY, **changes: Any) -> Message:
    base = Message("POST", "/im/user/get_users_info", "a=1", {"content-digest": signatures.content_digest(body)})
    return dataclasses.replace(base, **changes)


def signed(msg: Message, **options: Any) -> dict[str, str]:
    params: dict[str, Any] = {"key": KEY, "keyid": "sess", "created": NOW, "nonce": "n1"} | options
    return signatures.sign(msg, **params)


def verify(headers: dict[str, str], msg: Message, *, now: float = NOW, key: bytes = KEY) -> None:
    [parsed] = signatures.parse(headers["Signature-Input"], headers["Signature"])
    parsed.check(now)
    parsed.verify(msg, key)


def rejected(reason: str) -> Any:
    return pytest.raises(SignatureRejected, match=f"^{reason}$")


def test_a_signature_verifies_with_the_same_key_and_message() -> None:
    verify(signed(message()), message())


def test_signature_input_names_the_profile() -> None:
    headers = signed(message())
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@path" "@query" "content-digest")'
        ';created=1795000000;keyid="sess";nonce="n1";alg="hmac-sha256"'
    )
    assert headers["Signature"].startswith("sig1=:")


@pytest.mark.parametrize(
    "changed",
    [
        {"method": "PUT"},
        {"path": "/im/user/get_users_info2"},
        {"query": "a=2"},
        {"query": ""},
        {"headers": {"content-digest": signatures.content_digest(b"{}")}},
    ],
)
def test_a_changed_covered_component_breaks_the_signature(changed: dict[str, Any]) -> None:
    with rejected("bad_signature"):
        verify(signed(message()), message(**changed))


def test_a_wrong_key_breaks_the_signature() -> None:
    with rejected("bad_signature"):
        verify(signed(message()), message(), key=bytes(32))


def test_an_empty_query_is_signed_as_a_lone_question_mark() -> None:
    parsed = signatures.parse(**_named(signed(message(query=""))))[0]
    assert b'"@query": ?\n' in parsed.base(message(query=""))


def _named(headers: dict[str, str]) -> dict[str, str]:
    return {"signature_input": headers["Signature-Input"], "signature": headers["Signature"]}


@pytest.mark.parametrize(
    ("signature_input", "signature"), [(None, "sig1=:AA==:"), ('sig1=("@method")', None), ("", "")]
)
def test_missing_headers_are_rejected(signature_input: str | None, signature: str | None) -> None:
    with rejected("missing_headers"):
        signatures.parse(signature_input, signature)


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ("sig1=(@method)", "sig1=:AA==:"),  # component names are strings
        ('sig1=("@method");keyid="k"', 'sig1="not bytes"'),
        ('sig1=("@method");keyid="k"', "sig2=:AA==:"),  # no signature for the label
        ('sig1=("@method");keyid="k", sig1=("@path");keyid="k"', "sig1=:AA==:"),  # duplicate label
        ('sig1=("@method");created=1', "sig1=:AA==:"),  # no keyid
        ('sig1=("@Method");keyid="k"', "sig1=:AA==:"),  # not lower case
        ('sig1=("@method" "@method");keyid="k"', "sig1=:AA==:"),  # repeated component
        ("sig1=" + "x" * 5000, "sig1=:AA==:"),  # over the size bound
    ],
)
def test_unparsable_headers_are_rejected(signature_input: str, signature: str) -> None:
    with rejected("unparsable"):
        signatures.parse(signature_input, signature)


def test_component_parameters_outside_the_profile_are_rejected() -> None:
    with rejected("unsupported_component"):
        signatures.parse('sig1=("content-digest";sf);keyid="k"', "sig1=:AA==:")


@pytest.mark.parametrize("missing", signatures.REQUIRED_COMPONENTS)
def test_each_required_component_must_be_covered(missing: str) -> None:
    components = [c for c in signatures.REQUIRED_COMPONENTS if c != missing]
    headers = signed(message(), components=components)
    with rejected("missing_component"):
        verify(headers, message())


@pytest.mark.parametrize(
    "params",
    [
        ';created=1795000000;keyid="sess"',  # no nonce
        ';created="1795000000";keyid="sess";nonce="n"',  # created not an integer
        ';created=1795000000;keyid="sess";nonce=""',  # empty nonce
        ';created=1795000000;keyid="sess";nonce="n";alg="rsa-pss-sha512"',  # another algorithm
        ';keyid="sess";nonce="n"',  # no created
    ],
)
def test_signature_parameters_outside_the_profile_are_rejected(params: str) -> None:
    signature_input = 'sig1=("@method" "@path" "@query" "content-digest")' + params
    [parsed] = signatures.parse(signature_input, "sig1=:AA==:")
    with rejected("bad_parameters"):
        parsed.check(NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_created_more_than_300_seconds_away_is_rejected(skew: int) -> None:
    with rejected("created_out_of_window"):
        verify(signed(message()), message(), now=NOW + skew)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_created_within_300_seconds_is_accepted(skew: int) -> None:
    verify(signed(message()), message(), now=NOW + skew)


def test_a_past_expires_parameter_is_rejected() -> None:
    signature_input = (
        f'sig1=("@method" "@path" "@query" "content-digest");created={NOW};keyid="s";nonce="n";expires={NOW}'
    )
    [parsed] = signatures.parse(signature_input, "sig1=:AA==:")
    with rejected("expired"):
        parsed.check(NOW)


def test_content_digest_matches_its_body() -> None:
    signatures.check_content_digest(signatures.content_digest(BODY), BODY)
    signatures.check_content_digest(signatures.content_digest(b""), b"")
    with rejected("digest_mismatch"):
        signatures.check_content_digest(signatures.content_digest(BODY), BODY + b" ")


@pytest.mark.parametrize("header", [None, "", "sha-256=abc", "sha-512=:AA==:", "not a dictionary ("])
def test_a_missing_or_malformed_content_digest_is_rejected(header: str | None) -> None:
    with rejected("bad_digest"):
        signatures.check_content_digest(header, BODY)


def test_a_covered_header_field_is_signed_by_its_value() -> None:
    msg = message(headers={"content-digest": signatures.content_digest(BODY), "x-app": " v1 "})
    headers = signed(msg, components=[*signatures.REQUIRED_COMPONENTS, "x-app"])
    verify(headers, msg)
    with rejected("bad_signature"):
        verify(headers, dataclasses.replace(msg, headers={**msg.headers, "x-app": "v2"}))


def test_a_covered_header_field_that_is_absent_is_rejected() -> None:
    msg = message(headers={"content-digest": signatures.content_digest(BODY), "x-app": "v1"})
    headers = signed(msg, components=[*signatures.REQUIRED_COMPONENTS, "x-app"])
    with rejected("unsupported_component"):
        verify(headers, message())


# -- interoperability with an independent implementation (http-message-signatures) ------------


class _Keys(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id: str) -> bytes:
        return KEY

    def resolve_private_key(self, key_id: str) -> bytes:
        return KEY


@dataclasses.dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]


def test_a_signature_by_the_independent_implementation_verifies_here() -> None:
    request = _Request("POST", "http://gw.test/im/user/get_users_info?a=1", {})
    HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_Keys()).sign(
        request,
        key_id="sess",
        created=datetime.datetime.fromtimestamp(NOW, datetime.UTC),
        nonce="n1",
        covered_component_ids=signatures.REQUIRED_COMPONENTS,
        body=BODY,
    )
    assert request.headers["Content-Digest"] == signatures.content_digest(BODY)
    verify(request.headers, message(headers={"content-digest": request.headers["Content-Digest"]}))


def test_a_signature_made_here_verifies_with_the_independent_implementation() -> None:
    headers = signed(message(), created=int(datetime.datetime.now(datetime.UTC).timestamp()))
    request = _Request(
        "POST",
        "http://gw.test/im/user/get_users_info?a=1",
        {"Content-Digest": signatures.content_digest(BODY), **headers},
    )
    [result] = HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_Keys()).verify(
        request, body=BODY, require_components=signatures.REQUIRED_COMPONENTS
    )
    assert result.parameters["keyid"] == "sess"
    assert result.parameters["nonce"] == "n1"


# -- the canonical fast path agrees with http_sf ----------------------------------------------------

CANONICAL = [
    ('sig1=("@method" "@path" "@query" "content-digest");created=1795000000;keyid="s";nonce="n1";alg="hmac-sha256"',
     "sig1=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:"),
    ('pyhms=("@method" "@path" "@query" "content-digest");created=-5;keyid="k k";alg="hmac-sha256";nonce="x"',
     "pyhms=:AA==:"),
    ('s=();keyid="k"', "s=::"),
    ('sig1=("@method" "x-app");created=0;keyid="!#$%&\'()*+,-./:;<=>?@[]^_`{|}~"', "sig1=:AAAA:"),
]  # fmt: skip
NOT_CANONICAL = [
    ('sig1=( "@method" );keyid="k"', "sig1=:AA==:"),  # whitespace inside the list
    ('sig1=("@method");keyid="k\\"q"', "sig1=:AA==:"),  # an escaped quote
    ('sig1=("@method");keyid="k";created=1.5', "sig1=:AA==:"),  # a decimal
    ('sig1=("@method");keyid="k";created=007', "sig1=:AA==:"),  # leading zeros
    ('sig1=("@method");keyid="k";flag', "sig1=:AA==:"),  # a bare boolean parameter
    ('sig1=("@method");keyid="k", sig2=("@path");keyid="j"', "sig1=:AA==:, sig2=:AA==:"),  # two signatures
    ('sig1=("@method");keyid="k"', "sig1=:AA==:;x=1"),  # parameters on the signature
    ('sig1=("@method");keyid="k";keyid="j"', "sig1=:AA==:"),  # a repeated parameter
]  # fmt: skip


@pytest.mark.parametrize(("signature_input", "signature"), CANONICAL)
def test_the_fast_path_reads_canonical_headers_as_http_sf_does(signature_input: str, signature: str) -> None:
    [fast] = signatures._parse_canonical(signature_input, signature) or []
    [slow] = signatures._parse_structured(signature_input, signature)
    assert (fast.label, fast.components, fast.params, fast.signature) == (
        slow.label,
        slow.components,
        slow.params,
        slow.signature,
    )
    msg = message(headers={"content-digest": "d", "x-app": "v"})
    if set(fast.components) <= {"@method", "@path", "@query", "content-digest", "x-app"}:
        assert fast.base(msg) == slow.base(msg)


@pytest.mark.parametrize(("signature_input", "signature"), NOT_CANONICAL)
def test_anything_else_goes_through_http_sf(signature_input: str, signature: str) -> None:
    assert signatures._parse_canonical(signature_input, signature) is None


def test_a_canonical_digest_and_its_structured_reading_agree() -> None:
    header = signatures.content_digest(BODY)
    signatures.check_content_digest(header, BODY)
    signatures.check_content_digest(header + ", sha-512=:AA==:", BODY)  # not canonical: http_sf reads it
    with rejected("digest_mismatch"):
        signatures.check_content_digest(header + ", sha-512=:AA==:", b"other")


def test_what_sign_sends_is_read_by_the_sdk_pattern_as_http_sf_reads_it() -> None:
    msg = message()
    headers = signatures.sign(msg, key=KEY, keyid="sess", created=1_795_000_000, nonce="n-1")
    assert signatures._SDK_INPUT.fullmatch(headers["Signature-Input"]) is not None
    [fast] = signatures._parse_canonical(headers["Signature-Input"], headers["Signature"]) or []
    [slow] = signatures._parse_structured(headers["Signature-Input"], headers["Signature"])
    assert (fast.label, fast.components, fast.params, fast.signature, fast.base(msg)) == (
        slow.label,
        slow.components,
        slow.params,
        slow.signature,
        slow.base(msg),
    )
    fast.verify(msg, KEY)


@pytest.mark.parametrize(("signature_input", "signature"), CANONICAL)
def test_a_signature_joined_with_another_field_line_reads_as_it_does_alone(
    signature_input: str, signature: str
) -> None:
    """Field lines joined with ", " (RFC 9651 section 4.2) leave the fast path: http_sf reads each signature
    as the fast path reads it alone."""
    other_input, other_signature = 'proxy=("@method" "@authority");keyid="hop";created=1', "proxy=:AAAA:"
    for joined in ((f"{signature_input}, {other_input}", f"{signature}, {other_signature}"),
                   (f"{other_input}, {signature_input}", f"{other_signature}, {signature}")):  # fmt: skip
        assert signatures._parse_canonical(*joined) is None
        by_label = {parsed.label: parsed for parsed in signatures.parse(*joined)}
        [alone] = signatures._parse_canonical(signature_input, signature) or []
        read = by_label[alone.label]
        assert (read.components, read.params, read.signature) == (alone.components, alone.params, alone.signature)
        msg = message(headers={"content-digest": "d", "x-app": "v"})
        if set(alone.components) <= {"@method", "@path", "@query", "content-digest", "x-app"}:
            assert read.base(msg) == alone.base(msg)


def test_a_label_repeated_on_a_second_field_line_is_refused() -> None:
    headers = signed(message())
    with rejected("unparsable"):
        signatures.parse(f"{headers['Signature-Input']}, {headers['Signature-Input']}", headers["Signature"])
    with rejected("unparsable"):
        signatures.parse(headers["Signature-Input"], f"{headers['Signature']}, {headers['Signature']}")
