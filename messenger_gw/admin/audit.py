"""The admin audit log: one entry per admin call, successful or not, in a bounded store stream.

Each entry: ``time`` (unix ms), ``actor`` (``key:<name>``, ``jwt:<sub>``, or ``-``
when authentication failed), ``operation``, ``target``, ``reason``, ``outcome``
(``ok`` or what went wrong), ``operationID``, and ``detail`` (a short JSON
object: per-platform results, counts). The stream keeps about
``AUDIT_MAX_ENTRIES`` entries (trimmed in whole blocks, oldest first).

An entry the store does not take is never only dropped: it goes to the error
log whole, and waits in a bounded in-process queue that :func:`retrying_writes`
writes to the store every few seconds, oldest first, keeping its original
``time``. Beyond :data:`RETRY_QUEUE_SIZE` waiting entries, or when the
gateway stops before the store is back, the oldest are given up: the log line
is then the only record, and ``messenger_gw_audit_writes_total{outcome="dropped"}``
counts them (an alert rule watches it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from messenger_gw import keys
from messenger_gw.background import running
from messenger_gw.metrics import Metrics
from messenger_gw.store import Store, StoreError

log = logging.getLogger(__name__)

FIELDS = ("time", "actor", "operation", "target", "reason", "outcome", "operationID", "detail")
SCAN_CHUNK = 200
RETRY_QUEUE_SIZE = 10_000  # entries are small (well under 1 KiB): a few MB at most
RETRY_INTERVAL = 5.0
LAST_PASS_TIMEOUT = 2.0  # on shutdown, one more try for what is still waiting, no longer than this


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
    def __init__(
        self,
        store: Store,
        *,
        max_entries: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        queue_size: int = RETRY_QUEUE_SIZE,
    ) -> None:
        self._store = store
        self._max_entries = max_entries
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._queue_size = queue_size
        self._waiting: collections.deque[AuditEntry] = collections.deque()

    @property
    def waiting(self) -> int:
        """How many entries wait for the store."""
        return len(self._waiting)

    async def append(self, entry: AuditEntry) -> bool:
        """Write ``entry``: True when the store took it, False when it waits for a retry."""
        entry.time_ms = int(self._clock() * 1000)
        try:
            await self._write(entry)
        except StoreError as exc:
            # The log line keeps the whole record (no secrets are in one) whatever happens next.
            log.error(
                "audit entry not stored (%s), queued for a retry: %s",
                exc,
                orjson.dumps(AuditEntry.as_json("", entry.fields())).decode(),
            )
            self._metrics.audit_writes.labels("queued").inc()
            self._wait(entry, first=False)
            return False
        self._metrics.audit_writes.labels("stored").inc()
        return True

    async def retry_waiting(self) -> int:
        """Write the waiting entries, oldest first, until the store fails again; how many still wait."""
        while self._waiting:
            # Taken out while written, so an append that fills the queue meanwhile cannot give it up.
            entry = self._waiting.popleft()
            try:
                await self._write(entry)
            except BaseException as exc:
                # Back in front, whatever stopped the write: a cancellation (shutdown) too, at the
                # risk of a second copy if the store had taken it, rather than none.
                self._wait(entry, first=True)
                if not isinstance(exc, StoreError):
                    raise
                log.warning("audit retry pass stopped: %s (%d entries waiting)", exc, len(self._waiting))
                break
            self._metrics.audit_writes.labels("stored_late").inc()
            log.info("late audit entry stored", extra={"entryOperationID": entry.operation_id})
        self._metrics.audit_waiting.set(len(self._waiting))
        return len(self._waiting)

    async def retry_forever(self, interval: float = RETRY_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._waiting:
                await self.retry_waiting()

    def give_up_waiting(self) -> None:
        """Count what still waits as dropped: its record is only in the error log now."""
        for entry in self._waiting:
            self._dropped(entry, "the gateway stopped before the store took it")
        self._waiting.clear()
        self._metrics.audit_waiting.set(0)

    async def _write(self, entry: AuditEntry) -> None:
        await self._store.append(keys.AUDIT_STREAM, entry.fields(), max_len=self._max_entries)

    def _wait(self, entry: AuditEntry, *, first: bool) -> None:
        if first:
            self._waiting.appendleft(entry)
        else:
            self._waiting.append(entry)
        while len(self._waiting) > self._queue_size:
            self._dropped(self._waiting.popleft(), "the retry queue is full")
        self._metrics.audit_waiting.set(len(self._waiting))

    def _dropped(self, entry: AuditEntry, why: str) -> None:
        self._metrics.audit_writes.labels("dropped").inc()
        log.error(
            "audit entry given up (%s); its record is the earlier 'not stored' line",
            why,
            extra={"entryOperationID": entry.operation_id, "entryTime": entry.time_ms},
        )

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


@contextlib.asynccontextmanager
async def retrying_writes(audit: AuditLog, interval: float = RETRY_INTERVAL) -> AsyncIterator[None]:
    """Retry the waiting entries every ``interval`` s while in the block; on leaving it, once more
    (within :data:`LAST_PASS_TIMEOUT`), then give up what still waits."""
    async with running(audit.retry_forever(interval), name="audit-retry"):
        yield
    if audit.waiting:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LAST_PASS_TIMEOUT):
                await audit.retry_waiting()
        audit.give_up_waiting()


AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("audit_log", AuditLog)
