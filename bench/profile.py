"""`python -m bench --profile`: py-spy samples the embedded hub while each scenario runs (and each
process of the distributed scenario: bench/paths_distributed.py).

Each scenario's raw stacks go to <out>/profiles/<scenario>.txt (collapsed, for flamegraph tools);
the summary in latest.json/md gives, per scenario, the share of samples (idle excluded, all of the
hub's Python threads) spent under each package or triggerhub subpackage, and the hottest frames.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):(?P<line>\d+)\)$")
SAMPLE_RATE_HZ = 100


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install -e '.[bench]'")
    return found


@contextmanager
def profiled(pid: int, raw_path: Path, *, gil: bool = False) -> Iterator[None]:
    """Sample `pid` with py-spy until the block ends; raw collapsed stacks land in `raw_path`.
    `gil`: only samples of the thread holding the GIL (Python's own CPU, without the threads
    waiting in a system call or for a core)."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ), "--format",
                                 "raw", "--output", str(raw_path), "--nonblocking", *(["--gil"] if gil else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


def group_of(path: str) -> str:
    """The package a frame's file belongs to: `sqlalchemy`, `triggerhub/store`, `asyncio`, `json`, ..."""
    if path.startswith("<"):  # <frozen runpy>
        return path.strip("<>").split()[-1]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    if parts[0] == "triggerhub" and len(parts) > 1:
        return "triggerhub/" + parts[1].removesuffix(".py")
    return parts[0].removesuffix(".py")


# In (nearly) every stack of the hub's loop thread: left out of the inclusive shares.
SCAFFOLDING = frozenset({"runpy", "click", "asyncio", "triggerhub/cli", "threading"})


def summarize(raw_path: Path, *, top: int = 8) -> dict[str, object]:
    """Shares of the samples in `raw_path`: inclusive per package, and self time per frame."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    text = raw_path.read_text(errors="replace") if raw_path.exists() else ""
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        groups = {group_of(match["path"]) for match in frames if match}
        for group in groups - SCAFFOLDING:
            inclusive[group] += count
        last = frames[-1]
        if last:
            own[group_of(last["path"])] += count
            leaf[f"{last['function']} ({Path(last['path']).name}:{last['line']})"] += count
    if not total:
        return {"samples": 0, "inclusive": [], "self_by_package": [], "self": []}
    return {"samples": total,
            "inclusive": [[name, round(100 * n / total, 1)] for name, n in ranked(inclusive)[:top]],
            "self_by_package": [[name, round(100 * n / total, 1)] for name, n in ranked(own)[:top]],
            "self": [[name, round(100 * n / total, 1)] for name, n in ranked(leaf)[:top]]}


def ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most samples first; ties by name, so a summary does not depend on set order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def markdown(profiles: dict[str, dict[str, object]]) -> str:
    if not profiles:
        return ""
    lines = ["", "Where the hub's time goes: the embedded hub, and each process of the distributed scenario after its "
             "warm-up (py-spy at 100 Hz, share of its non-idle samples over all its "
             "threads; inclusive: a package counts once per stack, the loop's own scaffolding left out; self: the "
             "package of the innermost frame). py-spy --nonblocking cannot tell every wait from work: "
             "`EpollSelector.select` is the loop waiting for I/O and a thread parked on a queue shows as the frame "
             "that called `get` (e.g. the store writer's `_Writer._serve`), so read those as idle:", "",
             "| scenario | samples | inclusive | self, by package | hottest frames (self) |", "|---|---|---|---|---|"]
    for name, summary in profiles.items():
        cells = [", ".join(f"{what} {pct}%" for what, pct in summary[key][:count])  # type: ignore[index]
                 for key, count in (("inclusive", 8), ("self_by_package", 6), ("self", 3))]
        lines.append(f"| {name} | {summary['samples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
