"""Who may call ``/admin/*``: an admin API key, or a JWT that carries the admin role.

Keys are configured as SHA-256 digests with a name each (``ADMIN_API_KEYS``);
a presented key is hashed and compared with every configured digest in
constant time. The admin API never accepts the client signature scheme, and
client routes never accept admin keys (a key is not a JWT, so the client
authenticator refuses it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from aiohttp import web

from messenger_gw import errors
from messenger_gw.auth import JWTRejected, JWTVerifier, Unauthenticated, bearer_token
from messenger_gw.metrics import Metrics
from messenger_gw.settings import AdminSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Admin:
    actor: str  # "key:<name>" or "jwt:<sub>": what the audit records


class NotAnAdmin(errors.Forbidden):
    pass


class AdminAuthenticator:
    def __init__(self, settings: AdminSettings, jwt_verifier: JWTVerifier | None, *, metrics: Metrics) -> None:
        self._settings = settings
        self._jwt = jwt_verifier
        self._metrics = metrics

    def authenticate(self, request: web.Request) -> Admin:
        try:
            return self._authenticate(request)
        except (Unauthenticated, NotAnAdmin) as exc:
            reason = exc.reason if isinstance(exc, Unauthenticated) else "admin_not_admin"
            self._metrics.auth_failures.labels(reason).inc()
            raise

    def _authenticate(self, request: web.Request) -> Admin:
        headers = request.headers
        if "Signature-Input" in headers or "Signature" in headers:
            raise Unauthenticated("admin_client_signature")
        credential = bearer_token(headers)
        if not credential:
            raise Unauthenticated("admin_missing_credentials")
        digest = hashlib.sha256(credential.encode()).digest()
        named = None
        for key in self._settings.api_keys:  # every key compared: the time says nothing about which matched
            if hmac.compare_digest(key.sha256, digest):
                named = key.name
        if named is not None:
            return Admin(f"key:{named}")
        if self._jwt is not None and credential.count(".") == 2:
            try:
                claims = self._jwt.claims(credential)
            except JWTRejected as exc:
                raise Unauthenticated(f"admin_{exc.reason}") from None
            roles = claims.get(self._settings.jwt_role_claim)
            if roles == self._settings.jwt_role or (isinstance(roles, list) and self._settings.jwt_role in roles):
                return Admin(f"jwt:{claims['sub']}")
            raise NotAnAdmin("This token does not carry the admin role")
        raise Unauthenticated("admin_bad_key")


ADMIN_AUTHENTICATOR: web.AppKey[AdminAuthenticator] = web.AppKey("admin_authenticator", AdminAuthenticator)
