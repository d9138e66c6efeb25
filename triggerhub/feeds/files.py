"""File-watch feed (watchdog): created, modified, deleted and moved files in one directory.

Bursts of changes to one path are debounced into one event. The files already reported are a
cursor (path -> [mtime_ns, size]) stored with each event, so a restart fires only what changed
while the hub was down, and event ids (path + kind + mtime + size) let the store drop repeats.
Debounce windows use the event loop's monotonic time: they measure real filesystem bursts.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from triggerhub.clock import Clock
from triggerhub.errors import ApiError, BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext
from triggerhub.feeds.lifecycle import FeedTask, hand_over, ignore_failure
from triggerhub.model import JSON, TriggerEvent

log = logging.getLogger(__name__)

KINDS = ("created", "modified", "deleted", "moved")
EVENT_TYPE = "triggerhub.feed.file"
CURSOR_KEY = "seen"
QUEUE_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class FilesConfig:
    directory: str
    patterns: tuple[str, ...] = ("*",)
    kinds: tuple[str, ...] = KINDS
    debounce_ms: int = 200
    recursive: bool = False

    def to_json(self) -> dict[str, JSON]:
        return {"directory": self.directory, "patterns": list(self.patterns), "kinds": list(self.kinds),
                "debounceMs": self.debounce_ms, "recursive": self.recursive}

    def matches(self, path: str) -> bool:
        relative = os.path.relpath(path, self.directory)
        if not self.recursive and os.sep in relative:
            return False
        return any(fnmatch.fnmatch(relative if "/" in p else os.path.basename(path), p) for p in self.patterns)


def parse_files_config(params: Mapping[str, JSON]) -> FilesConfig:
    directory = params.get("directory")
    if not isinstance(directory, str) or not os.path.isabs(directory) or not os.path.isdir(directory):
        raise BadRequest(f"directory parameter '{directory}' must be the absolute path of an existing directory")
    patterns = params.get("patterns", ["*"])
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise BadRequest(f"patterns parameter '{patterns}' must be a list of glob patterns like ['*.csv']")
    kinds = params.get("kinds", list(KINDS))
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise BadRequest(f"kinds parameter '{kinds}' must list some of {', '.join(KINDS)}")
    debounce_ms = params.get("debounceMs", 200)
    if isinstance(debounce_ms, bool) or not isinstance(debounce_ms, int) or debounce_ms < 0:
        raise BadRequest(f"debounceMs parameter '{debounce_ms}' must be an integer >= 0")
    return FilesConfig(os.path.normpath(directory), tuple(patterns), tuple(kinds), debounce_ms,
                       bool(params.get("recursive", False)))


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    path: str
    dest_path: str | None = None


def merge(earlier: Change, later: Change) -> Change | None:
    """One change standing for two to the same path within a debounce window (None: nothing)."""
    if earlier.kind == "created" and later.kind == "modified":
        return earlier
    if earlier.kind == "created" and later.kind == "deleted":
        return None
    return later


class _Handler(FileSystemEventHandler):
    def __init__(self, put: Callable[[Change], None]) -> None:
        self._put = put

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in KINDS:
            return
        dest = os.fsdecode(event.dest_path) if event.event_type == "moved" else None
        self._put(Change(event.event_type, os.fsdecode(event.src_path), dest))


class FileFeed:
    def __init__(self, config: FilesConfig, *, trigger: str, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("files", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._load_cursor = load_cursor
        self._seen: dict[str, list[int]] = {}
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._stopping = threading.Event()

    async def start(self, emit: CursorEmit) -> None:
        if self._observer is not None:
            return
        self._stopping.clear()
        stored = await self._load_cursor(CURSOR_KEY)
        self._seen = json.loads(stored) if stored else {}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=QUEUE_SIZE)
        observer = Observer()
        observer.schedule(_Handler(lambda change: hand_over(change, queue, loop, self._stopping)),
                          self._config.directory, recursive=self._config.recursive)
        try:
            observer.start()
        except OSError as exc:
            raise FeedError(f"cannot watch directory {self._config.directory}: {exc}") from exc
        self._observer = observer
        try:
            for change in self._changes_while_down():  # after the observer runs, so nothing falls between
                await self._emit(change, emit)
        except ApiError as exc:
            await self.stop()
            raise FeedError(f"the hub refused a change in {self._config.directory}: {exc.message}") from exc
        await self._run.start(self._consume(queue, emit))
        log.info("%s watching %s", self._run.label, self._config.directory)

    async def stop(self) -> None:
        self._stopping.set()  # releases watchdog's thread if it waits on a full queue
        observer, self._observer = self._observer, None
        await self._run.stop()
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join)

    def _changes_while_down(self) -> list[Change]:
        present = {str(p): p for p in self._scan()}
        changes = [Change("deleted", path) for path in self._seen if path not in present]
        for path, p in sorted(present.items()):
            known = self._seen.get(path)
            if known is None:
                changes.append(Change("created", path))
            elif known != _signature(p):
                changes.append(Change("modified", path))
        return changes

    def _scan(self) -> list[Path]:
        root = Path(self._config.directory)
        candidates = root.rglob("*") if self._config.recursive else root.iterdir()
        return [p for p in candidates if p.is_file() and self._config.matches(str(p))]

    async def _consume(self, queue: asyncio.Queue[Change], emit: CursorEmit) -> None:
        loop = asyncio.get_running_loop()
        pending: dict[str, tuple[Change | None, float]] = {}  # path -> (merged change, due loop time)
        while True:
            due_at = min((due for _, due in pending.values()), default=None)
            try:
                async with asyncio.timeout_at(due_at):
                    change = await queue.get()
            except TimeoutError:
                now = loop.time()
                for path in [p for p, (_, due) in pending.items() if due <= now]:
                    ready, _ = pending.pop(path)
                    if ready is not None:
                        await self._emit_or_stop(ready, emit)
                continue
            if not self._config.matches(change.path) and not (
                    change.dest_path and self._config.matches(change.dest_path)):
                continue
            merged: Change | None = change
            if change.path in pending and (previous := pending[change.path][0]) is not None:
                merged = merge(previous, change)
            pending[change.path] = (merged, loop.time() + self._config.debounce_ms / 1000)

    async def _emit_or_stop(self, change: Change, emit: CursorEmit) -> None:
        try:
            await self._emit(change, emit)
        except ApiError as exc:  # refused for good: the cursor stays before the change
            self._run.refused(exc, f"a change of {change.path}")
            await asyncio.Event().wait()  # until stop() cancels us

    async def _emit(self, change: Change, emit: CursorEmit) -> None:
        target = change.dest_path or change.path
        known = self._seen.get(change.path)
        if change.kind == "deleted" or change.kind == "moved":
            self._seen.pop(change.path, None)
        try:
            stat = os.stat(target) if change.kind != "deleted" else None
        except FileNotFoundError:
            return  # gone again before the debounce window closed; its delete event follows
        if stat is not None and self._config.matches(target):
            self._seen[target] = [stat.st_mtime_ns, stat.st_size]
        signature = [stat.st_mtime_ns, stat.st_size] if stat is not None else (known or [0, 0])
        if change.kind == "modified" and known == signature:
            return  # already reported (a restart's rescan, or a metadata-only touch)
        if change.kind not in self._config.kinds:
            return
        data: dict[str, JSON] = {"path": change.path, "kind": change.kind, "size": signature[1],
                                 "mtime": signature[0] // 1_000_000}
        if change.dest_path:
            data["dest_path"] = change.dest_path
        key = json.dumps([change.kind, change.path, change.dest_path, signature])
        event = TriggerEvent(id=f"file:{self._run.trigger}:{hashlib.sha256(key.encode()).hexdigest()[:32]}",
                             source=f"file://{self._config.directory}", type=f"{EVENT_TYPE}.{change.kind}",
                             trigger=self._run.fqn, subject=change.path, data=data,
                             time_ms=self._run.clock.now_ms())
        cursor = (CURSOR_KEY, json.dumps(self._seen, sort_keys=True))
        await self._run.store(f"storing {change.kind} {change.path}", lambda: emit(event, cursor=cursor))
        log.info("%s: %s %s", self._run.label, change.kind, change.path)


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]


# --------------------------------------------------------------------------- the feed kind


def _parse(params: Mapping[str, JSON], _ctx: ParseContext) -> dict[str, JSON]:
    return parse_files_config(params).to_json()


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> FileFeed:
    return FileFeed(parse_files_config(config), trigger=ctx.trigger, clock=ctx.clock, tasks=ctx.tasks,
                    load_cursor=ctx.load_cursor, on_failed=ctx.on_failed)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("files", "watch", "Fire a trigger when files in a directory are created, modified, "
                          "deleted or moved", ("directory", "patterns", "kinds", "debounceMs", "recursive")),
    parse=_parse, build=_build,
)
