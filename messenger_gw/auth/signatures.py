"""RFC 9421 HTTP Message Signatures with ``hmac-sha256``, and RFC 9530 ``Content-Digest``.

Pure functions, no I/O: :func:`sign` for clients, :func:`parse` and
:meth:`ParsedSignature.verify` for the gateway. Structured fields are parsed
and serialised with ``http_sf`` (RFC 8941/9651), with one exception: a fast
path reads the canonical form of a single signature with two strict patterns
and leaves anything else to ``http_sf`` (see ``_parse_canonical``). Both read
a field's whole value: the caller joins its field lines first (RFC 9651
section 4.2), and a joined value holding several signatures never matches the
fast path's patterns.

The gateway's profile: every signature covers at least ``@method``,
``@path``, ``@query`` and ``content-digest`` and carries ``keyid`` (the
session ID), ``created`` and ``nonce``; ``alg``, when present, is
``hmac-sha256``. A request without a body signs the digest of the empty body.

A rejection is a :class:`SignatureRejected` whose ``reason`` is one of
:data:`REASONS`: a bounded set, fit for a metric label, never shown to the client.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import http_sf

ALGORITHM = "hmac-sha256"
REQUIRED_COMPONENTS = ("@method", "@path", "@query", "content-digest")
_REQUIRED = frozenset(REQUIRED_COMPONENTS)
MAX_CLOCK_SKEW = 300
MAX_NONCE_LENGTH = 128
MAX_HEADER_LENGTH = 4096

REASONS = frozenset(
    {
        "missing_headers",
        "unparsable",
        "unknown_session",
        "missing_component",
        "bad_parameters",
        "unsupported_component",
        "created_out_of_window",
        "expired",
        "bad_digest",
        "digest_mismatch",
        "bad_signature",
        "replayed_nonce",
    }
)

# Besides @method, @path and @query, which every signature covers and Message.component reads first.
DERIVED: dict[str, Callable[[Message], str]] = {
    "@authority": lambda m: m.authority.lower(),
    "@scheme": lambda m: m.scheme.lower(),
    "@target-uri": lambda m: (
        f"{m.scheme.lower()}://{m.authority.lower()}{m.path or '/'}" + (f"?{m.query}" if m.query else "")
    ),
    "@request-target": lambda m: (m.path or "/") + (f"?{m.query}" if m.query else ""),
}


class SignatureRejected(Exception):
    def __init__(self, reason: str) -> None:
        assert reason in REASONS, reason
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """What a signature can cover of a request. ``path`` and ``query`` are as sent (still encoded)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names, repeated fields already joined with ", "
    authority: str = ""
    scheme: str = "http"

    def component(self, name: str) -> str:
        # The three every signature covers, without a lookup and a call; the rest in DERIVED.
        if name == "@method":
            return self.method.upper()
        if name == "@path":
            return self.path or "/"
        if name == "@query":
            return "?" + self.query
        derive = DERIVED.get(name)
        if derive is not None:
            return derive(self)
        value = self.headers.get(name)
        if value is None or name.startswith("@"):
            raise SignatureRejected("unsupported_component")
        return value.strip()


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedSignature:
    """One signature from a request: its covered components, its parameters and its bytes."""

    label: str
    components: tuple[str, ...]
    params: dict[str, Any]
    signature: bytes
    _inner_list: Any  # the parsed Signature-Input member, serialised again for the base ...
    _canonical_text: str | None  # ... unless the header was already canonical: then its own text

    @property
    def keyid(self) -> str:
        return str(self.params["keyid"])

    @property
    def created(self) -> int:
        return int(self.params["created"])

    @property
    def nonce(self) -> str:
        return str(self.params["nonce"])

    def check(self, now: float) -> None:
        """Profile checks that need no key: components, parameters, time window."""
        if not _REQUIRED.issubset(self.components):
            raise SignatureRejected("missing_component")
        alg = self.params.get("alg", ALGORITHM)
        created, nonce = self.params.get("created"), self.params.get("nonce")
        if (
            alg != ALGORITHM
            or not isinstance(created, int)
            or isinstance(created, bool)
            or not isinstance(nonce, str)
            or not 0 < len(nonce) <= MAX_NONCE_LENGTH
        ):
            raise SignatureRejected("bad_parameters")
        if abs(now - created) > MAX_CLOCK_SKEW:
            raise SignatureRejected("created_out_of_window")
        expires = self.params.get("expires")
        if expires is not None and (not isinstance(expires, int) or expires <= now):
            raise SignatureRejected("expired")

    def base(self, message: Message) -> bytes:
        """The signature base (RFC 9421 section 2.5)."""
        lines = [f'"{name}": {message.component(name)}' for name in self.components]
        params_line = self._canonical_text or http_sf.ser([self._inner_list])
        lines.append(f'"@signature-params": {params_line}')
        text = "\n".join(lines)
        if not text.isascii() or "\r" in text:
            raise SignatureRejected("unsupported_component")
        return text.encode("ascii")

    def mac(self, message: Message, key: bytes) -> bytes:
        """The hmac-sha256 of the signature base under ``key``."""
        return hmac.digest(key, self.base(message), "sha256")

    def verify(self, message: Message, key: bytes) -> None:
        if not hmac.compare_digest(self.mac(message, key), self.signature):
            raise SignatureRejected("bad_signature")


