"""Client authentication through the real app: handshake, signed requests, JWT, logout."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from messenger_gw import keys
from messenger_gw.auth import b64url_encode, public_key_text
from messenger_gw.metrics import METRICS
from messenger_gw.sdk import GatewayClient, SessionState
from tests.conftest import Gateway, RedisProcess, StartGateway, sample

UNAUTHENTICATED = {"errCode": 40100, "errMsg": "Authentication failed", "errDlt": ""}


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


async def send(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, data=body or None, headers=headers or {}) as response,
    ):
        raw = await response.read()
        return Reply(response.status, (await response.json()) if raw else None, dict(response.headers))


def failures(gateway: Gateway, reason: str) -> float:
    return sample(gateway.app[METRICS], "messenger_gw_auth_failures_total", reason=reason)


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[GatewayClient]:
    async with gateway.client() as client:
        await client.handshake(platform_id=5)
        yield client


# -- handshake ---------------------------------------------------------------------------


async def test_handshake_answers_a_session_both_sides_can_sign_with(gateway: Gateway) -> None:
    async with gateway.client() as client:
        state = await client.handshake(platform_id=3)
        assert len(state.session_id) == 22
        assert state.expires_at > time.time() + 3600
        reply = await client.request("GET", "/auth/session")
    assert reply.status == 200
    assert reply.json() == {
        "userID": None,
        "platformID": 3,
        "via": "signature",
        "sessionId": state.session_id,
        "expiresAt": state.expires_at,
    }


async def test_handshake_accepts_a_padded_key(gateway: Gateway) -> None:
    padded = base64.urlsafe_b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    reply = await send(
        gateway.url, "POST", "/auth/handshake", f'{{"clientPublicKey":"{padded}","platformID":1}}'.encode()
    )
    assert reply.status == 200
    assert "=" not in reply.body["serverPublicKey"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", 40001),
        (b"[1]", 40001),
        (b'{"platformID": 1}', 40010),
        (b'{"clientPublicKey": 5, "platformID": 1}', 40010),
        (b'{"clientPublicKey": "***", "platformID": 1}', 40010),
        (b'{"clientPublicKey": "' + b64url_encode(b"\x09" * 31).encode() + b'", "platformID": 1}', 40010),
        (b'{"clientPublicKey": "' + b64url_encode(bytes(32)).encode() + b'", "platformID": 1}', 40011),
        (b'{"clientPublicKey": "' + b64url_encode(b"\x01" + bytes(31)).encode() + b'", "platformID": 1}', 40011),
    ],
)
async def test_malformed_handshakes_get_400_with_a_stable_code(gateway: Gateway, body: bytes, code: int) -> None:
    reply = await send(gateway.url, "POST", "/auth/handshake", body)
    assert reply.status == 400
    assert reply.body["errCode"] == code


@pytest.mark.parametrize("platform", ["0", "10", '"5"', "true", "null", "5.5"])
async def test_unknown_platforms_get_400_40012(gateway: Gateway, platform: str) -> None:
    key = public_key_text(X25519PrivateKey.generate())
    reply = await send(
        gateway.url, "POST", "/auth/handshake", f'{{"clientPublicKey":"{key}","platformID":{platform}}}'.encode()
    )
    assert reply.status == 400
    assert reply.body["errCode"] == 40012


async def handshakes(gateway: Gateway, count: int, forwarded_for: str | None = None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    statuses = []
    for _ in range(count):
        body = f'{{"clientPublicKey":"{public_key_text(X25519PrivateKey.generate())}","platformID":1}}'
        statuses.append((await send(gateway.url, "POST", "/auth/handshake", body.encode(), headers)).status)
    return statuses


async def test_handshakes_are_rate_limited_per_client_ip(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(HANDSHAKE_RATE_LIMIT="3")
    assert await handshakes(gateway, 3, forwarded_for="203.0.113.1") == [200, 200, 200]
    # An untrusted peer's X-Forwarded-For is ignored: still the same client.
    assert await handshakes(gateway, 1, forwarded_for="203.0.113.2") == [429]
    body = f'{{"clientPublicKey":"{public_key_text(X25519PrivateKey.generate())}","platformID":1}}'.encode()
    reply = await send(gateway.url, "POST", "/auth/handshake", body)
    assert reply.status == 429
    assert reply.body["errCode"] == 42900
    assert 1 <= int(reply.headers["Retry-After"]) <= 60


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(HANDSHAKE_RATE_LIMIT="2", TRUSTED_PROXIES="127.0.0.1/32")
    assert await handshakes(gateway, 3, forwarded_for="203.0.113.1") == [200, 200, 429]
    assert await handshakes(gateway, 2, forwarded_for="203.0.113.2, 127.0.0.1") == [200, 200]


# -- signed requests: every rejection ----------------------------------------------------------


async def signed_send(
    client: GatewayClient,
    method: str,
    path: str,
    body: bytes = b"",
    tamper: Callable[[dict[str, str]], Any] | None = None,
) -> Reply:
    headers = client.signed_headers(method, path, body)
    if tamper is not None:
        tamper(headers)
    return await send(client.base_url, method, path, body, headers)


async def assert_rejected(gateway: Gateway, reply_coro: Awaitable[Reply], reason: str) -> None:
    before = failures(gateway, reason)
    reply = await reply_coro
    assert reply.status == 401
    assert reply.body == UNAUTHENTICATED, "the reason never reaches the client"
    assert failures(gateway, reason) == before + 1, f"expected reason {reason}"


async def test_a_signed_request_passes(client: GatewayClient) -> None:
    assert (await signed_send(client, "GET", "/auth/session")).status == 200


async def test_no_credentials_at_all(gateway: Gateway) -> None:
    await assert_rejected(gateway, send(gateway.url, "GET", "/auth/session"), "missing_credentials")


@pytest.mark.parametrize("dropped", ["Signature-Input", "Signature"])
async def test_missing_signature_headers(gateway: Gateway, client: GatewayClient, dropped: str) -> None:
    await assert_rejected(
        gateway, signed_send(client, "GET", "/auth/session", tamper=lambda h: h.pop(dropped)), "missing_headers"
    )


async def test_unparsable_signature_headers(gateway: Gateway, client: GatewayClient) -> None:
    def garble(headers: dict[str, str]) -> None:
        headers["Signature-Input"] = "sig1=(((("

    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=garble), "unparsable")


async def test_a_covered_component_list_missing_a_required_component(gateway: Gateway, client: GatewayClient) -> None:
    def drop_query(headers: dict[str, str]) -> None:
        headers["Signature-Input"] = headers["Signature-Input"].replace(' "@query"', "")

    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=drop_query), "missing_component")


async def test_an_unknown_session(gateway: Gateway) -> None:
    stranger = GatewayClient(gateway.url, state=SessionState("A" * 22, bytes(32), 5, 0))
    async with stranger:
        await assert_rejected(gateway, signed_send(stranger, "GET", "/auth/session"), "unknown_session")


async def test_an_expired_session(gateway: Gateway, client: GatewayClient, clean_redis: RedisProcess) -> None:
    assert client.state is not None
    with clean_redis.client() as redis:
        redis.pexpire(keys.session(client.state.session_id), 1)
    await asyncio.sleep(0.05)
    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session"), "unknown_session")


# The client writes created in whole seconds from a real clock, so a skew of 301 could land on the
# edge of the window; the exact edge is tested with a fixed clock in test_signatures.
@pytest.mark.parametrize("skew", [-302, 302])
async def test_created_outside_300_seconds(gateway: Gateway, client: GatewayClient, skew: int) -> None:
    assert client.state is not None
    skewed = GatewayClient(gateway.url, state=client.state, clock=lambda: time.time() + skew)
    async with skewed:
        await assert_rejected(gateway, signed_send(skewed, "GET", "/auth/session"), "created_out_of_window")


async def test_a_replayed_nonce(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("GET", "/auth/session", b"")
    assert (await send(gateway.url, "GET", "/auth/session", b"", headers)).status == 200
    await assert_rejected(gateway, send(gateway.url, "GET", "/auth/session", b"", headers), "replayed_nonce")


async def test_a_body_that_does_not_match_its_digest(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("POST", "/auth/login", b'{"credentials":{}}')
    await assert_rejected(
        gateway, send(gateway.url, "POST", "/auth/login", b'{"credentials":{"x":1}}', headers), "digest_mismatch"
    )


async def test_a_wrong_signature(gateway: Gateway, client: GatewayClient) -> None:
    def flip(headers: dict[str, str]) -> None:
        headers["Signature"] = "sig1=:" + base64.b64encode(bytes(32)).decode() + ":"

    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=flip), "bad_signature")


async def test_a_rejected_forgery_does_not_burn_the_nonce(client: GatewayClient) -> None:
    headers = client.signed_headers("GET", "/auth/session", b"")
    forged = dict(headers, Signature="sig1=:" + base64.b64encode(bytes(32)).decode() + ":")
    assert (await send(client.base_url, "GET", "/auth/session", b"", forged)).status == 401
    assert (await send(client.base_url, "GET", "/auth/session", b"", headers)).status == 200


# A request signed for one thing and sent as another: each covered component, tampered.


def param(name: str, value: str) -> Callable[[dict[str, str]], None]:
    def replace(headers: dict[str, str]) -> None:
        before = headers["Signature-Input"]
        start = before.index(f";{name}=") + len(name) + 2
        end = before.find(";", start)
        headers["Signature-Input"] = before[:start] + value + (before[end:] if end != -1 else "")

    return replace


async def test_tampered_method(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("PUT", "/auth/login", b"{}")
    await assert_rejected(gateway, send(gateway.url, "POST", "/auth/login", b"{}", headers), "bad_signature")


async def test_tampered_path(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("POST", "/auth/logout", b"{}")
    await assert_rejected(gateway, send(gateway.url, "POST", "/auth/login", b"{}", headers), "bad_signature")


async def test_tampered_query(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("GET", "/auth/session?page=1", b"")
    await assert_rejected(gateway, send(gateway.url, "GET", "/auth/session?page=2", b"", headers), "bad_signature")


async def test_tampered_body(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("POST", "/auth/login", b'{"credentials":{"code":"1"}}')
    reply = send(gateway.url, "POST", "/auth/login", b'{"credentials":{"code":"2"}}', headers)
    await assert_rejected(gateway, reply, "digest_mismatch")


async def test_tampered_digest_header(gateway: Gateway, client: GatewayClient) -> None:
    from messenger_gw.auth.signatures import content_digest

    body = b'{"credentials":{"code":"2"}}'
    headers = client.signed_headers("POST", "/auth/login", b'{"credentials":{"code":"1"}}')
    headers["Content-Digest"] = content_digest(body)
    await assert_rejected(gateway, send(gateway.url, "POST", "/auth/login", body, headers), "bad_signature")


async def test_tampered_created(gateway: Gateway, client: GatewayClient) -> None:
    tamper = param("created", str(int(time.time()) - 10))
    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=tamper), "bad_signature")


async def test_tampered_nonce(gateway: Gateway, client: GatewayClient) -> None:
    tamper = param("nonce", '"another-nonce"')
    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=tamper), "bad_signature")


async def test_tampered_keyid(gateway: Gateway, client: GatewayClient) -> None:
    async with gateway.client() as other:
        other_state = await other.handshake(platform_id=5)
    tamper = param("keyid", f'"{other_state.session_id}"')
    await assert_rejected(gateway, signed_send(client, "GET", "/auth/session", tamper=tamper), "bad_signature")
    await assert_rejected(
        gateway,
        signed_send(client, "GET", "/auth/session", tamper=param("keyid", '"' + "B" * 22 + '"')),
        "unknown_session",
    )


async def test_the_first_signature_with_a_known_keyid_is_verified(gateway: Gateway, client: GatewayClient) -> None:
    def prepend_unknown(headers: dict[str, str]) -> None:
        headers["Signature-Input"] = 'zzz=("@method");keyid="' + "C" * 22 + '", ' + headers["Signature-Input"]
        headers["Signature"] = "zzz=:AAAA:, " + headers["Signature"]

    assert (await signed_send(client, "GET", "/auth/session", tamper=prepend_unknown)).status == 200


# -- interoperability: an independent RFC 9421 implementation signs, the gateway accepts ---------


@dataclasses.dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]


@pytest.mark.parametrize(
    "covered",
    [
        ("@method", "@path", "@query", "content-digest"),
        ("@method", "@authority", "@scheme", "@target-uri", "@path", "@query", "content-digest"),
    ],
)
async def test_the_gateway_accepts_requests_signed_by_an_independent_implementation(
    gateway: Gateway, client: GatewayClient, covered: tuple[str, ...]
) -> None:
    assert client.state is not None
    key = client.state.key

    class Keys(HTTPSignatureKeyResolver):
        def resolve_private_key(self, key_id: str) -> bytes:
            return key

        def resolve_public_key(self, key_id: str) -> bytes:
            return key

    body = b'{"credentials":{"userID":"interop","code":"246810"}}'
    request = _Request("POST", gateway.url + "/auth/login", {"Content-Type": "application/json"})
    HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=Keys()).sign(
        request,
        key_id=client.state.session_id,
        created=datetime.datetime.now(datetime.UTC),
        nonce="independent-1",
        covered_component_ids=covered,
        body=body,
    )
    reply = await send(gateway.url, "POST", "/auth/login", body, request.headers)
    assert reply.status == 200, reply.body
    assert reply.body["userID"] == "interop"


# -- JWT bearer ---------------------------------------------------------------------------------

HS_SECRET = "a-jwt-secret-of-at-least-32-bytes!!"


def hs256(claims: dict[str, Any], secret: str = HS_SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "jwt_user", "exp": int(time.time()) + 600} | extra


async def bearer(gateway: Gateway, token: str, platform: str | None = "2") -> Reply:
    headers = {"Authorization": f"Bearer {token}"}
    if platform is not None:
        headers["X-Platform-ID"] = platform
    return await send(gateway.url, "GET", "/auth/session", headers=headers)


@pytest.fixture
async def jwt_gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway(JWT_HS256_SECRET=HS_SECRET, JWT_ISSUER="app", JWT_AUDIENCE="messenger")


async def test_an_hs256_jwt_authenticates(jwt_gateway: Gateway) -> None:
    reply = await bearer(jwt_gateway, hs256(claims(iss="app", aud="messenger")))
    assert reply.status == 200
    assert reply.body == {"userID": "jwt_user", "platformID": 2, "via": "jwt"}


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        ({"sub": "jwt_user", "iss": "app", "aud": "messenger"}, "jwt_invalid"),  # no exp
        ({"exp": int(time.time()) + 600, "iss": "app", "aud": "messenger"}, "jwt_invalid"),  # no sub
        ({"sub": "jwt_user", "exp": int(time.time()) - 60, "iss": "app", "aud": "messenger"}, "jwt_expired"),
        ({"sub": "jwt_user", "exp": int(time.time()) + 600, "iss": "evil", "aud": "messenger"}, "jwt_invalid"),
        ({"sub": "jwt_user", "exp": int(time.time()) + 600, "iss": "app", "aud": "other"}, "jwt_invalid"),
        ({"sub": "bad user", "exp": int(time.time()) + 600, "iss": "app", "aud": "messenger"}, "jwt_invalid"),
    ],
)
async def test_jwts_that_break_a_rule_are_refused(
    jwt_gateway: Gateway, token_claims: dict[str, Any], reason: str
) -> None:
    await assert_rejected(jwt_gateway, bearer(jwt_gateway, hs256(token_claims)), reason)


async def test_expiry_has_a_small_leeway(jwt_gateway: Gateway) -> None:
    token = hs256(claims(iss="app", aud="messenger", exp=int(time.time()) - 5))
    assert (await bearer(jwt_gateway, token)).status == 200


async def test_a_jwt_signed_with_another_secret_is_refused(jwt_gateway: Gateway) -> None:
    token = hs256(claims(iss="app", aud="messenger"), secret="another-secret-also-32-bytes-long!!")
    await assert_rejected(jwt_gateway, bearer(jwt_gateway, token), "jwt_invalid")


async def test_alg_none_is_refused(jwt_gateway: Gateway) -> None:
    unsigned = jwt.encode(claims(iss="app", aud="messenger"), None, algorithm="none")  # type: ignore[arg-type]
    await assert_rejected(jwt_gateway, bearer(jwt_gateway, unsigned), "jwt_algorithm")


async def test_a_jwt_without_a_platform_is_refused(jwt_gateway: Gateway) -> None:
    token = hs256(claims(iss="app", aud="messenger"))
    await assert_rejected(jwt_gateway, bearer(jwt_gateway, token, platform=None), "jwt_no_platform")
    await assert_rejected(jwt_gateway, bearer(jwt_gateway, token, platform="10"), "jwt_no_platform")


async def test_jwt_is_refused_when_not_configured(gateway: Gateway) -> None:
    await assert_rejected(gateway, bearer(gateway, hs256(claims())), "jwt_disabled")


@pytest.fixture
def key_files(tmp_path: Any) -> tuple[str, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwt-public.pem"
    path.write_bytes(
        b"".join(
            k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            for k in (rsa_key, ec_key)
        )
    )
    return str(path), rsa_key, ec_key


async def test_rs256_and_es256_jwts_verify_with_configured_public_keys(
    start_gateway: StartGateway, key_files: tuple[str, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
) -> None:
    path, rsa_key, ec_key = key_files
    gateway = await start_gateway(JWT_PUBLIC_KEY_FILES=path, JWT_PLATFORM_CLAIM="pid")
    for algorithm, key in (("RS256", rsa_key), ("ES256", ec_key)):
        token = jwt.encode(claims(pid=7), key, algorithm=algorithm)
        reply = await bearer(gateway, token, platform=None)
        assert reply.status == 200, algorithm
        assert reply.body["platformID"] == 7


async def test_algorithm_confusion_is_refused(
    start_gateway: StartGateway, key_files: tuple[str, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
) -> None:
    """An HS256 token 'signed' with the RSA public key as the HMAC secret must not verify."""
    path, rsa_key, _ = key_files
    gateway = await start_gateway(JWT_PUBLIC_KEY_FILES=path)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url_encode(orjson.dumps(claims()))
    signing_input = f"{header}.{payload}".encode()
    forged = f"{header}.{payload}." + b64url_encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    await assert_rejected(gateway, bearer(gateway, forged), "jwt_algorithm")


# -- logout ---------------------------------------------------------------------------------------


async def test_logout_revokes_the_session(gateway: Gateway, client: GatewayClient) -> None:
    headers = client.signed_headers("GET", "/auth/session", b"")
    await client.logout()
    await assert_rejected(gateway, send(gateway.url, "GET", "/auth/session", b"", headers), "unknown_session")


async def test_logout_on_one_replica_stops_the_session_on_another(start_gateway: StartGateway) -> None:
    first, second = await start_gateway(), await start_gateway()
    async with first.client() as on_first:
        state = await on_first.handshake(platform_id=5)
        assert (await on_first.request("GET", "/auth/session")).status == 200  # cached on the first replica
        async with GatewayClient(second.url, state=state) as on_second:
            await on_second.logout()
        async with asyncio.timeout(1):
            while (await on_first.request("GET", "/auth/session")).status != 401:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
