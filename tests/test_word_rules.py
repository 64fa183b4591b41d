"""Banned/flagged word lists: words, patterns, reload without restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from messenger_gw.sandbox import FakeClock
from messenger_gw.word_rules import WordRules, compile_rules


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
