"""CORS for browser clients on ``/auth/*``, ``/im/*`` and ``/ws``: the gateway's own origin allowlist.

OpenIM answers ``Access-Control-Allow-Origin: *`` (and ``*`` for methods and headers) on every
response and answers ``OPTIONS`` itself; the /im proxy passes on none of OpenIM's answer headers
but ``Content-Type``, so a browser sees only what this module answers, for the origins in
``CORS_ALLOWED_ORIGINS`` (normalised at start-up by ``settings``).

The edge middleware consults it only for a request with an ``Origin`` header, so every other
request pays one header lookup. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
in scope is answered here, before routing: 204 with the methods of its scope and exactly the
request headers the gateway's clients send, or 403 for an origin not allowed. Any other request
from an allowed origin gets ``Access-Control-Allow-Origin`` and the headers it may read; from
another origin it gets none, so the browser keeps the answer from the page. A WebSocket upgrade is
no CORS request (browsers never preflight it and ignore these headers): the guard on ``/ws`` asks
:meth:`CORSPolicy.allows` itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from messenger_gw import errors
from messenger_gw.metrics import ROUTE_LABEL
from messenger_gw.settings import CORSSettings

# What the gateway's clients send beyond the CORS-safelisted headers: the signature headers,
# a JWT, the OpenIM SDK's token, operationID and reqFuncName, the JSON content type, the
# operationID as X-Request-ID, and a JWT caller's platform.
ALLOWED_HEADERS = (
    "Signature, Signature-Input, Content-Digest, Authorization, token, operationID, reqFuncName, Content-Type,"
    " X-Request-ID, X-Platform-ID"
)
# Beyond the safelisted answer headers: the operationID echoed, and how long a refused caller waits.
EXPOSED_HEADERS = "X-Request-ID, Retry-After"
# Chromium caps a cached preflight at two hours; an origin removed from the list is refused on the
# next request anyway, since its answers then lack Access-Control-Allow-Origin.
MAX_AGE = "7200"
PREFLIGHT_LABEL = "cors_preflight"

_SCOPES = (("/auth/", "GET, POST"), ("/im/", "POST"), ("/ws", "GET"))

CORS_ANSWER: web.RequestKey[Mapping[str, str]] = web.RequestKey("cors_answer", dict)


class OriginNotAllowed(errors.Forbidden):
    pass


class CORSPolicy:
    def __init__(self, settings: CORSSettings) -> None:
        self._origins = settings.origins
        self._any = settings.any_origin
        self._enabled = settings.enabled
        credentials = {"Access-Control-Allow-Credentials": "true"} if settings.allow_credentials else {}
        vary = {} if self._any else {"Vary": "Origin"}
        self._answer = {"Access-Control-Expose-Headers": EXPOSED_HEADERS} | credentials | vary
        self._preflight = {"Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": MAX_AGE}
        self._preflight |= credentials | vary

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` (an ``Origin`` header, as browsers write it) may call the gateway."""
        return self._any or origin in self._origins

    def consider(self, request: web.Request, origin: str) -> web.Response | None:
        """For a request with ``Origin``: the preflight's answer when the gateway answers one (None: route the
        request as usual), else the headers its answer gets kept for :func:`add_cors_headers`. A refused
        preflight raises :class:`OriginNotAllowed`."""
        if not self._enabled:
            return None
        methods = _methods(request.path)
        if methods is None:
            return None
        allowed = self.allows(origin)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            request[ROUTE_LABEL] = PREFLIGHT_LABEL
            if not allowed:
                raise OriginNotAllowed("Origin not allowed", detail=f"CORS preflight from {origin[:100]!r}")
            headers = {"Access-Control-Allow-Origin": "*" if self._any else origin}
            headers |= {"Access-Control-Allow-Methods": methods} | self._preflight
            return web.Response(status=204, headers=headers)
        if allowed:
            request[CORS_ANSWER] = {"Access-Control-Allow-Origin": "*" if self._any else origin} | self._answer
        return None


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Give ``response`` the CORS headers the edge chose for ``request``, if any: for a handler that
    prepares its answer itself, before it does (the edge adds them to every other answer)."""
    answer = request.get(CORS_ANSWER)
    if answer is not None:
        _add(response, answer)


def _add(response: web.StreamResponse, answer: Mapping[str, str]) -> None:
    headers = response.headers
    for name, value in answer.items():
        if name == "Vary" and name in headers:  # keep what the answer varies on already
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value  # replacing any the handler set


def _methods(path: str) -> str | None:
    for prefix, methods in _SCOPES:
        if path.startswith(prefix) and (prefix[-1] == "/" or len(path) == len(prefix) or path[len(prefix)] == "/"):
            return methods
    return None


CORS: web.AppKey[CORSPolicy] = web.AppKey("cors", CORSPolicy)
