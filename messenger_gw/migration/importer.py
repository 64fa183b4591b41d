"""``messenger-gw import``: the app's users, friendships, groups and (when asked) history, created in OpenIM.

Every call is OpenIM's REST API with the admin token (``AdminTokenManager.call``), paced by one rate for the
whole run and at most ``concurrency`` at a time, so a migration does not starve live traffic. The kinds go in
order (users, friendships, groups, messages), since each needs the one before.

Idempotent and resumable: what a run settles is recorded in the store (``keys.import_done``), so a run
stopped anywhere and started again skips it; and each step also asks OpenIM what it already holds (an
existing user, friend, group or message is skipped, never made twice), so even without the checkpoint a
second run creates nothing. A failure OpenIM answers (an errCode) is recorded as failed and not tried again
by a later run; a failure to reach OpenIM is not recorded, so a later run tries again.

* Users: ``/user/account_check`` first, then ``/user/user_register`` in batches. OpenIM fails a whole batch
  when one user exists (1102) or one is refused: the batch is split in halves and each retried, down to the
  one user, who is then skipped (1102) or failed with OpenIM's reason.
* Friendships: ``/friend/import_friend`` (admin), up to 1000 friends of one owner a call, split the same way
  on a refusal; a pair whose owner already has the friend (``/friend/get_designated_friends``) is skipped.
* Groups: ``/group/create_group`` with the group's own ID, owner, admins and up to 1000 members, the rest by
  ``/group/invite_user_to_group`` 1000 at a time; an existing group (``/group/get_groups_info``) is skipped
  and only given the members it lacks.
* Messages: ``/msg/send_msg`` as the original sender with the original ``sendTime``, in each conversation's
  order (one conversation is never sent two messages at once), ``notOfflinePush`` set. Before a message is
  sent its conversation records it in flight; a run stopped between the send and the record looks for it
  among the conversation's last messages in OpenIM before sending it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiolimiter import AsyncLimiter
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from messenger_gw import keys
from messenger_gw.openim import AdminTokenManager, OpenIMAPIError, OpenIMClient, OpenIMError
from messenger_gw.operation_id import new_operation_id
from messenger_gw.store import Store

from . import export
from .export import FRIENDSHIPS, GROUPS, KINDS, MESSAGES, USERS, BadLine, Friendship, Group, Line, Message, User

log = logging.getLogger(__name__)

T = TypeVar("T")
PARAM_MAX_LENGTH = 1000  # protocol:constant/limit.go: the most IDs one create, invite or import call takes
USER_BATCH = 100
REGISTERED_ALREADY, GROUP_ID_EXISTED = 1102, 1202
RECENT_MESSAGES = 10  # how far back an in-flight message is looked for in its conversation
DONE_CREATED, DONE_SKIPPED, DONE_FAILED = b"created", b"skipped", b"failed"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    export_dir: Path
    messages: bool = False  # import messages.jsonl too
    dry_run: bool = False
    concurrency: int = 4
    rate: float = 20.0  # OpenIM calls per second, for the whole run
    checkpoint: str = "default"
    progress: bool = True  # a progress bar when stderr is a terminal


class Report:
    """What the run did, per kind: created, skipped, failed (with the line and the reason)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.failures: list[dict[str, Any]] = []

    def created(self, kind: str) -> None:
        self.counts[kind]["would_create" if self.options.dry_run else "created"] += 1

    def skipped(self, kind: str) -> None:
        self.counts[kind]["skipped"] += 1

    def failed(self, line: Line, key: str, reason: str) -> None:
        self.counts[line.kind]["failed"] += 1
        self.failures.append({"kind": line.kind, "line": line.number, "id": key, "reason": reason})

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.options.checkpoint,
            "dryRun": self.options.dry_run,
            "kinds": {kind: dict(counts) for kind, counts in self.counts.items() if counts},
            "failures": sorted(self.failures, key=lambda f: (KINDS.index(f["kind"]), f["line"])),
        }

    def summary(self) -> list[str]:
        created = "would create" if self.options.dry_run else "created"
        lines = []
        for kind, counts in self.counts.items():
            if counts:
                made = counts["would_create" if self.options.dry_run else "created"]
                lines.append(f"{kind}: {made} {created}, {counts['skipped']} skipped, {counts['failed']} failed")
        lines += [f"  {f['kind']} line {f['line']} ({f['id']}): {f['reason']}" for f in self.failures]
        return lines or ["nothing to import"]


