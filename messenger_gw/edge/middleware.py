"""The edge every request passes first: its operationID, its metrics and access line, its error envelope, and
CORS for a request from a browser page.

Three concerns, each a function of its own module (``operation_id``,
``metrics``, ``errors``), composed in that order in one middleware rather
than three: every time a request's task suspends and resumes (the store, the
upstream), the resumption passes through each frame of its await chain, so
each layer costs on every wait, not once (``docs/performance.md``). CORS
(``cors``) is consulted only for a request with an ``Origin`` header.

A request that is not well-formed HTTP never reaches a middleware: aiohttp's
parser refuses it on the connection. :class:`EdgeRunner` serves the app with
connections that answer it with the envelope too (:func:`malformed_response`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from messenger_gw import errors
from messenger_gw.logs import OPERATION_ID_VAR
from messenger_gw.metrics import METRICS
from messenger_gw.operation_id import OPERATION_ID, RESPONSE_HEADER, new_operation_id, operation_id_of

from .cors import CORS, add_cors_headers
from .envelope import error_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[OPERATION_ID] = operation_id = operation_id_of(request)
    logging_context = OPERATION_ID_VAR.set(operation_id)
    metrics = request.app[METRICS]
    started = metrics.request_started()
    status = 500  # unless answered: a cancelled request (the client went away) counts as a failure
    try:
        try:
            origin = request.headers.get("Origin")
            if origin is None:
                response = await handler(request)
            else:
                response = request.app[CORS].consider(request, origin) or await handler(request)
        except Exception as exc:
            try:
                response = error_response(request, exc)
            except web.HTTPException as redirect:
                status = redirect.status
                redirect.headers[RESPONSE_HEADER] = operation_id
                raise
        status = response.status
        response.headers[RESPONSE_HEADER] = operation_id
        if not response.prepared:  # a prepared one got them as it was (edge.stream_answer)
            add_cors_headers(request, response)
        return response
    finally:
        metrics.request_answered(request, status, started)
        OPERATION_ID_VAR.reset(logging_context)


# -- requests that are not well-formed HTTP ------------------------------------------------------

# aiohttp raises a plain BadHttpMessage for too many header fields; its message is the only mark.
_TOO_MANY_HEADERS = "Too many headers received"


def malformed_response(exc: HttpProcessingError) -> web.Response:
    """The envelope for a request aiohttp's parser refused, logged at warning.

    The parser's message quotes the offending bytes (a header line, a NUL, the start of an
    oversized field): neither the answer nor the log repeats it, only what kind of problem it was.
    """
    if isinstance(exc, LineTooLong) or exc.message == _TOO_MANY_HEADERS:
        status, code, message = 431, errors.HEADERS_TOO_LARGE, "Request header fields too large"
    else:
        status, code, message = 400, errors.BAD_REQUEST, "Malformed HTTP request"
    operation_id = new_operation_id()
    log.warning(
        "malformed request answered %d: %s",
        status,
        type(exc).__name__,
        extra={"errCode": code, "problem": type(exc).__name__, "operationID": operation_id},
    )
    response = errors.envelope_response(status, code, message)
    response.headers[RESPONSE_HEADER] = operation_id
    response.force_close()  # the parser's state is lost: nothing after it on this connection can be read
    return response


class _EdgeRequestHandler(RequestHandler):
    """aiohttp's connection protocol, answering what its parser refuses with :func:`malformed_response`."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Parser errors only; an error of a handler never gets here, the edge middleware answers it.
        if isinstance(exc, HttpProcessingError) and request.writer.output_size == 0:
            return malformed_response(exc)
        return super().handle_error(request, status, exc, message)


class _EdgeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EdgeRequestHandler(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP with the envelope.

    aiohttp (3.x) builds the connection protocol inside its server with no option to choose
    another, so the server aiohttp made is remade, with the same handler, request factory and
    options, as one that makes :class:`_EdgeRequestHandler` connections.
    """

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _EdgeServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