# The canonical serialisation (RFC 9651) of one signature: what signers send in practice.
# A header in exactly this form parses the same by these patterns as by http_sf, and its
# inner list serialises back to the same text, so it takes the fast path; any other form
# (several signatures, escapes, other value types, whitespace) goes through http_sf.
_SF_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_SF_INTEGER = r"-?(?:0|[1-9][0-9]{0,14})"
_SF_KEY = r"[a-z*][a-z0-9_.*-]*"
_CANONICAL_INPUT = re.compile(
    rf"({_SF_KEY})=(\(((?:{_SF_STRING})(?: {_SF_STRING})*)?\)((?:;{_SF_KEY}=(?:{_SF_STRING}|{_SF_INTEGER}))*))"
)
_CANONICAL_BYTES = re.compile(rf"({_SF_KEY})=:([A-Za-z0-9+/]*={{0,2}}):")
_PARAM = re.compile(rf";({_SF_KEY})=({_SF_STRING}|{_SF_INTEGER})")
# Within that form, what :func:`sign` sends by default (the gateway's SDK): the required
# components and the four parameters in its order, read without the general loop.
_SDK_INPUT = re.compile(
    rf'({_SF_KEY})=(\("@method" "@path" "@query" "content-digest"\)'
    rf';created=({_SF_INTEGER});keyid=({_SF_STRING});nonce=({_SF_STRING});alg="{ALGORITHM}")'
)


def _parse_canonical(signature_input: str, signature: str) -> list[ParsedSignature] | None:
    values = _CANONICAL_BYTES.fullmatch(signature)
    if values is None:
        return None
    sdk = _SDK_INPUT.fullmatch(signature_input)
    if sdk is not None:
        label, inner_list, created, keyid, nonce = sdk.groups()
        raw = _signature_bytes(values, label)
        if raw is None:
            return None
        given = {"created": int(created), "keyid": keyid[1:-1], "nonce": nonce[1:-1], "alg": ALGORITHM}
        return [ParsedSignature(label, REQUIRED_COMPONENTS, given, raw, None, inner_list)]
    inputs = _CANONICAL_INPUT.fullmatch(signature_input)
    if inputs is None:
        return None
    label, inner_list, components, params_text = inputs.groups()
    # A string holds no '"', so '" "' only ever separates two of them.
    names = components[1:-1].split('" "') if components else []
    params: dict[str, Any] = {}
    for key, value in _PARAM.findall(params_text):
        if key in params:
            return None  # let http_sf decide what a repeated parameter means
        params[key] = value[1:-1] if value[0] == '"' else int(value)
    raw = _signature_bytes(values, label)
    if raw is None:
        return None
    _check_components(names, params)
    return [ParsedSignature(label, tuple(names), params, raw, None, inner_list)]


def _signature_bytes(values: re.Match[str], label: str) -> bytes | None:
    """The bytes of a canonical ``Signature`` if it carries ``label``, else None."""
    if values.group(1) != label:
        return None
    try:
        # The pattern has checked the alphabet, which b64decode(validate=True) would check again.
        return binascii.a2b_base64(values.group(2), strict_mode=True)
    except binascii.Error:
        return None


