"""X25519 + HKDF session-key agreement and key encoding."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messenger_gw.auth.handshake import (
    InvalidPublicKey,
    b64url_decode,
    b64url_encode,
    decode_public_key,
    derive_session_key,
    public_key_text,
)

P = 2**255 - 19
# Curve25519 points of small order: their shared secret is all zeros whatever the private key.
LOW_ORDER_POINTS = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]


def little_endian(value: int) -> bytes:
    return (value % 2**256).to_bytes(32, "little")


def test_both_sides_derive_the_same_key_per_the_design() -> None:
    client, server = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    session_id = "AAAAAAAAAAAAAAAAAAAAAA"
    client_side = derive_session_key(client, decode_public_key(public_key_text(server)), session_id)
    server_side = derive_session_key(server, decode_public_key(public_key_text(client)), session_id)
    assert client_side == server_side
    assert len(client_side) == 32
    expected = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=session_id.encode(), info=b"messenger-gw/v1/session"
    ).derive(client.exchange(server.public_key()))
    assert client_side == expected


def test_the_session_id_is_the_salt() -> None:
    client, server = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    peer = server.public_key()
    assert derive_session_key(client, peer, "a") != derive_session_key(client, peer, "b")


def test_keys_are_sent_unpadded_and_accepted_either_way() -> None:
    key = X25519PrivateKey.generate()
    text = public_key_text(key)
    assert "=" not in text
    assert len(text) == 43
    padded = base64.urlsafe_b64encode(key.public_key().public_bytes_raw()).decode()
    assert padded.endswith("=")
    assert decode_public_key(padded).public_bytes_raw() == decode_public_key(text).public_bytes_raw()


@pytest.mark.parametrize("text", ["not base64!", "AAAA+/==", "A" * 44 + "==="])
def test_text_that_is_not_base64url_is_refused(text: str) -> None:
    with pytest.raises(InvalidPublicKey, match="not base64url") as error:
        decode_public_key(text)
    assert not error.value.low_order


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_key_of_the_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(InvalidPublicKey, match=f"got {length}"):
        decode_public_key(b64url_encode(b"\x01" * length))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_points_are_refused(point: int) -> None:
    peer = decode_public_key(b64url_encode(little_endian(point)))
    with pytest.raises(InvalidPublicKey, match="low-order") as error:
        derive_session_key(X25519PrivateKey.generate(), peer, "s")
    assert error.value.low_order


def test_base64url_round_trips() -> None:
    for data in (b"", b"\xff", b"\xfb\xff", bytes(range(40))):
        assert b64url_decode(b64url_encode(data)) == data
