"""The session-key agreement shared by the gateway and its clients.

X25519 between the client's and the server's key pairs, then HKDF-SHA256
with salt = the sessionId (UTF-8) and info = ``messenger-gw/v1/session``,
32 bytes. Keys travel as base64url, accepted with or without padding and
sent without. Everything here comes from ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"messenger-gw/v1/session"
KEY_LENGTH = 32
PUBLIC_KEY_LENGTH = 32

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class InvalidPublicKey(ValueError):
    """The peer's key is not a usable X25519 public key; ``low_order`` tells the two cases apart."""

    def __init__(self, message: str, *, low_order: bool = False) -> None:
        super().__init__(message)
        self.low_order = low_order


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None


def decode_public_key(text: str) -> X25519PublicKey:
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise InvalidPublicKey("clientPublicKey is not base64url") from None
    if len(raw) != PUBLIC_KEY_LENGTH:
        raise InvalidPublicKey(f"clientPublicKey must be {PUBLIC_KEY_LENGTH} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def public_key_text(key: X25519PublicKey | X25519PrivateKey) -> str:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return b64url_encode(public.public_bytes_raw())


def derive_session_key(private: X25519PrivateKey, peer: X25519PublicKey, session_id: str) -> bytes:
    try:
        shared = private.exchange(peer)
    except ValueError:
        # cryptography refuses an all-zero shared secret: the peer sent a low-order point.
        raise InvalidPublicKey("clientPublicKey is a low-order point", low_order=True) from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=session_id.encode(), info=HKDF_INFO).derive(shared)
