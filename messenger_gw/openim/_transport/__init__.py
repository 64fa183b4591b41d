"""HTTP/1.1 to OpenIM: the bounded keep-alive pool and the deadlines of its calls. Hand-written for speed: read
docs/dependencies.md before changing it.
"""

from .deadlines import Deadline, Deadlines
from .pool import Answer, PoolState, UpstreamError, UpstreamPool

__all__ = ["Answer", "Deadline", "Deadlines", "PoolState", "UpstreamError", "UpstreamPool"]
