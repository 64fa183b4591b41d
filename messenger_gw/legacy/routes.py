"""The legacy chat service's route table: which of its routes the gateway passes on, and in which phases.

The table is a TOML file of ``[[route]]`` entries (``docs/legacy-chat.md``), read like the ``/im`` table
(``route_tables.py``) and checked at start-up:

* ``path``: the old service's path pattern, with parameters as aiohttp writes them (``{conversationID}``,
  ``{seq:\\d+}``); clients call it under ``/legacy``;
* ``methods``: among GET, POST, PUT, PATCH and DELETE;
* ``access``: ``"read"`` or ``"write"``;
* ``phases``: the migration phases in which the route passes; by default the seeds' plan: a read up to
  phase 5, a write up to phase 2 (from phase 3 the old service is read-only, from phase 6 it is off);
* ``replaced_by``: the ``/im`` route that replaces it, named in the 410 Gone answered outside its phases;
  required for a write, and it must be a route of the ``/im`` table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from messenger_gw import route_tables
from messenger_gw.settings import MAX_PHASE, LegacySettings

PREFIX = "/legacy"
ROUTE_KEYS = frozenset({"path", "methods", "access", "phases", "replaced_by"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # not HEAD: the pool cannot tell its empty answer apart
DEFAULT_PHASES: dict[str, frozenset[int]] = {
    "read": frozenset(range(1, MAX_PHASE)),  # from phase 6 the old service is off
    "write": frozenset({1, 2}),  # from phase 3 its writes go to OpenIM through /im
}


class LegacyRouteTableError(ValueError):
    """The legacy route table is malformed; the message names the file and the route."""


@dataclasses.dataclass(frozen=True, slots=True)
class LegacyRoute:
    path: str  # the old service's path pattern
    methods: tuple[str, ...]
    access: Literal["read", "write"]
    phases: frozenset[int]
    replaced_by: str | None  # an /im route

    @property
    def label(self) -> str:
        """The route template clients call, which is its metric label: bounded by the table."""
        return PREFIX + self.path

    def live(self, phase: int) -> bool:
        return phase in self.phases


class LegacyRouteTable:
    def __init__(self, routes: list[LegacyRoute]) -> None:
        self._routes = routes

    @classmethod
    def load(cls, path: Path, *, im_routes: Collection[str]) -> LegacyRouteTable:
        """The table in ``path``; ``im_routes`` are the ``/im`` routes a ``replaced_by`` may name."""
        return cls.parse(path.read_text(), str(path), im_routes=im_routes)

    @classmethod
    def parse(cls, text: str, source: str, *, im_routes: Collection[str]) -> LegacyRouteTable:
        def build(entry: dict[str, Any]) -> LegacyRoute:
            return _route(entry, im_routes)

        routes = route_tables.parse_routes(
            text, source, build, lambda route: [(method, route.path) for method in route.methods], LegacyRouteTableError
        )
        return cls(routes)

    def __iter__(self) -> Iterator[LegacyRoute]:
        return iter(self._routes)


def _route(entry: dict[str, Any], im_routes: Collection[str]) -> LegacyRoute:
    route_tables.check_keys(entry, ROUTE_KEYS)
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError("path must be a path pattern starting with /, without a query")
    try:  # the pattern as the router will read it: a bad parameter or regex fails here, not at the first request
        web.UrlDispatcher().add_resource(PREFIX + path)
    except ValueError as exc:
        raise ValueError(f"path is not a valid pattern: {exc}") from None
    methods = entry.get("methods")
    if not isinstance(methods, list) or not methods or not all(m in METHODS for m in methods):
        raise ValueError(f"methods must be a non-empty list of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError("methods lists a method twice")
    access = entry.get("access")
    if access not in ("read", "write"):
        raise ValueError('access must be "read" or "write"')
    phases = entry.get("phases")
    if phases is None:
        live = DEFAULT_PHASES[access]
    elif (
        not isinstance(phases, list)
        or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= MAX_PHASE for p in phases)
        or len(set(phases)) != len(phases)
    ):
        raise ValueError(f"phases must list distinct phases from 1 to {MAX_PHASE}")
    else:
        live = frozenset(phases)
    replaced_by = entry.get("replaced_by")
    if replaced_by is None:
        if access == "write":
            raise ValueError("a write needs replaced_by: the /im route clients move to once it answers 410")
    elif not isinstance(replaced_by, str) or replaced_by not in im_routes:
        raise ValueError(f"replaced_by must name a route of the /im table (/im/...), not {replaced_by!r}")
    return LegacyRoute(path, tuple(methods), access, live, replaced_by)


def configured_table(settings: LegacySettings, *, im_routes: Collection[str]) -> LegacyRouteTable | None:
    """The configured table, or None while the legacy chat service is off (``LEGACY_CHAT_URL`` unset)."""
    if settings.url is None:
        return None
    assert settings.route_table is not None  # the settings require it with the URL
    return LegacyRouteTable.load(settings.route_table, im_routes=im_routes)
