"""Banned/flagged word lists: words, patterns, reload without restart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from messenger_gw.moderation.word_rules import WordRules, compile_rules
from messenger_gw.sandbox import FakeClock


def test_words_match_whole_words_case_insensitively_and_patterns_search() -> None:
    pattern = compile_rules("# comment\n\nscam\nfree money\nre:\\bbuy\\s+now\\b\n")
    assert pattern is not None
    for text in ("a SCAM here", "Free  money"[:0] + "free money!", "please buy   now"):
        assert pattern.search(text), text
    for text in ("scampi", "money free", "buynow"):
        assert not pattern.search(text), text


def test_a_broken_pattern_names_its_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        compile_rules("ok\nre:(unclosed\n")


def test_the_file_is_reloaded_when_it_changes_and_bad_edits_keep_the_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "banned.txt"
    path.write_text("spam\n")
    clock = FakeClock(0)
    rules = WordRules(path, clock=clock)
    assert rules.match("this is spam")
    path.write_text("phishing\n")
    os.utime(path, (1, 1))
    clock.advance(3)
    assert rules.match("phishing link")
    assert not rules.match("this is spam")
    path.write_text("re:(broken\n")
    os.utime(path, (2, 2))
    clock.advance(3)
    assert rules.match("phishing link"), "a bad edit keeps the previous rules"


def test_no_file_matches_nothing() -> None:
    assert not WordRules(None).match("anything")


def test_a_long_list_over_a_long_message_is_searched_quickly() -> None:
    """Two hundred rules written one after the other took about 5 s over 300 KiB of text, on the
    event loop; as one trie, a few tens of milliseconds."""
    words = [f"w{n:03d}rd" for n in range(200)] + ["free money"]
    pattern = compile_rules("\n".join(words))
    assert pattern is not None
    text = "hello world, this is an ordinary message " * 7500
    started = time.perf_counter()
    assert not pattern.search(text)
    assert time.perf_counter() - started < 1.0
    assert pattern.search(text + " w199rd")
    assert pattern.search(text + " FREE MONEY")
    assert not pattern.search(text + " w199rds")


def test_words_that_share_a_beginning_each_match_whole() -> None:
    pattern = compile_rules("sc\nscam\nscam artist\n")
    assert pattern is not None
    assert [bool(pattern.search(t)) for t in ("sc", "a scam", "scam artist", "scams", "scamp", "sca")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
