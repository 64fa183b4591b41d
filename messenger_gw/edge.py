"""The edge every request passes first: its operationID, its metrics and access line, its error envelope.

Three concerns, each a function of its own module (``operation_id``,
``metrics``, ``errors``), composed in that order in one middleware rather
than three: every time a request's task suspends and resumes (the store, the
upstream), the resumption passes through each frame of its await chain, so
each layer costs on every wait, not once (``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import error_response
from .logs import OPERATION_ID_VAR
from .metrics import METRICS
from .operation_id import OPERATION_ID, RESPONSE_HEADER, operation_id_of

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
            response = await handler(request)
        except Exception as exc:
            try:
                response = error_response(request, exc)
            except web.HTTPException as redirect:
                status = redirect.status
                redirect.headers[RESPONSE_HEADER] = operation_id
                raise
        status = response.status
        response.headers[RESPONSE_HEADER] = operation_id
        return response
    finally:
        metrics.request_answered(request, status, started)
        OPERATION_ID_VAR.reset(logging_context)
