"""JSON bodies for the /im routes, and a reading of what reached OpenIM the way OpenIM's Go decoder reads it.

The bodies are built from the fields a route names (bound, filled, pinned, dropped, conversation
and group fields), spelt in any case OpenIM would still match, with values that are the caller's,
someone else's, empty, null or of the wrong type, wrapped in arbitrary other keys, and sometimes
with a key repeated verbatim, which a JSON parser collapses but the bytes forwarded still carry.

:func:`go_decode` reads forwarded bytes as ``encoding/json`` does into a struct: keys match their
field case-insensitively (Unicode simple folding), a later key overwrites an earlier one, an
object decodes into what an earlier one left (merging), and ``null`` leaves a string, number or
boolean as it was.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import strategies as st

from messenger_gw.im.route_policy import FieldPath

CALLER = "alice"
PLATFORM = 5


class Pairs(list[tuple[str, Any]]):
    """A JSON object with its keys in order, repeats kept."""


def parse_pairs(raw: bytes) -> Any:
    return json.loads(raw, object_pairs_hook=Pairs)


def _folds_equal(a: str, b: str) -> bool:
    """Go's ``strings.EqualFold``: the same length in runes, each pair equal under simple case folding."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        fx, fy = x.casefold(), y.casefold()
        if not (len(fx) == len(fy) == 1 and fx == fy) and x.lower() != y.lower() and x.upper() != y.upper():
            return False
    return True


class GoObject:
    """An object as decoded into a Go struct: one value per field, however many keys spelt it."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, Any]] = []

    def lookup(self, name: str) -> Any:
        for key, value in self.fields:
            if _folds_equal(key, name):
                return value
        return None

    def _index(self, name: str) -> int | None:
        return next((i for i, (key, _) in enumerate(self.fields) if _folds_equal(key, name)), None)

    def set(self, name: str, value: Any) -> None:
        index = self._index(name)
        if index is None:
            self.fields.append((name, _decoded(value, None)))
            return
        key, before = self.fields[index]
        if value is None and isinstance(before, str | int | float | bool):
            return  # null into a string, number or boolean: "no effect on the value"
        self.fields[index] = (key, _decoded(value, before))


def _decoded(value: Any, before: Any) -> Any:
    if isinstance(value, Pairs):
        target = before if isinstance(before, GoObject) else GoObject()
        for key, item in value:
            target.set(key, item)
        return target
    if isinstance(value, list):
        # A slice is decoded element by element over what the earlier array left in it.
        old = before if isinstance(before, list) else []
        return [_decoded(item, old[i] if i < len(old) else None) for i, item in enumerate(value)]
    return value


def go_decode(raw: bytes) -> GoObject:
    decoded = _decoded(parse_pairs(raw), None)
    assert isinstance(decoded, GoObject)
    return decoded


def go_values(node: Any, path: FieldPath) -> Iterator[Any]:
    """Every non-null value ``path`` reaches in a decoded body (for ``a[]``, each element of ``a``)."""
    yield from _walk(node, path.segments)


def _walk(node: Any, segments: tuple[tuple[str, bool], ...]) -> Iterator[Any]:
    if not isinstance(node, GoObject):
        return
    (name, each), rest = segments[0], segments[1:]
    value = node.lookup(name)
    if value is None:
        return
    children = value if each and isinstance(value, list) else [] if each else [value]
    for child in children:
        if not rest:
            if child is not None:
                yield child
        else:
            yield from _walk(child, rest)


def go_present(node: GoObject, path: FieldPath) -> bool:
    return any(True for _ in go_values(node, path))


# -- strategies ------------------------------------------------------------------------------------


def spellings(name: str) -> st.SearchStrategy[str]:
    """``name`` as the table spells it, mostly; else any spelling Go's decoder still matches to it."""
    variants = [name, name.lower(), name.upper(), name.swapcase(), name[:1].swapcase() + name[1:]]
    # Non-ASCII letters that fold to ASCII ones: the long s and the Kelvin sign.
    variants += [name.replace("s", "\u017f", 1)] if "s" in name else []
    variants += [name.replace("k", "\u212a", 1)] if "k" in name.lower() else []
    return st.sampled_from([name] * 4 + variants)