def _check_components(names: list[str], params: dict[str, Any]) -> None:
    joined = " ".join(names)
    if joined != joined.lower() or len(set(names)) != len(names) or not isinstance(params.get("keyid"), str):
        raise SignatureRejected("unparsable")


def parse(signature_input: str | None, signature: str | None) -> list[ParsedSignature]:
    """Every signature in the two fields, in ``Signature-Input`` order.

    Each argument is the field's whole value: its field lines joined with ``", "``. A label
    given twice (on one line or on two) is refused as ``unparsable``.
    """
    if not signature_input or not signature:
        raise SignatureRejected("missing_headers")
    if len(signature_input) > MAX_HEADER_LENGTH or len(signature) > MAX_HEADER_LENGTH:
        raise SignatureRejected("unparsable")
    return _parse_canonical(signature_input, signature) or _parse_structured(signature_input, signature)


def _parse_structured(signature_input: str, signature: str) -> list[ParsedSignature]:
    try:
        # http_sf's return type is the union of every structure; the tltype fixes it to a dict.
        inputs: Any = http_sf.parse(signature_input.encode(), tltype="dictionary", on_duplicate_key=_reject_duplicate)
        values: Any = http_sf.parse(signature.encode(), tltype="dictionary", on_duplicate_key=_reject_duplicate)
    except (http_sf.StructuredFieldError, UnicodeError, ValueError):
        raise SignatureRejected("unparsable") from None
    assert isinstance(inputs, dict)
    assert isinstance(values, dict)
    parsed = []
    for label, member in inputs.items():
        items, params = member
        value = values.get(label)
        if not isinstance(items, list) or value is None or not isinstance(value[0], bytes):
            raise SignatureRejected("unparsable")
        names = []
        for name, component_params in items:
            if not isinstance(name, str):
                raise SignatureRejected("unparsable")
            if component_params:  # sf, key, bs, req, tr: not part of this profile
                raise SignatureRejected("unsupported_component")
            names.append(name)
        _check_components(names, params)
        parsed.append(ParsedSignature(label, tuple(names), dict(params), value[0], member, None))
    if not parsed:
        raise SignatureRejected("missing_headers")
    return parsed


def _reject_duplicate(key: str, context: str) -> None:
    raise ValueError(f"duplicate {context} key {key!r}")


# -- Content-Digest (RFC 9530) ----------------------------------------------------------------


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


_CANONICAL_SHA256 = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")


def check_content_digest(header: str | None, body: bytes) -> None:
    """The ``sha-256`` member of ``Content-Digest`` must be the digest of ``body``."""
    if not header or len(header) > MAX_HEADER_LENGTH:
        raise SignatureRejected("bad_digest")
    canonical = _CANONICAL_SHA256.fullmatch(header)
    if canonical is not None:
        expected = binascii.a2b_base64(canonical.group(1))
        if not hmac.compare_digest(expected, hashlib.sha256(body).digest()):
            raise SignatureRejected("digest_mismatch")
        return
    try:
        members: Any = http_sf.parse(header.encode(), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeError, ValueError):
        raise SignatureRejected("bad_digest") from None
    assert isinstance(members, dict)
    member = members.get("sha-256")
    if member is None or not isinstance(member[0], bytes):
        raise SignatureRejected("bad_digest")
    if not hmac.compare_digest(member[0], hashlib.sha256(body).digest()):
        raise SignatureRejected("digest_mismatch")


# -- signing (the client side) ------------------------------------------------------------------


def sign(
    message: Message,
    *,
    key: bytes,
    keyid: str,
    created: int,
    nonce: str,
    components: Iterable[str] = REQUIRED_COMPONENTS,
    label: str = "sig1",
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` headers for ``message``.

    ``message.headers`` must already hold every covered header field,
    ``content-digest`` included (see :func:`content_digest`).
    """
    params: dict[str, Any] = {"created": created, "keyid": keyid, "nonce": nonce, "alg": ALGORITHM}
    inner_list: Any = ([(name, {}) for name in components], params)
    unsigned = ParsedSignature(label, tuple(components), params, b"", inner_list, None)
    signature = unsigned.mac(message, key)
    return {
        "Signature-Input": http_sf.ser({label: inner_list}),
        "Signature": http_sf.ser({label: (signature, {})}),
    }
