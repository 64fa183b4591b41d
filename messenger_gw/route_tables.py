"""Route tables in TOML: a list of ``[[route]]`` tables, read and checked at start-up.

The ``/im`` table (``im/route_policy.py``) and the legacy chat service's (``legacy/routes.py``) are read the
same way; each says what one entry means. A mistake stops the gateway with one line naming the file and the
route: its place in the file and its path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

R = TypeVar("R")


def parse_routes(
    text: str,
    source: str,
    build: Callable[[dict[str, Any]], R],
    keys: Callable[[R], Iterable[Hashable]],
    error: type[ValueError],
) -> list[R]:
    """Each ``[[route]]`` of the TOML ``text`` made into a route by ``build``, in the file's order.

    ``build`` refuses an entry with a ``ValueError`` or ``TypeError``; ``keys`` gives what no two routes may
    share (a path, a path and method). Every refusal is an ``error`` naming ``source`` and the route."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    unknown = set(document) - {"route"}
    if unknown:
        raise error(f"{source}: unknown top-level key(s) {sorted(unknown)}; routes are [[route]] tables")
    entries = document.get("route", [])
    if not isinstance(entries, list):
        raise error(f"{source}: routes are [[route]] tables")
    routes: list[R] = []
    seen: set[Hashable] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{source}: route {index} ({entry.get('path', 'no path')})"
        try:
            route = build(entry)
        except (ValueError, TypeError) as exc:
            raise error(f"{where}: {exc}") from None
        for key in keys(route):
            if key in seen:
                raise error(f"{where}: {_described(key)} is listed twice")
            seen.add(key)
        routes.append(route)
    if not routes:
        raise error(f"{source}: no routes")
    return routes


def check_keys(entry: Mapping[str, Any], known: frozenset[str]) -> None:
    """Refuse an entry naming a key the table does not have: a typo must not pass as a rule left out."""
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")


def _described(key: Hashable) -> str:
    if isinstance(key, tuple):
        return " ".join(map(str, key))
    return f"the path {key}" if isinstance(key, str) else str(key)
