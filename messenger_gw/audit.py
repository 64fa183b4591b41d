"""The admin audit log: one entry per admin call, successful or not, in a bounded store stream.

Each entry: ``time`` (unix ms), ``actor`` (``key:<name>``, ``jwt:<sub>``, or ``-``
when authentication failed), ``operation``, ``target``, ``reason``, ``outcome``
(``ok`` or what went wrong), ``operationID``, and ``detail`` (a short JSON
object: per-platform results, counts). The stream keeps about
``AUDIT_MAX_ENTRIES`` entries (trimmed in whole blocks, oldest first).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from . import keys
from .store import Store, StoreError

log = logging.getLogger(__name__)

FIELDS = ("time", "actor", "operation", "target", "reason", "outcome", "operationID", "detail")
SCAN_CHUNK = 200


@dataclasses.dataclass
class AuditEntry:
    operation: str
    actor: str = "-"
    target: str = ""
    reason: str = ""
    outcome: str = "ok"
    operation_id: str = ""
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    time_ms: int = 0

    def fields(self) -> dict[str, bytes]:
        return {
            "time": str(self.time_ms).encode(),
            "actor": self.actor.encode(),
            "operation": self.operation.encode(),
            "target": self.target.encode(),
            "reason": self.reason.encode(),
            "outcome": self.outcome.encode(),
            "operationID": self.operation_id.encode(),
            "detail": orjson.dumps(self.detail),
        }

    @staticmethod
    def as_json(entry_id: str, fields: Mapping[str, bytes]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": entry_id}
        for name in FIELDS:
            raw = fields.get(name, b"")
            out[name] = (
                int(raw or 0) if name == "time" else orjson.loads(raw or b"{}") if name == "detail" else raw.decode()
            )
        return out


class AuditLog:
    def __init__(self, store: Store, *, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._max_entries = max_entries
        self._clock = clock

    async def append(self, entry: AuditEntry) -> None:
        entry.time_ms = int(self._clock() * 1000)
        try:
            await self._store.append(keys.AUDIT_STREAM, entry.fields(), max_len=self._max_entries)
        except StoreError as exc:
            # The store is down: the log line keeps the record (no secrets are in it).
            log.error("audit entry not stored (%s): %s", exc, orjson.dumps(AuditEntry.as_json("", entry.fields())))

    async def read(
        self, *, before: str | None, limit: int, filters: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first: up to ``limit`` entries older than ``before`` matching every filter, and the next cursor."""
        found: list[dict[str, Any]] = []
        cursor = before
        while len(found) < limit:
            chunk = await self._store.read_range_reverse(keys.AUDIT_STREAM, before=cursor, count=SCAN_CHUNK)
            for entry in chunk:
                cursor = entry.id
                if all(entry.fields.get(k, b"").decode() == v for k, v in filters.items()):
                    found.append(AuditEntry.as_json(entry.id, entry.fields))
                    if len(found) == limit:
                        break
            if len(chunk) < SCAN_CHUNK:
                return found, (cursor if len(found) == limit else None)
        return found, cursor


AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("audit_log", AuditLog)
