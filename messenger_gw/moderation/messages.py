"""The rules a message is held to wherever the gateway sees it: in OpenIM's before-send callbacks
(``webhooks/receiver.py``) and in a client's frame before OpenIM sees it (the WebSocket guard).

One :class:`MessageRules` serves both, so the guard refuses exactly what the callback would block,
and a rule changed here changes in both places. Each answers with a reason from
:data:`BLOCK_MESSAGES`, whose text is what the sender is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import orjson
from aiohttp import web

from .bans import Bans
from .word_rules import WordRules

TEXT, AT_TEXT = 101, 106  # OpenIM's content types whose text the word rules read

BLOCK_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "banned": "the sender is banned",
        "banned_word": "the message contains a banned word",
        "rate": "the sender is sending too fast",
        "unavailable": "moderation is unavailable",
    }
)


def message_text(content_type: int, content: str) -> str:
    """The human-readable text of a text (101) or @ (106) message, ``content`` being the JSON of its
    element as OpenIM carries it; empty for other content."""
    if content_type not in (TEXT, AT_TEXT) or not content:
        return ""
    try:
        element = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content
    if not isinstance(element, dict):
        return ""
    text = element.get("content") if content_type == TEXT else element.get("text")
    return text if isinstance(text, str) else ""


class MessageRules:
    """Who may not send, and what may not be said: the ban records and the banned-word list."""

    def __init__(self, bans: Bans, banned_words: WordRules) -> None:
        self._bans = bans
        self._banned_words = banned_words

    async def refusal(self, sender: str, content_type: int, content: str) -> str | None:
        """``"banned"``, ``"banned_word"``, or None when the message may go. A ban the store cannot
        answer raises :class:`~messenger_gw.store.StoreError`: the caller's failure policy decides."""
        if sender and await self._bans.is_banned(sender):
            return "banned"
        if self._banned_words.configured and self._banned_words.match(message_text(content_type, content)):
            return "banned_word"
        return None


MESSAGE_RULES: web.AppKey[MessageRules] = web.AppKey("message_rules", MessageRules)
