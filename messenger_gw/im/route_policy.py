"""The /im route table and the rules it applies to a request body.

The table (``im/routes.toml``, documented at its top) is loaded and validated
at start-up; a mistake in it is a :class:`RouteTableError` naming the route.

Body fields are matched the way OpenIM's Go decoder matches them: case-
insensitively. ``{"userID": "me", "UserID": "victim"}`` would reach OpenIM as
the victim, so an object holding two keys that differ only in case, for a
field the table names, is refused outright. Every rule reads its fields this
one way, so no spelling of a refused field slips past.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web

from messenger_gw import errors, route_tables
from messenger_gw.openim import single_chat_peers
from messenger_gw.settings import RATE_CLASSES

PACKAGED_TABLE = "routes.toml"
ANSWERS = frozenset({"self_user_info"})
ROUTE_KEYS = frozenset(
    {
        "path",
        "phase",
        "token",
        "bind",
        "fill",
        "bind_any",
        "bind_each",
        "bind_platform",
        "allow",
        "refuse",
        "peer",
        "drop",
        "conversations",
        "groups",
        "changes_members",
        "class",
        "object_names",
        "form_data_ids",
        "opaque",
        "answer",
    }
)
_PATH = re.compile(r"(/[A-Za-z_]+)+")  # OpenIM spells two routes with capitals (get_recv_group_applicationList)
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[\])?")
_RAW_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")
# Where v3.8.3's InitiateFormData puts a user's upload (internal/rpc/third/s3.go):
# path.Join(cont.DirectPath, <yyyymmdd>, <userID>, <32 hex digits> + path.Ext(name)).
_FORM_DATA_FILE = re.compile(r"[0-9a-f]{32}(\.[^/]*)?")
_DATE = re.compile(r"[0-9]{8}")


class RouteTableError(ValueError):
    """The route table is malformed; the message names the file and the route."""


# -- what a request can break -------------------------------------------------------------------


class RouteNotFound(errors.NotFound):
    pass


class FieldNamesAnotherUser(errors.Forbidden):
    code = errors.FIELD_NAMES_ANOTHER_USER


class NotAParty(errors.Forbidden):
    code = errors.NOT_A_PARTY


class ValueNotAllowed(errors.Forbidden):
    code = errors.VALUE_NOT_ALLOWED


# -- field paths -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FieldPath:
    """A dotted path into a JSON body; a segment ending in ``[]`` walks every element of a list."""

    text: str
    segments: tuple[tuple[str, bool], ...]

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        parts = text.split(".")
        if not all(_SEGMENT.fullmatch(p) for p in parts):
            raise ValueError(f"{text!r} is not a field path (name, name.name, name[].name)")
        return cls(text, tuple((p.removesuffix("[]"), p.endswith("[]")) for p in parts))

    @property
    def has_lists(self) -> bool:
        return any(each for _, each in self.segments)

    def slots(self, body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str | None]]:
        """(object, field name, the key present for it or None) for every place the path reaches."""
        yield from self._slots(body, 0)

    def _slots(self, obj: dict[str, Any], index: int) -> Iterator[tuple[dict[str, Any], str, str | None]]:
        name, each = self.segments[index]
        key = _key(obj, name, self.text)
        last = index == len(self.segments) - 1
        if last and not each:
            yield obj, name, key
            return
        value = obj.get(key) if key is not None else None
        if value is None:
            return
        if each and not isinstance(value, list):
            raise errors.InvalidField(f"{self.text}: {name} must be a list")
        children: list[Any] = value if each else [value]
        for child in children:
            if last:
                yield {"": child}, "", ""  # a list element itself: the value is child
            elif isinstance(child, dict):
                yield from self._slots(child, index + 1)
            elif child is not None:
                raise errors.InvalidField(f"{self.text}: {name} must hold objects")

    def values(self, body: dict[str, Any]) -> list[Any]:
        return [obj[key] for obj, _, key in self.slots(body) if key is not None and obj.get(key) is not None]


def _key(obj: dict[str, Any], name: str, path: str) -> str | None:
    folded = name.casefold()
    matches = [k for k in obj if k.casefold() == folded]
    if len(matches) > 1:
        raise errors.InvalidField(f"{path}: keys {', '.join(sorted(matches))} differ only in case")
    return matches[0] if matches else None


# -- routes ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    path: str
    phase: int
    token_mode: Literal["user", "admin"] = "user"
    bind: tuple[FieldPath, ...] = ()
    fill: frozenset[str] = frozenset()
    bind_any: tuple[FieldPath, ...] = ()
    bind_each: tuple[FieldPath, ...] = ()
    bind_platform: tuple[FieldPath, ...] = ()
    allow: tuple[tuple[FieldPath, tuple[object, ...]], ...] = ()
    refuse: tuple[tuple[FieldPath, tuple[object, ...]], ...] = ()
    peer: tuple[tuple[FieldPath, FieldPath], ...] = ()
    drop: tuple[FieldPath, ...] = ()
    conversations: tuple[FieldPath, ...] = ()
    groups: tuple[FieldPath, ...] = ()
    changes_members: tuple[FieldPath, ...] = ()
    object_names: tuple[FieldPath, ...] = ()
    form_data_ids: tuple[FieldPath, ...] = ()
    opaque: bool = False
    answer: str | None = None
    rate_class: str | None = None  # the rate limit's class (RATE_LIMITS); None: not limited
    label: str = dataclasses.field(init=False)  # the metric label for this route: bounded by the table
    # Whether a rule reads the body. Then OpenIM must get the body as the rules read it, re-encoded: Go's
    # decoder merges an object given twice under one key, where the rules saw only the last.
    reads_body: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:  # once per route, rather than at every request
        object.__setattr__(self, "label", "/im" + self.path)
        rules = (self.bind, self.bind_any, self.bind_each, self.bind_platform, self.allow, self.refuse, self.peer,
                 self.drop, self.conversations, self.groups, self.changes_members, self.object_names,
                 self.form_data_ids)  # fmt: skip
        object.__setattr__(self, "reads_body", any(rules))

    def apply(self, body: dict[str, Any], user_id: str, platform_id: int) -> None:
        """Enforce the rules on ``body``, filling the caller's identity where it is absent."""
        for field in self.bind:
            for obj, name, key in field.slots(body):
                value = obj.get(key) if key is not None else None
                if value is None:
                    if field.text in self.fill and not field.has_lists:
                        obj[key or name] = user_id
                elif not isinstance(value, str):
                    raise errors.InvalidField(f"{field.text} must be a string")
                elif value != user_id:
                    raise FieldNamesAnotherUser(f"{field.text} must be the caller's own userID")
        if self.bind_any:
            named = [value for field in self.bind_any for value in field.values(body)]
            if not all(isinstance(value, str) for value in named):
                raise errors.InvalidField(f"{', '.join(f.text for f in self.bind_any)} must be strings")
            if user_id not in named:
                raise FieldNamesAnotherUser(f"one of {', '.join(f.text for f in self.bind_any)} must be the caller")
        for field in self.bind_each:
            for obj, name, key in field.slots(body):
                value = obj.get(key) if key is not None else None
                if value is None:
                    obj[key or name] = [user_id]
                elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise errors.InvalidField(f"{field.text} must be a list of userIDs")
                elif any(v != user_id for v in value):
                    raise FieldNamesAnotherUser(f"{field.text} may name only the caller")
        for field in self.bind_platform:
            for obj, name, key in field.slots(body):
                value = obj.get(key) if key is not None else None
                if value is None:
                    obj[key or name] = platform_id
                elif value != platform_id or isinstance(value, bool):
                    raise FieldNamesAnotherUser(f"{field.text} must be the caller's platformID")
        for field, allowed in self.allow:
            values = field.values(body)
            if not values:
                raise errors.InvalidField(f"{field.text} is required")
            for value in values:
                if not _among(value, allowed):
                    raise ValueNotAllowed(f"{field.text} {value!r} is not allowed on this route")
        for field, refused in self.refuse:
            for value in field.values(body):
                if _among(value, refused):
                    raise ValueNotAllowed(f"{field.text} {value!r} is not allowed on this route")
        for field, conversation in self.peer:
            named = [value for value in field.values(body) if value != ""]  # "" is absent to Go
            if not named:
                continue
            conversation_ids = conversation.values(body)
            if not all(isinstance(value, str) for value in named + conversation_ids):
                raise errors.InvalidField(f"{field.text} and {conversation.text} must be strings")
            peers = single_chat_peers(user_id, conversation_ids[0]) if conversation_ids else set()
            if named[0] not in peers:
                raise ValueNotAllowed(f"{field.text} must be the other party of {conversation.text}")
        for field in self.object_names:
            _check_object_name(field.text, field.values(body), user_id)
        for field in self.form_data_ids:
            for value in _required(field, body):
                if not isinstance(value, str):
                    raise errors.InvalidField(f"{field.text} must be a string")
                _check_form_data_id(field.text, value, user_id)
        for field in self.drop:
            for obj, _, key in field.slots(body):
                if key is not None:
                    del obj[key]

    def named_conversations(self, body: dict[str, Any]) -> set[str]:
        return _strings(self.conversations, body)

    def named_groups(self, body: dict[str, Any]) -> set[str]:
        return _strings(self.groups, body)

    def changed_groups(self, body: dict[str, Any]) -> set[str]:
        """The groups whose membership this request may change."""
        return _strings(self.changes_members, body)


