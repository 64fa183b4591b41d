"""The rules a message is held to, for the webhooks and the WebSocket guard alike."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from messenger_gw.moderation import Ban, Bans, MessageRules, WordRules, message_text
from messenger_gw.store import Invalidation, MemoryStore


@pytest.mark.parametrize(
    ("content_type", "content", "text"),
    [
        (101, orjson.dumps({"content": "hello"}).decode(), "hello"),
        (106, orjson.dumps({"text": "hi @bob", "atUserList": ["bob"]}).decode(), "hi @bob"),
        (101, "not json", "not json"),  # read as it came
        (101, "[1, 2]", ""),
        (102, orjson.dumps({"content": "a picture's content is no text"}).decode(), ""),
        (101, "", ""),
    ],
)
def test_the_text_read_is_that_of_text_and_at_messages_only(content_type: int, content: str, text: str) -> None:
    assert message_text(content_type, content) == text


async def test_a_banned_sender_and_a_banned_word_are_refused_and_the_rest_goes(tmp_path: Path) -> None:
    words = tmp_path / "banned.txt"
    words.write_text("scam\n")
    store = MemoryStore()
    bans = Bans(store, Invalidation(store))
    await bans.put(Ban("mallory", "spam", "admin", int(time.time()), None), now=time.time())
    rules = MessageRules(bans, WordRules(words))
    text = orjson.dumps({"content": "a scam"}).decode()
    assert await rules.refusal("mallory", 101, orjson.dumps({"content": "hello"}).decode()) == "banned"
    assert await rules.refusal("alice", 101, text) == "banned_word"
    assert await rules.refusal("alice", 102, text) is None, "no text to read in a picture"
    assert await rules.refusal("alice", 101, orjson.dumps({"content": "hello"}).decode()) is None