def mostly(likely: st.SearchStrategy[Any], otherwise: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``likely`` three times in four: enough bodies pass every rule to reach OpenIM and be checked there."""
    return st.integers(0, 3).flatmap(lambda i: otherwise if i == 0 else likely)


JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
USERS = mostly(st.just(CALLER), st.sampled_from(["bob", "carol", "", "Alice", "alice ", "ALICE"]) | JSON_SCALAR)


def conversation_ids(group_ids: list[str]) -> st.SearchStrategy[str]:
    """Conversation IDs the caller is a party to, and ones she is not, and ones of no known form."""
    mine = [f"sg_{g}" for g in group_ids[:1]] + ["si_alice_bob", "sn_alice_bob", "si_alice_zed", "n_si_alice_bob"]
    others = [f"sg_{g}" for g in group_ids[1:]] + ["si_bob_carol", "sn_bob_carol", "si_bob_alice", "sg_", "x_alice"]
    return st.sampled_from(mine * 2 + others) | st.text(max_size=20)


def values_for(role: str, group_ids: list[str], allowed: tuple[object, ...] = ()) -> st.SearchStrategy[Any]:
    if role == "bind":
        return USERS
    if role == "bind_each":
        return mostly(st.lists(USERS, max_size=3), JSON_SCALAR)
    if role == "bind_platform":
        return mostly(st.just(PLATFORM), st.sampled_from([1, 0, -5, 2**32 + PLATFORM, "5", True, 5.0]) | JSON_SCALAR)
    if role == "allow":
        return mostly(st.sampled_from(allowed), JSON_SCALAR | st.integers(-5, 5000))
    if role == "conversations":
        return mostly(conversation_ids(group_ids), JSON_SCALAR)
    if role == "groups":
        return mostly(st.sampled_from(group_ids[:1]), st.sampled_from(group_ids) | st.text(max_size=12) | JSON_SCALAR)
    if role == "object_names":
        return mostly(OBJECT_NAMES, JSON_SCALAR)
    if role == "form_data_ids":
        return mostly(form_data_ids(), JSON_SCALAR | st.text(max_size=12))
    return JSON


# Object names under the caller's folder, and names that only look like it.
OBJECT_NAMES = mostly(
    st.sampled_from([f"{CALLER}/a.png", f"{CALLER}/x/y", f"{CALLER}/"]),
    st.sampled_from(
        ["bob/a.png", CALLER, f"{CALLER.upper()}/a.png", f"{CALLER}_/a.png", f"/{CALLER}/a.png", "", f" {CALLER}/a"]
    ),
)
UPLOAD_FILE = "0f" * 16 + ".png"
STORAGE_KEYS = mostly(
    st.sampled_from([f"openim/direct/20250114/{CALLER}/{UPLOAD_FILE}", f"openim/direct/20250114/{CALLER}/" + "1" * 32]),
    st.sampled_from(
        [
            f"openim/direct/20250114/bob/{UPLOAD_FILE}",
            f"openim/direct/2025011/{CALLER}/{UPLOAD_FILE}",
            f"openim/direct/20250114/{CALLER}/x/{UPLOAD_FILE}",
            f"openim/direct/20250114/{CALLER}/../bob/{UPLOAD_FILE}",
            "openim/data/hash/" + "0f" * 16,
            f"x/openim/direct/20250114/{CALLER}/{UPLOAD_FILE}",
        ]
    ),
)


@st.composite
def form_data_ids(draw: st.DrawFn) -> str:
    """OpenIM's form-data upload ID (base64 without padding of the JSON of name, key and the rest), its name
    and key the caller's or not, spelt in any case, given twice, padded, broken by a newline."""
    mate: dict[str, Any] = {}
    for name, values in (("name", OBJECT_NAMES), ("key", STORAGE_KEYS), ("size", st.integers(0, 9))):
        if draw(st.integers(0, 9)) > 0:
            mate[draw(spellings(name))] = draw(JSON_SCALAR if draw(st.integers(0, 9)) == 0 else values)
    raw = orjson.dumps(mate)
    if mate and draw(st.integers(0, 4)) == 0:  # a key again, another value: Go takes the last
        name = draw(st.sampled_from(["name", "key"]))
        twin = orjson.dumps({draw(spellings(name)): draw(OBJECT_NAMES if name == "name" else STORAGE_KEYS)})
        raw = raw[:-1] + b"," + twin[1:]
    text = base64.b64encode(raw).decode()
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return text  # padded: RawStdEncoding refuses it (unless there is none to strip)
    if shape == 1:
        return text.rstrip("=")[:-2] + "\n" + text.rstrip("=")[-2:]  # Go skips the newline
    return text.rstrip("=")


@st.composite
def placed(
    draw: st.DrawFn, body: dict[str, Any], segments: tuple[tuple[str, bool], ...], values: st.SearchStrategy[Any]
) -> None:
    """Put a value at ``segments`` into ``body``, spelling every segment as Go would still match it."""
    (name, each), rest = segments[0], segments[1:]
    key = draw(spellings(name))
    if not rest:
        body[key] = draw(st.lists(values, max_size=3)) if each else draw(values)
        return
    if draw(st.integers(0, 9)) == 0:
        body[key] = draw(JSON_SCALAR)  # the wrong shape for a path that goes on
        return
    if each:
        items = body.setdefault(key, [])
        if isinstance(items, list):
            for _ in range(draw(st.integers(0, 2))):
                item: dict[str, Any] = {}
                draw(placed(item, rest, values))
                items.append(item)
        return
    child = body.setdefault(key, {})
    if isinstance(child, dict):
        draw(placed(child, rest, values))


@st.composite
def bodies(draw: st.DrawFn, fields: list[tuple[FieldPath, st.SearchStrategy[Any]]]) -> bytes:
    """A body naming some of ``fields`` (each with its values), among other keys; sometimes not an object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([b"", b"[]", b"null", b"{", b'"x"', b"{}"]) | JSON.map(orjson.dumps))
    body: dict[str, Any] = draw(st.dictionaries(st.text(min_size=1, max_size=10), JSON, max_size=3))
    for path, values in fields:
        if draw(st.integers(0, 3)) > 0:
            draw(placed(body, path.segments, values))
    raw = orjson.dumps(body)
    # A key named twice, verbatim or in another spelling: the parsed body keeps one of them, the bytes both.
    for _ in range(draw(st.integers(0, 2)) if fields and body else 0):
        path, values = draw(st.sampled_from(fields))
        twin: dict[str, Any] = {}
        draw(placed(twin, path.segments, values))
        member = orjson.dumps(twin)[1:-1]
        raw = raw[:-1] + b"," + member + b"}" if draw(st.booleans()) else b"{" + member + b"," + raw[1:]
    return raw
