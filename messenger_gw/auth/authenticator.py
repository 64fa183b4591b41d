"""Who is calling: a request signed with a session key (RFC 9421), a JWT bearer, or (on /im) an OpenIM SDK
client's imToken.

A rejection is a generic 401 with errCode 40100 for the client (a banned imToken caller's is 403 / 40301, as a
banned caller's is on every path); the precise reason goes to the log and to
``messenger_gw_auth_failures_total{reason}``. A request that presents an imToken is marked for the error
envelope to answer as OpenIM does (HTTP 200), refusals included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from aiohttp import web

from messenger_gw.edge import answer_as_openim
from messenger_gw.metrics import Metrics
from messenger_gw.moderation import BANS, Banned

from . import signatures
from .caller import Caller, Unauthenticated
from .im_token import ImTokenRejected, ImTokenVerifier
from .jwt_bearer import JWTRejected, JWTVerifier
from .sessions import Session, Sessions


class Authenticator:
    def __init__(
        self,
        sessions: Sessions,
        jwt_verifier: JWTVerifier | None,
        im_token_verifier: ImTokenVerifier | None = None,  # None: IM_TOKEN_AUTH is off
        *,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.jwt_verifier = jwt_verifier  # the admin API verifies admin JWTs with the same keys
        self._im_token_verifier = im_token_verifier
        self._metrics = metrics
        self._clock = clock

    async def authenticate(self, request: web.Request, *, allow_im_token: bool = False) -> Caller:
        """The caller: a signature first, then a JWT bearer, then (where allowed) the ``token`` header."""
        try:
            headers = request.headers
            if "Signature-Input" in headers or "Signature" in headers:
                return await self._signed(request)
            token = bearer_token(headers)
            if token is not None:
                if self.jwt_verifier is None:
                    raise Unauthenticated("jwt_disabled")
                return self._bearer(token, headers.get("X-Platform-ID"))
            if allow_im_token and (im_token := headers.get("token")) is not None:
                return await self._im_token(request, im_token)
            raise Unauthenticated("missing_credentials")
        except Unauthenticated as exc:
            self._metrics.auth_failures.labels(exc.reason).inc()
            raise

    def rejected(self, reason: str) -> Unauthenticated:
        """A rejection decided after authentication (e.g. an anonymous session on /im), counted like the others."""
        self._metrics.auth_failures.labels(reason).inc()
        return Unauthenticated(reason)

    async def _signed(self, request: web.Request) -> Caller:
        # A field sent as several lines is read whole (RFC 9651 section 4.2), as a covered header
        # field is: an intermediary may have added its own signature on a line of its own
        # (RFC 9421 section 4.3). The same label on two lines is a duplicate key, refused.
        fields = _JoinedHeaders(request)
        try:
            candidates = signatures.parse(fields.get("signature-input"), fields.get("signature"))
            signature, session = await self._first_known(candidates)
            signature.check(self._clock())
            signature.verify(_message(request, signature.components, fields), session.key)
            signatures.check_content_digest(fields.get("content-digest"), await request.read())
        except signatures.SignatureRejected as exc:
            raise Unauthenticated(exc.reason) from None
        # Last, so a forged request cannot burn a nonce the real client will use.
        if not await self._sessions.claim_nonce(session.id, signature.nonce):
            raise Unauthenticated("replayed_nonce")
        return Caller(session.user_id, session.platform_id, "signature", session=session)

    async def _first_known(
        self, candidates: list[signatures.ParsedSignature]
    ) -> tuple[signatures.ParsedSignature, Session]:
        for candidate in candidates:
            session = await self._sessions.get(candidate.keyid)
            if session is not None:
                return candidate, session
        raise signatures.SignatureRejected("unknown_session")

    async def _im_token(self, request: web.Request, token: str) -> Caller:
        if self._im_token_verifier is None:
            raise Unauthenticated("im_token_disabled")
        answer_as_openim(request)  # from here on, whatever the answer: an SDK reads no errCode off a 401
        try:
            return await self._im_token_verifier.verify(token)
        except ImTokenRejected as exc:
            if exc.reason == "im_token_banned" and exc.user_id is not None:
                self._metrics.auth_failures.labels(exc.reason).inc()
                raise Banned(exc.user_id) from None  # 403 / 40301, as any banned caller's
            raise Unauthenticated(exc.reason) from None

    def _bearer(self, token: str, platform_header: str | None) -> Caller:
        assert self.jwt_verifier is not None
        try:
            identity = self.jwt_verifier.verify(token, platform_header)
        except JWTRejected as exc:
            raise Unauthenticated(exc.reason) from None
        return Caller(identity.user_id, identity.platform_id, "jwt", jwt_id=identity.jwt_id)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The credential of an ``Authorization: Bearer`` header (maybe empty); None without one."""
    authorization = headers.get("Authorization", "")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


_NAMING_THE_TARGET = frozenset({"@authority", "@scheme", "@target-uri"})


def _message(request: web.Request, components: Sequence[str], fields: _JoinedHeaders) -> signatures.Message:
    path, _, query = request.raw_path.partition("?")
    names_target = not _NAMING_THE_TARGET.isdisjoint(components)  # usually not: host and scheme go unread
    return signatures.Message(
        method=request.method,
        path=path,
        query=query,
        headers=fields,
        authority=request.host if names_target else "",
        scheme=request.scheme if names_target else "http",
    )


class _JoinedHeaders(Mapping[str, str]):
    """A request's header fields by lower-case name, each line stripped, repeated lines joined with ", ".

    One rule for the signature fields themselves and for the header fields a signature covers
    (RFC 9421 section 2.1, RFC 9110 section 5.3).
    """

    def __init__(self, request: web.Request) -> None:
        self._headers = request.headers

    def __getitem__(self, name: str) -> str:
        values = self._headers.getall(name, None)
        if not values:
            raise KeyError(name)
        return values[0].strip() if len(values) == 1 else ", ".join(v.strip() for v in values)

    def __iter__(self) -> Iterator[str]:
        return iter({name.lower() for name in self._headers})

    def __len__(self) -> int:
        return len({name.lower() for name in self._headers})


AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator", Authenticator)


async def logged_in_caller(request: web.Request) -> Caller:
    """The caller of a user's route (/im, /legacy, the media routes): a signature, a JWT or an imToken, logged
    in (else 401, ``not_logged_in``) and not banned (else 403 / 40301)."""
    authenticator = request.app[AUTHENTICATOR]
    caller = await authenticator.authenticate(request, allow_im_token=True)
    if caller.user_id is None:
        raise authenticator.rejected("not_logged_in")
    if caller.via != "im_token":  # the imToken verifier has checked the ban already
        await request.app[BANS].check(caller.user_id)
    return caller
