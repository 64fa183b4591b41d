"""The sticker catalog: packs described in reviewed TOML files, validated whole, re-read when they change.

``STICKER_PACKS`` names a file or a directory, whose packs are those of its ``*.toml`` files in
name order. A file holds one or more packs (docs/media.md)::

    [[pack]]
    id = "classic"                 # letters, digits, '-' and '_', at most 64; unique in the catalog
    title = "Classic"
    attribution = "..."            # optional: the artwork's author and licence
    cover = "wave"                 # optional: the sticker shown for the pack; the first one otherwise

    [[pack.sticker]]
    id = "wave"                    # unique in its pack
    title = "Waving hand"          # optional: the sticker's text alternative; its id otherwise
    url = "https://cdn.example.com/stickers/classic/wave.webp"
    width = 160                    # pixels, 1 to 4096
    height = 160
    size = 10240                   # optional: bytes

The whole catalog is checked before it replaces the previous one: at start-up a bad catalog stops
the gateway (the error names the file and the pack); later, the files are looked at no more than
every ``RECHECK_SECONDS``, and a change that does not validate keeps the catalog in service, said
once in the log. Each answer's body and ETag are computed once per version of the catalog.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from messenger_gw.metrics import Metrics
from messenger_gw.settings import Settings

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0
EXAMPLE_PACKS = Path(__file__).parent / "example"  # dev mode's catalog when STICKER_PACKS is unset
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TITLE_CHARS = 100
MAX_ATTRIBUTION_CHARS = 300
MAX_URL_CHARS = 2048
MAX_DIMENSION = 4096
MAX_STICKERS_PER_PACK = 500
MAX_PACKS = 1000
PACK_KEYS = {"id", "title", "attribution", "cover", "sticker"}
STICKER_KEYS = {"id", "title", "url", "width", "height", "size"}

Signature = tuple[object, ...]


class StickerCatalogError(ValueError):
    """The catalog does not validate; the message names the file and the pack."""


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """One answer of the catalog: its JSON body and its (strong) entity tag."""

    body: bytes
    etag: str  # without quotes


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One version of the catalog: the list of packs, and each pack."""

    index: Resource
    packs: dict[str, Resource]


def parse(sources: Sequence[tuple[str, str]]) -> Snapshot:
    """The catalog of ``sources`` (name, TOML text); :class:`StickerCatalogError` at the first problem."""
    packs: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for source, text in sources:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise StickerCatalogError(f"{source}: not valid TOML: {exc}") from None
        if set(document) != {"pack"} or not isinstance(document["pack"], list) or not document["pack"]:
            raise StickerCatalogError(f"{source}: a sticker file holds [[pack]] tables and nothing else")
        for index, entry in enumerate(document["pack"], start=1):
            name = entry.get("id") if isinstance(entry, dict) else None
            where = f"{source}: pack {index} ({name if isinstance(name, str) else 'no id'})"
            try:
                pack = _pack(entry)
            except (ValueError, TypeError) as exc:
                raise StickerCatalogError(f"{where}: {exc}") from None
            if pack["id"] in seen:
                raise StickerCatalogError(f"{where}: the pack id is used by {seen[pack['id']]} too")
            seen[pack["id"]] = source
            packs.append(pack)
    if len(packs) > MAX_PACKS:
        raise StickerCatalogError(f"more than {MAX_PACKS} packs")
    resources = {pack["id"]: _resource(pack) for pack in packs}
    summaries = [_summary(pack, resources[pack["id"]].etag) for pack in packs]
    return Snapshot(_resource({"packs": summaries}), resources)


def read(path: Path | None) -> list[tuple[str, str]]:
    """The sources of the catalog at ``path``: the file, or the directory's ``*.toml`` files by name."""
    if path is None:
        return []
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    return [(str(file), file.read_text(encoding="utf-8")) for file in files]


def signature(path: Path | None) -> Signature:
    """What changes when the catalog's files do: each file's name, size and modification time."""
    if path is None:
        return ()
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    stats = [(str(f), (s := os.stat(f)).st_mtime_ns, s.st_size, s.st_ino) for f in files]
    return (path.is_dir(), *stats)


