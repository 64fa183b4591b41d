"""The edge: the middleware every request passes (operationID, metrics and the access line, the error envelope),
the client address, the probes and the JSON body helpers.
"""

from .client_address import client_ip, forwarded_for, within
from .health import DRAINING, healthz, readyz
from .middleware import EdgeRunner, edge_middleware

__all__ = ["DRAINING", "EdgeRunner", "client_ip", "edge_middleware", "forwarded_for", "healthz", "readyz", "within"]

from .cors import CORS, CORSPolicy, add_cors_headers
from .envelope import answer_as_openim, error_response
from .forwarding import CLIENT_CREDENTIALS, HOP_BY_HOP, passed_headers, peek, stream_answer, whole_answer
from .json_body import is_blank, parse_json_object, read_json_object

__all__ += ["answer_as_openim", "error_response", "is_blank", "parse_json_object", "read_json_object"]
__all__ += ["CLIENT_CREDENTIALS", "HOP_BY_HOP", "passed_headers", "peek", "stream_answer", "whole_answer"]
__all__ += ["CORS", "CORSPolicy", "add_cors_headers"]