class Checkpoint:
    """What earlier runs settled, in the store; a dry run reads it and writes nothing."""

    def __init__(self, store: Store, name: str, *, dry_run: bool) -> None:
        self._store = store
        self._name = name
        self._dry_run = dry_run

    async def load(self, kind: str) -> dict[str, bytes]:
        return await self._store.hgetall(keys.import_done(self._name, kind))

    async def settle(self, kind: str, key: str, outcome: bytes) -> None:
        if not self._dry_run:
            await self._store.hset(keys.import_done(self._name, kind), {key: outcome})

    async def in_flight(self) -> dict[str, bytes]:
        return await self._store.hgetall(keys.import_in_flight(self._name))

    async def sending(self, conversation_id: str, message_id: str) -> None:
        if not self._dry_run:
            await self._store.hset(keys.import_in_flight(self._name), {conversation_id: message_id.encode()})


def reason(exc: OpenIMError) -> str:
    if isinstance(exc, OpenIMAPIError):
        detail = exc.detail if len(exc.detail) <= 200 and "\n" not in exc.detail else ""
        return f"OpenIM answered {exc.errcode} {exc.msg}" + (f" ({detail})" if detail else "")
    return f"OpenIM could not be reached ({type(exc).__name__}); a later run tries again"


class Importer:
    def __init__(
        self,
        client: OpenIMClient,
        tokens: AdminTokenManager,
        checkpoint: Checkpoint,
        options: Options,
        *,
        console: Console | None = None,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._checkpoint = checkpoint
        self.options = options
        self.report = Report(options)
        self._limiter = AsyncLimiter(options.rate, 1)
        self._slots = asyncio.Semaphore(options.concurrency)
        # The export's users that exist in OpenIM now, or will once a dry run's users are created.
        self._users_known: set[str] = set()
        console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, disable=not (options.progress and console.is_terminal), transient=False,
        )  # fmt: skip

    async def run(self) -> Report:
        with self._progress:
            for kind in KINDS:
                path = self.options.export_dir / f"{kind}.jsonl"
                if kind == MESSAGES and not self.options.messages:
                    continue
                if path.is_file():
                    await self._import(kind, path)
        return self.report

    # -- OpenIM ----------------------------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """One call with the admin token, at the run's pace."""
        async with self._limiter:
            return await self._tokens.call(
                lambda token: self._client.call(path, body, operation_id=new_operation_id(), token=token)
            )

    async def _in_halves(
        self, items: Sequence[T], send: Callable[[Sequence[T]], Awaitable[None]]
    ) -> list[tuple[T, OpenIMAPIError | None]]:
        """Send ``items`` at once; when OpenIM refuses, each half again, down to the item it refuses."""
        try:
            await send(items)
        except OpenIMAPIError as exc:
            if len(items) == 1:
                return [(items[0], exc)]
            middle = len(items) // 2
            return [*await self._in_halves(items[:middle], send), *await self._in_halves(items[middle:], send)]
        return [(item, None) for item in items]

    async def _registered(self, user_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(user_ids)), PARAM_MAX_LENGTH):
            data = await self.call("/user/account_check", {"checkUserIDs": chunk})
            found |= {r["userID"] for r in (data or {}).get("results") or [] if r.get("accountStatus") == 1}
        return found

    # -- reading ---------------------------------------------------------------------------------------------

    async def _import(self, kind: str, path: Path) -> None:
        if kind == MESSAGES:
            await self._messages(path)
            return
        records: list[Any] = []
        seen: dict[str, int] = {}
        for item in export.read(path, kind):
            if isinstance(item, tuple):
                line, bad = item
                self.report.failed(line, "", str(bad))
            elif item.key in seen:
                self.report.failed(item.line, item.key, f"given twice: first at line {seen[item.key]}")
            else:
                seen[item.key] = item.line.number
                records.append(item)
        done = await self._checkpoint.load(kind)
        task = self._progress.add_task(kind, total=len(records))
        pending = []
        for record in records:
            if record.key in done:
                # Settled by an earlier run: created, skipped, or refused by OpenIM (which would refuse it again).
                self._settled_before(record, done[record.key])
                self._progress.advance(task)
            else:
                pending.append(record)
        if kind == USERS:
            self._users_known |= {r.user_id for r in records if done.get(r.key) in (DONE_CREATED, DONE_SKIPPED)}
            await self._users(pending, task)
        elif kind == FRIENDSHIPS:
            await self._friendships(pending, task)
        else:
            await self._groups(pending, task)

    def _settled_before(self, record: User | Friendship | Group | Message, outcome: bytes) -> None:
        if outcome == DONE_FAILED:
            self.report.failed(record.line, record.key, "refused by OpenIM in an earlier run (see its report)")
        else:
            self.report.skipped(record.line.kind)

    async def _each(self, items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
        """``work`` for every item, at most ``concurrency`` at once."""

        async def one(item: T) -> None:
            async with self._slots:
                await work(item)

        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))

    async def _outcome(self, kind: str, record: User | Friendship | Group, error: OpenIMError | None) -> None:
        if error is None:
            if isinstance(record, User):
                self._users_known.add(record.user_id)
            self.report.created(kind)
            await self._checkpoint.settle(kind, record.key, DONE_CREATED)
        elif isinstance(error, OpenIMAPIError):
            self.report.failed(record.line, record.key, reason(error))
            await self._checkpoint.settle(kind, record.key, DONE_FAILED)
        else:
            self.report.failed(record.line, record.key, reason(error))

    async def _skip(self, kind: str, record: User | Friendship | Group) -> None:
        if isinstance(record, User):
            self._users_known.add(record.user_id)
        self.report.skipped(kind)
        await self._checkpoint.settle(kind, record.key, DONE_SKIPPED)

    # -- users -----------------------------------------------------------------------------------------------

    async def _users(self, users: list[User], task: Any) -> None:
        async def batch(chunk: list[User]) -> None:
            try:
                existing = await self._registered([u.user_id for u in chunk])
            except OpenIMError as exc:
                for user in chunk:
                    await self._outcome(USERS, user, exc)
                self._progress.advance(task, len(chunk))
                return
            new = [u for u in chunk if u.user_id not in existing]
            for user in chunk:
                if user.user_id in existing:
                    await self._skip(USERS, user)
            if self.options.dry_run:
                for user in new:
                    self._users_known.add(user.user_id)
                    self.report.created(USERS)
            elif new:
                try:
                    results = await self._in_halves(new, self._register)
                except OpenIMError as exc:
                    results = [(user, exc) for user in new]  # type: ignore[misc]
                for user, error in results:
                    if isinstance(error, OpenIMAPIError) and error.errcode == REGISTERED_ALREADY:
                        await self._skip(USERS, user)  # registered meanwhile: never registered twice
                    else:
                        await self._outcome(USERS, user, error)
            self._progress.advance(task, len(chunk))

        await self._each(_chunks(users, USER_BATCH), batch)

    async def _register(self, users: Sequence[User]) -> None:
        body = [{"userID": u.user_id, "nickname": u.nickname, "faceURL": u.face_url, "ex": u.ex} for u in users]
        await self.call("/user/user_register", {"users": body})

    # -- friendships -----------------------------------------------------------------------------------------

    async def _friendships(self, pairs: list[Friendship], task: Any) -> None:
        by_owner: dict[str, list[Friendship]] = defaultdict(list)
        for pair in pairs:
            by_owner[pair.user_id].append(pair)

        async def owner_batch(chunk: list[Friendship]) -> None:
            owner = chunk[0].user_id
            new = chunk
            try:
                data = await self.call(
                    "/friend/get_designated_friends",
                    {"ownerUserID": owner, "friendUserIDs": [p.friend_user_id for p in chunk]},
                )
                have = {f["friendUser"]["userID"] for f in (data or {}).get("friendsInfo") or []}
                new = [p for p in chunk if p.friend_user_id not in have]
                for pair in chunk:
                    if pair.friend_user_id in have:
                        await self._skip(FRIENDSHIPS, pair)
                if self.options.dry_run:
                    for _ in new:
                        self.report.created(FRIENDSHIPS)
                    return

                async def send(some: Sequence[Friendship]) -> None:
                    body = {"ownerUserID": owner, "friendUserIDs": [p.friend_user_id for p in some]}
                    await self.call("/friend/import_friend", body)

                results = await self._in_halves(new, send) if new else []
            except OpenIMError as exc:  # nothing of the batch counted yet but its skips
                results = [(pair, exc) for pair in new]  # type: ignore[misc]
            finally:
                self._progress.advance(task, len(chunk))
            for pair, error in results:
                await self._outcome(FRIENDSHIPS, pair, error)

        batches = [chunk for owned in by_owner.values() for chunk in _chunks(owned, PARAM_MAX_LENGTH)]
        await self._each(batches, owner_batch)

    # -- groups ----------------------------------------------------------------------------------------------

    async def _groups(self, groups: list[Group], task: Any) -> None:
        async def one(group: Group) -> None:
            try:
                await self._group(group)
            except OpenIMError as exc:
                await self._outcome(GROUPS, group, exc)
            finally:
                self._progress.advance(task)

        await self._each(groups, one)

    async def _group(self, group: Group) -> None:
        wanted = [group.owner, *group.admins, *group.members]
        data = await self.call("/group/get_groups_info", {"groupIDs": [group.group_id]})
        if (data or {}).get("groupInfos"):
            if not self.options.dry_run:
                await self._add_missing_members(group)
            await self._skip(GROUPS, group)
            return
        missing = set(wanted) - self._users_known
        unknown = sorted(missing - await self._registered(list(missing))) if missing else []
        if unknown:
            role = "the owner" if group.owner in unknown else "members"
            shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            self.report.failed(group.line, group.key, f"{role} not in OpenIM: {shown}")
            return
        if self.options.dry_run:
            self.report.created(GROUPS)
            return
        first, *rest = _chunks(list(group.members), PARAM_MAX_LENGTH) or [[]]
        info = {"groupID": group.group_id, "groupName": group.name, "groupType": 2} | group.info
        body = {"ownerUserID": group.owner, "adminUserIDs": list(group.admins), "memberUserIDs": first,
                "groupInfo": info}  # fmt: skip
        try:
            await self.call("/group/create_group", body)
        except OpenIMAPIError as exc:
            if exc.errcode != GROUP_ID_EXISTED:
                await self._outcome(GROUPS, group, exc)
                return
            await self._add_missing_members(group)  # created meanwhile, by this import stopped before or another
            await self._skip(GROUPS, group)
            return
        for chunk in rest:
            await self.call("/group/invite_user_to_group", {"groupID": group.group_id, "invitedUserIDs": chunk})
        await self._outcome(GROUPS, group, None)

    async def _add_missing_members(self, group: Group) -> None:
        """A group created by an earlier run that stopped before inviting all its members gets the rest."""
        present: set[str] = set()
        page = 1
        while True:
            data = await self.call(
                "/group/get_group_member_list",
                {"groupID": group.group_id, "pagination": {"pageNumber": page, "showNumber": 500}, "filter": 0},
            )
            members = (data or {}).get("members") or []
            present |= {m["userID"] for m in members}
            if len(members) < 500:
                break
            page += 1
        missing = [u for u in group.members if u not in present]
        for chunk in _chunks(missing, PARAM_MAX_LENGTH):
            await self.call("/group/invite_user_to_group", {"groupID": group.group_id, "invitedUserIDs": chunk})

    # -- messages --------------------------------------------------------------------------------------------

    async def _messages(self, path: Path) -> None:
        """Each conversation's messages in the file's order, conversations side by side: a conversation always
        goes to the same worker, which sends one message at a time."""
        done = await self._checkpoint.load(MESSAGES)
        in_flight = await self._checkpoint.in_flight()
        with path.open("rb") as lines:
            total = sum(1 for raw in lines if raw.strip())
        task = self._progress.add_task(MESSAGES, total=total)
        queues: list[asyncio.Queue[Message | None]] = [
            asyncio.Queue(maxsize=100) for _ in range(self.options.concurrency)
        ]
        seen: dict[str, int] = {}

        async def worker(queue: asyncio.Queue[Message | None]) -> None:
            stopped: set[str] = set()  # conversations OpenIM could not be reached for: the rest waits for a rerun
            while (message := await queue.get()) is not None:
                try:
                    await self._message(message, done, in_flight, stopped)
                finally:
                    self._progress.advance(task)

        async with asyncio.TaskGroup() as group:
            for queue in queues:
                group.create_task(worker(queue))
            for item in export.read(path, MESSAGES):
                if isinstance(item, tuple):
                    self.report.failed(item[0], "", str(item[1]))
                    self._progress.advance(task)
                elif not isinstance(item, Message):
                    raise TypeError(f"{path} gave a {type(item).__name__}")
                elif item.key in seen:
                    self.report.failed(item.line, item.key, f"given twice: first at line {seen[item.key]}")
                    self._progress.advance(task)
                else:
                    seen[item.key] = item.line.number
                    conversation = item.conversation_id.encode()
                    await queues[zlib.crc32(conversation) % len(queues)].put(item)
            for queue in queues:
                await queue.put(None)

    async def _message(
        self, message: Message, done: dict[str, bytes], in_flight: dict[str, bytes], stopped: set[str]
    ) -> None:
        conversation = message.conversation_id
        if message.key in done:
            self._settled_before(message, done[message.key])
            return
        if conversation in stopped:
            self.report.failed(message.line, message.key, "not sent: an earlier message of its conversation was not")
            return
        if self.options.dry_run:
            self.report.created(MESSAGES)
            return
        try:
            if in_flight.get(conversation) == message.key.encode() and await self._stored(message):
                # Sent by a run that stopped before it could record it.
                self.report.skipped(MESSAGES)
                await self._checkpoint.settle(MESSAGES, message.key, DONE_SKIPPED)
                return
            await self._checkpoint.sending(conversation, message.key)
            await self.call("/msg/send_msg", _send_msg_body(message))
        except OpenIMAPIError as exc:
            # Refused for good (the sender left the group, a content OpenIM does not take): the conversation
            # goes on without it, and a later run does not send it after newer ones.
            self.report.failed(message.line, message.key, reason(exc))
            await self._checkpoint.settle(MESSAGES, message.key, DONE_FAILED)
            return
        except OpenIMError as exc:
            stopped.add(conversation)
            self.report.failed(message.line, message.key, reason(exc))
            return
        self.report.created(MESSAGES)
        await self._checkpoint.settle(MESSAGES, message.key, DONE_CREATED)

    async def _stored(self, message: Message) -> bool:
        """Whether OpenIM holds ``message`` among its conversation's last messages (sender, send time, type
        and content alike): the check before sending again a message an earlier run may have sent."""
        conversation = message.conversation_id
        data = await self.call(
            "/msg/get_conversations_has_read_and_max_seq",
            {"userID": message.send_id, "conversationIDs": [conversation]},
        )
        max_seq = int(((data or {}).get("seqs") or {}).get(conversation, {}).get("maxSeq", 0))
        if max_seq <= 0:
            return False
        begin = max(1, max_seq - RECENT_MESSAGES + 1)
        ranges = [{"conversationID": conversation, "begin": begin, "end": max_seq, "num": max_seq - begin + 1}]
        data = await self.call("/msg/pull_msg_by_seq", {"userID": message.send_id, "seqRanges": ranges, "order": 0})
        pulled = (((data or {}).get("msgs") or {}).get(conversation) or {}).get("Msgs") or []
        return any(_same(message, stored) for stored in pulled)


def _send_msg_body(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sendID": message.send_id,
        "senderPlatformID": message.sender_platform_id,
        "senderNickname": message.sender_nickname,
        "senderFaceURL": message.sender_face_url,
        "content": message.content,
        "contentType": message.content_type,
        "sessionType": message.session_type,
        "sendTime": message.send_time,
        "notOfflinePush": True,  # history, not news: no push to anybody's phone
        "ex": message.ex,
    }
    body["groupID" if message.group_id else "recvID"] = message.group_id or message.recv_id
    return body


def _same(message: Message, stored: dict[str, Any]) -> bool:
    if (stored.get("sendID"), stored.get("sendTime"), stored.get("contentType")) != (
        message.send_id, message.send_time, message.content_type,
    ):  # fmt: skip
        return False
    with contextlib.suppress(ValueError, TypeError):
        return bool(orjson.loads(base64.b64decode(stored.get("content") or "")) == message.content)
    return False


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


__all__ = ["BadLine", "Checkpoint", "Importer", "Options", "Report"]
