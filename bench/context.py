"""What the scenarios of `python -m bench` share: sizes, the run's Context, wrk runs and rows.

HTTP scenarios run wrk twice against the same URL: one connection (sequential: p50/p99) and 16
connections (throughput). `Context.add` measures the row's floor again right after the row, so
every ratio divides by a floor taken under the same machine load.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar, cast

from bench import systems
from bench.measure import Row, WrkResult, percentile, wrk

NOOP_JS = "function main() { return {}; }"
NOOP_PY = "def main(args):\n    return {}\n"
CONCURRENCY = 16
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each scenario does: `--quick` shrinks everything."""

    wrk_s: float
    mqtt_burst: int
    mqtt_paced: int
    first_invokes: int
    idle_s: float

    @classmethod
    def of(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(wrk_s=1, mqtt_burst=300, mqtt_paced=50, first_invokes=3, idle_s=3)
        return cls(wrk_s=3, mqtt_burst=5000, mqtt_paced=500, first_invokes=8, idle_s=10)


@dataclass
class Context:
    """What a run shares between scenarios: scratch folder, sizes, rows, and lazily started systems."""

    scratch: Path
    sizes: Sizes
    stack: ExitStack
    floors: Mapping[str, Callable[[Context], Row]]  # floor name -> a fresh measurement of it
    rows: dict[str, Row] = field(default_factory=dict)
    _cache: dict[str, object] = field(default_factory=dict)
    # --profile: where scenarios that start their own processes (distributed) put py-spy's raw
    # stacks, and the summaries they made of them (name -> profile.summarize())
    profile_dir: Path | None = None
    profiles: dict[str, dict[str, object]] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Record `row`; one with a floor gets that floor measured again now and its ratios to it."""
        key = f"{row.scenario}/{row.system}"
        if row.floor and row.floor not in self.floors and not row.ratio:
            raise SystemExit(f"row {key}: floor {row.floor!r} is not a floor scenario, and the row brings no "
                             "ratio of its own to it")
        if row.floor in self.floors:  # else the scenario measured its own floor beside the row
            floor = self.floors[row.floor](self)
            self.rows.setdefault(f"{row.floor}/floor", floor)
            ratio, values = dict(row.ratio), dict(row.values)
            for name in ("p50_ms", "p99_ms", "rate_per_s"):
                mine, base = getattr(row, name), getattr(floor, name)
                if mine is not None and base:
                    ratio[name.split("_")[0]] = round(mine / base, 3 if name == "rate_per_s" else 2)
                    values[f"floor_{name}"] = base
            if "per_step_ms" in values and floor.p50_ms:
                ratio["per_step"] = round(values["per_step_ms"] / floor.p50_ms, 2)
            row = replace(row, ratio=ratio, values=values)
        self.rows[key] = row
        print(f"  {key}: " + ", ".join(
            f"{k}={v}" for k, v in (("p50_ms", row.p50_ms), ("p99_ms", row.p99_ms), ("n", row.latency_samples),
                                    ("rate_per_s", row.rate_per_s), ("n_rate", row.rate_samples),
                                    ("ratio", row.ratio or None), ("values", row.values or None))
            if v is not None), flush=True)
        return row

    def once(self, key: str, make: Callable[[], T]) -> T:
        """`make()` the first time `key` is asked for in this run; the same value after that."""
        if key not in self._cache:
            self._cache[key] = make()
        return cast(T, self._cache[key])

    def broker(self) -> tuple[str, int]:
        return self.once("broker", lambda: self.stack.enter_context(systems.mosquitto(self.scratch)))

    def hub(self, name: str = "process", *, runtime: str = "process", prewarm: int = 0) -> systems.Hub:
        def start() -> systems.Hub:
            print(f"  starting triggerhub up ({name}: runtime {runtime}, prewarm {prewarm}) ...", flush=True)
            return self.stack.enter_context(systems.hub(self.scratch, runtime=runtime, prewarm=prewarm))
        return self.once(f"hub:{name}", start)

    def node_red(self) -> tuple[str, int, str]:
        def start() -> tuple[str, int, str]:
            prefix = f"nr{uuid.uuid4().hex[:6]}"
            url, pid = self.stack.enter_context(systems.node_red(self.scratch, self.broker(), prefix))
            return url, pid, prefix
        return self.once("node-red", start)


def http_pair(url: str, *, ctx: Context, headers: dict[str, str] | None = None, spread: int = 0,
              unique: bool = False) -> tuple[WrkResult, WrkResult]:
    """(sequential run, 16-connection run) of wrk against `url`."""
    tag = uuid.uuid4().hex if unique else ""
    sequential = wrk(url, connections=1, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread, unique=tag)
    concurrent = wrk(url, connections=CONCURRENCY, duration_s=ctx.sizes.wrk_s, headers=headers, spread=spread,
                     unique=tag + "c" if tag else "")
    for result in (sequential, concurrent):
        if result.status_errors or result.socket_errors:
            raise SystemExit(f"{url}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    return sequential, concurrent


def http_row(scenario: str, system: str, timed: str, floor: str, pair: tuple[WrkResult, WrkResult],
             **values: float) -> Row:
    sequential, concurrent = pair
    return Row(scenario, system, timed, p50_ms=round(sequential.p50_ms, 3), p99_ms=round(sequential.p99_ms, 3),
               latency_samples=sequential.requests, rate_per_s=round(concurrent.rate_per_s, 1),
               rate_samples=concurrent.requests, floor=floor, values=dict(values))


def latency_stats(samples: list[float]) -> tuple[float, float, int]:
    return round(percentile(samples, 0.5), 3), round(percentile(samples, 0.99), 3), len(samples)


def noop_ready(hub: systems.Hub, ctx: Context) -> None:
    def make() -> bool:
        hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
        warm(hub, "noop")
        return True
    ctx.once(f"noop:{hub.apihost}", make)


def warm(hub: systems.Hub, action: str) -> None:
    """Sequential invokes, then 16 concurrent, so every runtime wrk will use is warm."""
    for _ in range(10):
        hub.must("POST", f"actions/{action}?blocking=true&result=true", {})
    threads = [threading.Thread(target=lambda: [hub.must("POST", f"actions/{action}?blocking=true", {})
                                                for _ in range(3)]) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def drained(hub: systems.Hub, action: str, expected: int, start: float, timeout_s: float = 120,
            poll_s: float = 0.02) -> tuple[int, float]:
    """Poll the count of `action`'s records every `poll_s` until it reaches `expected`: (count,
    seconds since `start`, so up to `poll_s` late)."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = hub.count(action)
        if count >= expected:
            return count, time.perf_counter() - start
        if time.monotonic() > deadline:
            raise SystemExit(f"{action}: {count} of {expected} records stored after {timeout_s:.0f} s")
        time.sleep(poll_s)