class StickerCatalog:
    def __init__(
        self,
        path: Path | None,
        *,
        max_age: int,
        metrics: Metrics | None = None,  # None: counted nowhere (check-config)
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.max_age = max_age
        self._metrics = metrics
        self._clock = clock
        try:
            self._signature = signature(path)
            self._snapshot = parse(read(path))
        except OSError as exc:
            raise StickerCatalogError(f"{path}: {exc.strerror or exc}") from None
        self._refused: Signature | None = None
        self._checked = clock()
        self._count("loaded")

    @classmethod
    def of(cls, settings: Settings, *, metrics: Metrics | None = None) -> StickerCatalog:
        """The catalog ``settings`` name: ``STICKER_PACKS``, else the shipped example in dev mode, else none."""
        path = settings.stickers.packs or (EXAMPLE_PACKS if settings.dev else None)
        return cls(path, max_age=settings.stickers.max_age, metrics=metrics)

    @property
    def pack_count(self) -> int:
        return len(self._snapshot.packs)

    def current(self) -> Snapshot:
        """The catalog in service, read again first if its files changed since it was last looked at."""
        if self.path is not None and self._clock() - self._checked >= RECHECK_SECONDS:
            self._checked = self._clock()
            self._reload()
        return self._snapshot

    def _reload(self) -> None:
        try:
            current = signature(self.path)
            if current in (self._signature, self._refused):
                return
            snapshot = parse(read(self.path))
        except (OSError, StickerCatalogError) as exc:
            current = self._refused_signature()
            if current != self._refused:  # said once per change, not at every look
                self._refused = current
                self._count("rejected")
                log.error("sticker catalog %s not reloaded, the previous one stays: %s", self.path, exc)
            return
        self._snapshot, self._signature, self._refused = snapshot, current, None
        self._count("loaded")
        log.info("sticker catalog loaded", extra={"path": str(self.path), "packs": len(snapshot.packs)})

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.sticker_catalog_loads.labels(outcome).inc()

    def _refused_signature(self) -> Signature:
        try:
            return signature(self.path)
        except OSError as exc:
            return ("unreadable", str(exc))


def _pack(entry: object) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise TypeError("a pack is a table")
    _known(entry, PACK_KEYS)
    pack_id = _identifier(entry.get("id"), "id")
    stickers_in = entry.get("sticker")
    if not isinstance(stickers_in, list) or not stickers_in:
        raise ValueError("a pack needs at least one [[pack.sticker]]")
    if len(stickers_in) > MAX_STICKERS_PER_PACK:
        raise ValueError(f"more than {MAX_STICKERS_PER_PACK} stickers")
    stickers: list[dict[str, Any]] = []
    for index, sticker_entry in enumerate(stickers_in, start=1):
        try:
            sticker = _sticker(sticker_entry)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"sticker {index}: {exc}") from None
        if any(s["id"] == sticker["id"] for s in stickers):
            raise ValueError(f"sticker {index}: the id {sticker['id']!r} is used twice in the pack")
        stickers.append(sticker)
    cover = entry.get("cover", stickers[0]["id"])
    if not isinstance(cover, str) or all(s["id"] != cover for s in stickers):
        raise ValueError(f"cover: {cover!r} is not one of the pack's sticker ids")
    pack: dict[str, Any] = {"id": pack_id, "title": _text(entry.get("title"), "title", MAX_TITLE_CHARS)}
    if "attribution" in entry:
        pack["attribution"] = _text(entry["attribution"], "attribution", MAX_ATTRIBUTION_CHARS)
    pack["cover"] = cover
    pack["stickers"] = stickers
    return pack


def _sticker(entry: object) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise TypeError("a sticker is a table")
    _known(entry, STICKER_KEYS)
    sticker_id = _identifier(entry.get("id"), "id")
    sticker: dict[str, Any] = {
        "id": sticker_id,
        "title": _text(entry.get("title", sticker_id), "title", MAX_TITLE_CHARS),
        "url": _https_url(entry.get("url")),
        "width": _whole(entry.get("width"), "width", MAX_DIMENSION),
        "height": _whole(entry.get("height"), "height", MAX_DIMENSION),
    }
    if "size" in entry:
        sticker["size"] = _whole(entry["size"], "size", 100 * 1024 * 1024)
    return sticker


def _resource(value: dict[str, Any]) -> Resource:
    body = orjson.dumps(value)
    return Resource(body, hashlib.sha256(body).hexdigest()[:32])


def _summary(pack: dict[str, Any], version: str) -> dict[str, Any]:
    cover = next(s for s in pack["stickers"] if s["id"] == pack["cover"])
    return {
        "id": pack["id"],
        "title": pack["title"],
        "version": version,  # the pack's ETag: a client refetches only the packs whose version changed
        "count": len(pack["stickers"]),
        "cover": {name: cover[name] for name in ("id", "url", "width", "height")},
    }


def _known(entry: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or ID.fullmatch(value) is None:
        raise ValueError(f"{name}: 1 to 64 letters, digits, '-' or '_', got {value!r}")
    return value


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise ValueError(f"{name}: 1 to {limit} printable characters, got {value!r}")
    return value


def _https_url(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise ValueError(f"url: an https:// URL of at most {MAX_URL_CHARS} characters, got {value!r}")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"url: an https:// URL with a host, got {value!r}")
    return value


def _whole(value: object, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{name}: a whole number from 1 to {limit}, got {value!r}")
    return value


STICKER_CATALOG: web.AppKey[StickerCatalog] = web.AppKey("sticker_catalog", StickerCatalog)