def _required(field: FieldPath, body: dict[str, Any]) -> list[Any]:
    values = field.values(body)
    if not values:
        raise errors.InvalidField(f"{field.text} is required")
    return values


def _check_object_name(text: str, values: list[Any], user_id: str) -> None:
    """OpenIM's own rule for a user's upload (``checkUploadName``): the name lies under ``<userID>/``."""
    if not values:
        raise errors.InvalidField(f"{text} is required")
    for value in values:
        if not isinstance(value, str):
            raise errors.InvalidField(f"{text} must be a string")
        if not value.startswith(user_id + "/"):
            raise FieldNamesAnotherUser(f"{text} must start with the caller's userID and /")


def _check_form_data_id(text: str, value: str, user_id: str) -> None:
    """OpenIM's form-data upload ID is base64 (no padding) of unsigned JSON naming the object and its
    storage key, which complete_form_data believes: both must be the caller's. Read as Go reads it
    (``base64.RawStdEncoding``, ``encoding/json`` into a struct: keys matched case-insensitively)."""
    raw = value.encode()
    # Go's decoder skips CR and LF and refuses padding; refusing both here leaves no reading but Go's.
    if not _RAW_BASE64.fullmatch(raw) or len(raw) % 4 == 1:
        raise errors.InvalidField(f"{text} is not OpenIM's upload ID")
    try:
        mate = orjson.loads(base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True))
    except (binascii.Error, orjson.JSONDecodeError):
        raise errors.InvalidField(f"{text} is not OpenIM's upload ID") from None
    if not isinstance(mate, dict):
        raise errors.InvalidField(f"{text} is not OpenIM's upload ID")
    _check_object_name(f"{text}: name", FieldPath.parse("name").values(mate), user_id)
    keys = FieldPath.parse("key").values(mate)
    if len(keys) != 1 or not isinstance(keys[0], str):
        raise errors.InvalidField(f"{text}: key is required")
    folder, _, file = keys[0].rpartition("/")
    date = folder.removeprefix("openim/direct/").removesuffix(f"/{user_id}")
    if folder != f"openim/direct/{date}/{user_id}" or not _DATE.fullmatch(date) or not _FORM_DATA_FILE.fullmatch(file):
        raise FieldNamesAnotherUser(f"{text}: key must be the caller's own upload")


