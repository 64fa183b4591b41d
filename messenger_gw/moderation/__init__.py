"""Moderation rules shared by /im, the admin API, the webhooks and the WebSocket guard: bans, word rules, rate
limits.
"""

from .bans import BANS, Ban, Banned, Bans
from .bans import INVALIDATION_KIND as BAN_INVALIDATION_KIND
from .messages import BLOCK_MESSAGES, MESSAGE_RULES, MessageRules, message_text
from .rate_limit import RATE_LIMITS, EagerRateLimits, RateLimit, RateLimited, RateLimits
from .word_rules import WordRules

__all__ = [
    "BANS",
    "BAN_INVALIDATION_KIND",
    "BLOCK_MESSAGES",
    "MESSAGE_RULES",
    "RATE_LIMITS",
    "Ban",
    "Banned",
    "Bans",
    "EagerRateLimits",
    "MessageRules",
    "RateLimit",
    "RateLimited",
    "RateLimits",
    "WordRules",
    "message_text",
]
