"""Everything that speaks to OpenIM: the typed client and its errCode tree, the admin token, users' imTokens, and
the transport underneath.
"""

from ._transport import Answer, Deadlines, UpstreamError, UpstreamPool
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
    new_pool,
    read_envelope,
)
from .conversation_access import CONVERSATION_ACCESS, ConversationAccess, single_chat_pairs, single_chat_peers
from .user_tokens import IM_TOKENS, ImTokens
from .user_tokens import INVALIDATION_KIND as IM_TOKEN_INVALIDATION_KIND

__all__ = [
    "ADMIN_TOKENS",
    "CONVERSATION_ACCESS",
    "IM_TOKENS",
    "IM_TOKEN_INVALIDATION_KIND",
    "OPENIM",
    "USER_PLATFORM_IDS",
    "AdminTokenManager",
    "Answer",
    "ArgsError",
    "ConversationAccess",
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
    "RecordNotFoundError",
    "TokenError",
    "UpstreamError",
    "UpstreamPool",
    "new_pool",
    "read_envelope",
    "single_chat_pairs",
    "single_chat_peers",
]