def _among(value: object, values: Sequence[object]) -> bool:
    """``value`` is one of ``values`` as a typed JSON value: ``true`` is not ``1``, nor ``1.0``."""
    return any(type(value) is type(v) and value == v for v in values)


def _strings(fields: tuple[FieldPath, ...], body: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for field in fields:
        for value in field.values(body):
            if not isinstance(value, str):
                raise errors.InvalidField(f"{field.text} must be a string")
            found.add(value)
    return found


class RouteTable:
    def __init__(self, routes: dict[str, Route], source: str) -> None:
        self._routes = routes
        self.source = source

    @classmethod
    def load(cls, path: Path | None = None) -> RouteTable:
        if path is None:
            return cls.parse(resources.files(__package__).joinpath(PACKAGED_TABLE).read_text(), PACKAGED_TABLE)
        return cls.parse(path.read_text(), str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> RouteTable:
        routes = route_tables.parse_routes(text, source, _route, lambda route: [route.path], RouteTableError)
        return cls({route.path: route for route in routes}, source)

    def live(self, path: str, phase: int) -> Route | None:
        route = self._routes.get(path)
        return route if route is not None and route.phase <= phase else None

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())


def _route(entry: dict[str, Any]) -> Route:
    route_tables.check_keys(entry, ROUTE_KEYS)
    path, phase = entry.get("path"), entry.get("phase")
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError("path must look like /group/route_name")
    if not isinstance(phase, int) or isinstance(phase, bool) or not 1 <= phase <= 4:
        raise ValueError("phase must be 1, 2, 3 or 4")
    token_mode = entry.get("token", "user")
    if token_mode not in ("user", "admin"):
        raise ValueError('token must be "user" or "admin"')

    def paths(key: str) -> tuple[FieldPath, ...]:
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of field paths")
        return tuple(FieldPath.parse(v) for v in value)

    bind = paths("bind")
    fill = paths("fill")
    bind_any = paths("bind_any")
    if len(bind_any) == 1 or any(f.has_lists for f in bind_any):
        raise ValueError("bind_any names two fields or more, none with [] in its path")
    if not {f.text for f in fill} <= {b.text for b in bind}:
        raise ValueError("every fill field must also be a bind field")

    def values(key: str) -> tuple[tuple[FieldPath, tuple[object, ...]], ...]:
        table = entry.get(key, {})
        if not isinstance(table, dict) or not all(
            isinstance(v, list) and v and all(isinstance(x, str | int | float) for x in v) for v in table.values()
        ):
            raise ValueError(f"{key} must map field paths to non-empty lists of values")
        return tuple((FieldPath.parse(k), tuple(v)) for k, v in table.items())

    peer_table = entry.get("peer", {})
    if not isinstance(peer_table, dict) or not all(isinstance(v, str) for v in peer_table.values()):
        raise ValueError("peer must map a field path to the field path of its conversation ID")
    peer = tuple((FieldPath.parse(k), FieldPath.parse(v)) for k, v in peer_table.items())
    if any(f.has_lists or c.has_lists for f, c in peer):
        raise ValueError("peer fields name one user and one conversation: no [] in their paths")
    opaque = entry.get("opaque", False)
    if not isinstance(opaque, bool):
        raise ValueError("opaque must be true or false")
    rate_class = entry.get("class")
    if rate_class is not None and rate_class not in RATE_CLASSES:
        raise ValueError(f"class must be one of {', '.join(RATE_CLASSES)} (the rate limits' classes)")
    answer = entry.get("answer")
    if answer is not None and answer not in ANSWERS:
        raise ValueError(f"answer must be one of {sorted(ANSWERS)}")
    route = Route(
        path=path,
        phase=phase,
        token_mode=token_mode,
        bind=bind,
        fill=frozenset(f.text for f in fill),
        bind_any=bind_any,
        bind_each=paths("bind_each"),
        bind_platform=paths("bind_platform"),
        allow=values("allow"),
        refuse=values("refuse"),
        peer=peer,
        drop=paths("drop"),
        conversations=paths("conversations"),
        groups=paths("groups"),
        changes_members=paths("changes_members"),
        object_names=paths("object_names"),
        form_data_ids=paths("form_data_ids"),
        opaque=opaque,
        answer=answer,
        rate_class=rate_class,
    )
    if opaque and (route.reads_body or answer is not None):
        raise ValueError("opaque passes the body on untouched: no rule may read it, and no answer")
    if token_mode == "admin" and not (route.bind and route.fill and route.allow):
        # The admin token acts for anyone: only with the sender bound to the caller and the content restricted.
        raise ValueError('token = "admin" needs bind, fill and allow, so the caller can act only as themselves')
    return route


ROUTE_TABLE: web.AppKey[RouteTable] = web.AppKey("route_table", RouteTable)
