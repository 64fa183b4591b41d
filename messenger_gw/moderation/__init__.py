"""Moderation rules shared by /im, the admin API, the webhooks and the WebSocket guard: bans, word rules, rate
limits.
"""

from .bans import BANS, Ban, Banned, Bans
from .rate_limit import RateLimit
from .word_rules import WordRules

__all__ = ["BANS", "Ban", "Banned", "Bans", "RateLimit", "WordRules"]
