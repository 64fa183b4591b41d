"""Client authentication: the X25519 handshake, RFC 9421 signatures, sessions, JWT bearers, imTokens (also for
the WebSocket guard: ``ImTokenVerifier``), the authenticator, identity verification at login, OpenIM provisioning
and the /auth routes.
"""

from .authenticator import AUTHENTICATOR, Authenticator, bearer_token, logged_in_caller
from .caller import Caller, Unauthenticated
from .handshake import b64url_decode, b64url_encode, decode_public_key, derive_session_key, public_key_text
from .identity import IDENTITY_VERIFIER, DevOTPVerifier, IdentityVerifier, UserServiceVerifier, valid_user_id
from .im_token import IM_TOKEN_REASONS, IM_TOKEN_VERIFIER, ImTokenRejected, ImTokenVerifier
from .jwt_bearer import JWTRejected, JWTVerifier
from .provisioning import PROVISIONER, Provisioner
from .sessions import SESSIONS, Sessions

__all__ = [
    "AUTHENTICATOR",
    "IDENTITY_VERIFIER",
    "IM_TOKEN_REASONS",
    "IM_TOKEN_VERIFIER",
    "PROVISIONER",
    "SESSIONS",
    "Authenticator",
    "Caller",
    "DevOTPVerifier",
    "IdentityVerifier",
    "ImTokenRejected",
    "ImTokenVerifier",
    "JWTRejected",
    "JWTVerifier",
    "Provisioner",
    "Sessions",
    "Unauthenticated",
    "UserServiceVerifier",
    "b64url_decode",
    "b64url_encode",
    "bearer_token",
    "decode_public_key",
    "derive_session_key",
    "logged_in_caller",
    "public_key_text",
    "valid_user_id",
]

from .routes import HANDSHAKE_RATE_LIMIT, add_routes

__all__ += ["HANDSHAKE_RATE_LIMIT", "add_routes"]
