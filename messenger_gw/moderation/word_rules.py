"""Banned and flagged word lists, read from a file and re-read when it changes (no restart).

One rule a line: a word or phrase, matched case-insensitively as a whole word;
or ``re:<pattern>``, a Python regular expression searched case-insensitively.
Blank lines and lines starting with ``#`` are ignored. The file's modification
time is checked at most every ``RECHECK_SECONDS``; a file that stops parsing
keeps the last good rules (and says so in the log).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0


def compile_rules(text: str) -> re.Pattern[str] | None:
    words, parts = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        if rule.startswith("re:"):
            try:
                re.compile(rule[3:])
            except re.error as exc:
                raise ValueError(f"line {number}: {exc}") from None
            parts.append(f"(?:{rule[3:]})")
        else:
            words.append(rule)
    if words:
        # One alternation with shared prefixes written once: re tries alternatives one after the
        # other at every position, so 200 words written out took seconds over a 300 KiB message.
        parts.insert(0, rf"(?<!\w)(?:{_alternation(_trie(words))})(?!\w)")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


Trie = dict[str, "Trie"]


def _trie(words: list[str]) -> Trie:
    root: Trie = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here
    return root


def _alternation(node: Trie) -> str:
    """A pattern matching exactly the words below ``node``."""
    branches = [re.escape(char) + _alternation(child) for char, child in node.items() if char]
    if not branches:
        return ""
    pattern = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{pattern})?" if "" in node else pattern


class WordRules:
    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._pattern: re.Pattern[str] | None = None
        self._mtime: float | None = None
        self._checked = float("-inf")
        self._reload()

    @property
    def configured(self) -> bool:
        """Whether there is a word list at all: without one no text needs reading."""
        return self._path is not None

    def match(self, text: str) -> bool:
        if self._path is None or not text:
            return False
        if self._clock() - self._checked >= RECHECK_SECONDS:
            self._reload()
        return self._pattern is not None and self._pattern.search(text) is not None

    def _reload(self) -> None:
        self._checked = self._clock()
        if self._path is None:
            return
        try:
            mtime = os.stat(self._path).st_mtime
            if mtime == self._mtime:
                return
            pattern = compile_rules(self._path.read_text())
        except (OSError, ValueError) as exc:
            log.error("word list %s not (re)loaded, keeping the previous rules: %s", self._path, exc)
            return
        self._pattern, self._mtime = pattern, mtime
        log.info("word list loaded", extra={"path": str(self._path)})
