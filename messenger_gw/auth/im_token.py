"""imToken authentication: a client on the official OpenIM SDK presents ``token: <imToken>``.

The token is verified here, never by asking OpenIM:

1. an HS256 JWT under OpenIM's secret (``OPENIM_SECRET``) with OpenIM's claims (``UserID``,
   ``PlatformID`` 1-9, ``exp``), not expired;
2. its user not banned;
3. the very token stored in ``im:token:<userID>`` for its platform: a token a newer mint replaced
   (which OpenIM kicked), or that a logout, force logout or ban removed, is refused.

Step 1 is remembered by the token's SHA-256 (never the token itself), bounded in number, until
``CACHE_TTL`` or the token's expiry: what it remembers cannot change. Steps 2 and 3 read the
caches of :class:`~messenger_gw.moderation.Bans` and :class:`~messenger_gw.openim.ImTokens`, which
every replica drops through the invalidation channel the moment a user is banned or a token
replaced or removed: the warm path reads no store, and a revoked token is refused at once.

:meth:`ImTokenVerifier.verify` needs no HTTP request (the WebSocket guard verifies its upgrade with
it): a token string in, a :class:`Caller` out, or :class:`ImTokenRejected` with a reason from
:data:`IM_TOKEN_REASONS` (a bounded metric label set) and the errCode OpenIM gives such a token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType

import jwt
from aiohttp import web
from jwt.warnings import InsecureKeyLengthWarning

from messenger_gw.moderation import Bans
from messenger_gw.openim import ImTokens
from messenger_gw.settings import Secret
from messenger_gw.store import TTLCache

from .caller import Caller
from .identity import valid_user_id

CACHE_TTL = 300.0
# OpenIM's tokens are about 200 characters; anything far longer is not one, and is not hashed or parsed.
MAX_TOKEN_LENGTH = 2048

IM_TOKEN_REASONS: Mapping[str, int] = MappingProxyType(
    {
        # reason (the metric label) -> the errCode OpenIM v3.8.3 gives such a token (contract section 1.5)
        "im_token_malformed": 1503,  # not a JWT, or not OpenIM's claims
        "im_token_bad_signature": 1505,  # not signed with OpenIM's secret, or not HS256
        "im_token_expired": 1501,
        "im_token_platform": 1502,  # a PlatformID outside the client platforms 1-9 (an admin token is 10)
        "im_token_banned": 1506,  # its user is banned (and was forced out of OpenIM)
        "im_token_revoked": 1507,  # none stored for its user and platform: logout, force logout, ban
        "im_token_replaced": 1506,  # another token is stored: a newer mint kicked this one
    }
)


class ImTokenRejected(Exception):
    """An imToken the gateway does not accept; ``reason`` is one of :data:`IM_TOKEN_REASONS`.

    ``user_id`` is the token's user when its signature held (so the reason is about that user), else None.
    """

    def __init__(self, reason: str, user_id: str | None = None) -> None:
        assert reason in IM_TOKEN_REASONS, reason
        super().__init__(reason)
        self.reason = reason
        self.user_id = user_id

    @property
    def openim_code(self) -> int:
        """What OpenIM answers for such a token, for a client that reacts to OpenIM's codes (the SDK)."""
        return IM_TOKEN_REASONS[self.reason]


@dataclasses.dataclass(frozen=True, slots=True)
class _Verified:
    user_id: str
    platform_id: int
    expires_at: float


class ImTokenVerifier:
    def __init__(
        self,
        secret: Secret,
        im_tokens: ImTokens,
        bans: Bans,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 100_000,
    ) -> None:
        self._secret = secret
        self._im_tokens = im_tokens
        self._bans = bans
        self._clock = clock
        self._verified: TTLCache[bytes, _Verified] = TTLCache(max_size=cache_size, ttl=CACHE_TTL)

    async def verify(self, token: str) -> Caller:
        """The caller ``token`` stands for, or :class:`ImTokenRejected`."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise ImTokenRejected("im_token_malformed")
        raw = token.encode()
        digest = hashlib.sha256(raw).digest()
        now = self._clock()
        verified = self._verified.get(digest)
        if verified is None:
            verified = self._decode(raw)
            if verified.expires_at > now:
                self._verified.put(digest, verified, ttl=verified.expires_at - now)
        user_id = verified.user_id
        if verified.expires_at <= now:
            raise ImTokenRejected("im_token_expired", user_id)
        # Before the stored token: a banned user's tokens are gone, and "banned" says more than "revoked".
        if await self._bans.is_banned(user_id):
            raise ImTokenRejected("im_token_banned", user_id)
        stored = await self._im_tokens.current(user_id, verified.platform_id)
        if stored is None:
            raise ImTokenRejected("im_token_revoked", user_id)
        if not hmac.compare_digest(stored.token.encode(), raw):
            raise ImTokenRejected("im_token_replaced", user_id)
        return Caller(user_id, verified.platform_id, "im_token", im_token=token)

    def _decode(self, raw: bytes) -> _Verified:
        try:
            with warnings.catch_warnings():
                # OpenIM signs with whatever its share.secret holds, 9 bytes by default: PyJWT's
                # advice on key length is not the gateway's to follow.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = jwt.decode(
                    raw,
                    self._secret.reveal(),
                    algorithms=["HS256"],
                    # Expiry is checked by the gateway's clock, below. OpenIM sets no nbf, and an iat
                    # 5 s early: a clock a little behind OpenIM's must not refuse a fresh token.
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise ImTokenRejected("im_token_bad_signature") from None
        except jwt.PyJWTError:
            raise ImTokenRejected("im_token_malformed") from None
        user_id, platform_id, exp = claims.get("UserID"), claims.get("PlatformID"), claims.get("exp")
        # Go's types: a bool is no number, and a float is no PlatformID.
        if not isinstance(user_id, str) or not valid_user_id(user_id):
            raise ImTokenRejected("im_token_malformed")
        if type(platform_id) is not int or not (type(exp) is int or type(exp) is float):
            raise ImTokenRejected("im_token_malformed")
        if not 1 <= platform_id <= 9:
            raise ImTokenRejected("im_token_platform")
        return _Verified(user_id, platform_id, float(exp))


IM_TOKEN_VERIFIER: web.AppKey[ImTokenVerifier] = web.AppKey("im_token_verifier", ImTokenVerifier)
