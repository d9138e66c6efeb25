"""File-watch feed on a real directory (inotify through watchdog)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_until
from triggerhub.clock import SystemClock
from triggerhub.errors import FeedError, NotFound
from triggerhub.feeds.files import FileFeed, parse_files_config
from triggerhub.model import TriggerEvent

TRIGGER = "/guest/files"


def kinds(store: FakeStore) -> list[tuple[str, str, str | None]]:
    return [(e.data["kind"], os.path.basename(e.data["path"]),
             os.path.basename(e.data["dest_path"]) if "dest_path" in e.data else None)
            for e in sorted(store.events.values(), key=lambda e: (e.time_ms, e.id))]


def make_feed(tmp_path: Path, tg: asyncio.TaskGroup, emit: StoreEmit, **params: object) -> FileFeed:
    config = parse_files_config({"directory": str(tmp_path), "patterns": ["*.csv"], "debounceMs": 100, **params})
    return FileFeed(config, trigger=TRIGGER, clock=SystemClock(), tasks=tg, load_cursor=emit.load)


async def test_create_modify_move_delete_each_fire_once(tmp_path: Path, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = make_feed(tmp_path, tg, emit)
        await feed.start(emit)
        (tmp_path / "a.csv").write_text("1")
        (tmp_path / "ignored.txt").write_text("x")
        await wait_until(lambda: len(emit.returned) == 1)
        (tmp_path / "a.csv").write_text("12")
        await wait_until(lambda: len(emit.returned) == 2)
        (tmp_path / "a.csv").rename(tmp_path / "b.csv")
        await wait_until(lambda: len(emit.returned) == 3)
        (tmp_path / "b.csv").unlink()
        await wait_until(lambda: len(emit.returned) == 4)
        await feed.stop()
    assert [k for k, _, _ in kinds(fake_store)] == ["created", "modified", "moved", "deleted"]
    assert kinds(fake_store)[2] == ("moved", "a.csv", "b.csv")
    created = next(e for e in fake_store.events.values() if e.data["kind"] == "created")
    assert (created.data["size"], created.type) == (1, "triggerhub.feed.file.created")


async def test_a_burst_of_writes_is_debounced_into_one_event(tmp_path: Path, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = make_feed(tmp_path, tg, emit, debounceMs=300)
        await feed.start(emit)
        with open(tmp_path / "burst.csv", "w") as out:
            for i in range(20):
                out.write(f"{i}\n")
                out.flush()
        await wait_until(lambda: len(emit.returned) >= 1)
        (tmp_path / "marker.csv").write_text("m")  # events are handled in order: once this fired, burst is done
        await wait_until(lambda: len(emit.returned) >= 2)
        await feed.stop()
    assert kinds(fake_store) == [("created", "burst.csv", None), ("created", "marker.csv", None)]
    burst = next(e for e in fake_store.events.values() if e.subject.endswith("burst.csv"))
    assert burst.data["size"] == len("".join(f"{i}\n" for i in range(20)))


async def test_restart_fires_only_what_changed_while_down(tmp_path: Path, fake_store: FakeStore) -> None:
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = make_feed(tmp_path, tg, emit)
        await feed.start(emit)
        for name in ("keep.csv", "change.csv", "drop.csv"):
            (tmp_path / name).write_text(name)
        await wait_until(lambda: len(emit.returned) == 3)
        await feed.stop()
        (tmp_path / "change.csv").write_text("changed while down")
        (tmp_path / "drop.csv").unlink()
        (tmp_path / "new.csv").write_text("new")
        again = make_feed(tmp_path, tg, emit)
        await again.start(emit)  # the rescan emits before start returns
        await again.stop()
    assert emit.returned == [True] * 6
    assert sorted((k, n) for k, n, _ in kinds(fake_store)) == [
        ("created", "change.csv"), ("created", "drop.csv"), ("created", "keep.csv"), ("created", "new.csv"),
        ("deleted", "drop.csv"), ("modified", "change.csv")]


class RefusingEmit(StoreEmit):
    """Refuses the first `refusals` events for good (as the hub does for a deleted trigger), then stores."""

    def __init__(self, store: FakeStore, prefix: str, refusals: int) -> None:
        super().__init__(store, prefix)
        self.refusals = refusals

    async def __call__(self, event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        if self.refusals:
            self.refusals -= 1
            raise NotFound(f"trigger {TRIGGER} does not exist; delete its feed or recreate the trigger")
        return await super().__call__(event, cursor)


async def test_a_refusal_at_start_fails_the_start_and_a_later_one_reports_the_feed_failed(
        tmp_path: Path, fake_store: FakeStore) -> None:
    (tmp_path / "early.csv").write_text("1")  # reported at start: written while the feed was down
    emit = RefusingEmit(fake_store, TRIGGER, refusals=1)
    failures: list[str] = []
    config = parse_files_config({"directory": str(tmp_path), "patterns": ["*.csv"], "debounceMs": 50})
    async with asyncio.TaskGroup() as tg:
        feed = FileFeed(config, trigger=TRIGGER, clock=SystemClock(), tasks=tg, load_cursor=emit.load,
                        on_failed=failures.append)
        with pytest.raises(FeedError) as caught:
            await feed.start(emit)
        assert caught.value.args[0] == (f"the hub refused a change in {tmp_path}: trigger {TRIGGER} does not exist; "
                                        "delete its feed or recreate the trigger")
        await feed.start(emit)  # started again: early.csv is stored now
        emit.refusals = 1  # and the next change is refused
        (tmp_path / "late.csv").write_text("2")
        await wait_until(lambda: bool(failures))
        await feed.stop()
    assert failures == [f"trigger {TRIGGER} does not exist; delete its feed or recreate the trigger"]
    assert [name for _, name, _ in kinds(fake_store)] == ["early.csv"]
