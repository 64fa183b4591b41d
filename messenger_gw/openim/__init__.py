"""Everything that speaks to OpenIM: the typed client and its errCode tree, the admin token, users' imTokens, and
the transport underneath.
"""

from ._transport import Answer, Deadlines, PoolState, UpstreamError, UpstreamPool
from .admin_token import ADMIN_TOKENS, AdminTokenManager
from .client import (
    OPENIM,
    USER_PLATFORM_IDS,
    ArgsError,
    Exchange,
    GroupIDNotFoundError,
    OpenIMAPIError,
    OpenIMClient,
    OpenIMError,
    OpenIMProtocolError,
    OpenIMTimeout,
    OpenIMUnavailable,
    RecordNotFoundError,
    TokenError,
    Upstream,
    new_pool,
    read_envelope,
)
from .user_tokens import IM_TOKENS, ImTokens

__all__ = [
    "ADMIN_TOKENS",
    "IM_TOKENS",
    "OPENIM",
    "USER_PLATFORM_IDS",
    "AdminTokenManager",
    "Answer",
    "ArgsError",
    "Deadlines",
    "Exchange",
    "GroupIDNotFoundError",
    "ImTokens",
    "OpenIMAPIError",
    "OpenIMClient",
    "OpenIMError",
    "OpenIMProtocolError",
    "OpenIMTimeout",
    "OpenIMUnavailable",
    "PoolState",
    "RecordNotFoundError",
    "TokenError",
    "Upstream",
    "UpstreamError",
    "UpstreamPool",
    "new_pool",
    "read_envelope",
]
