"""The JWT bearer authenticator: ``Authorization: Bearer <jwt>`` verified locally.

Only HS256 (with the configured secret), RS256 and ES256 (with the
configured public keys) are accepted; the key is chosen by the token's
algorithm from keys of that kind only, so an RSA public key can never be
used as an HMAC secret (algorithm confusion) and ``none`` never verifies.
``exp`` and ``sub`` are required; ``iss``/``aud`` are checked when configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from messenger_gw.settings import JWTSettings


class JWTRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class JWTIdentity:
    user_id: str
    platform_id: int
    jwt_id: str | None


class JWTVerifier:
    def __init__(self, settings: JWTSettings) -> None:
        self._settings = settings
        self._keys: dict[str, Sequence[object]] = {
            "HS256": [settings.hs256_secret.reveal()] if settings.hs256_secret else [],
            "RS256": [k for k in settings.public_keys if isinstance(k, rsa.RSAPublicKey)],
            "ES256": [k for k in settings.public_keys if isinstance(k, ec.EllipticCurvePublicKey)],
        }

    def verify(self, token: str, platform_header: str | None) -> JWTIdentity:
        """A client's identity: the verified claims, ``sub`` as a userID, and a platform."""
        claims = self.claims(token)
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not user_id or not all(c.isalnum() or c == "_" for c in user_id):
            raise JWTRejected("jwt_invalid")
        platform = claims.get(self._settings.platform_claim) if self._settings.platform_claim else platform_header
        platform_id = _platform(platform)
        if platform_id is None:
            raise JWTRejected("jwt_no_platform")
        jti = claims.get("jti")
        return JWTIdentity(user_id, platform_id, jti if isinstance(jti, str) else None)

    def claims(self, token: str) -> dict[str, object]:
        """The verified claims of ``token`` (signature, ``exp``, ``sub``, ``iss``/``aud`` when configured)."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise JWTRejected("jwt_invalid") from None
        if not isinstance(algorithm, str) or not (candidates := self._keys.get(algorithm)):
            raise JWTRejected("jwt_algorithm")
        return self._decode(token, algorithm, candidates)

    def _decode(self, token: str, algorithm: str, candidates: Sequence[object]) -> dict[str, object]:
        s = self._settings
        for key in candidates:
            try:
                claims: dict[str, object] = jwt.decode(
                    token,
                    key,  # type: ignore[arg-type]
                    algorithms=[algorithm],
                    audience=s.audience,
                    issuer=s.issuer,
                    leeway=s.leeway,
                    options={"require": ["exp", "sub"], "verify_aud": s.audience is not None},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue  # another configured key may have signed it
            except jwt.ExpiredSignatureError:
                raise JWTRejected("jwt_expired") from None
            except jwt.PyJWTError:
                raise JWTRejected("jwt_invalid") from None
        raise JWTRejected("jwt_invalid")


def _platform(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9:
        return value
    return None
