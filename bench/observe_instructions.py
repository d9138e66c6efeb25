"""What metrics and lineage cost in instructions per fire: a measure that load does not move.

Hub CPU time per fire varies 5-20% between two equal hubs on a busy machine; the number of
instructions a hub executes per fire barely does. Hardware counters are not available on every
machine (`perf stat -e instructions:u` says "not supported" in a VM), so this runs each hub under
valgrind's callgrind with instrumentation off (startup at about 5x, not 50x), switches it on
(`callgrind_control -i on`) for N fires only, waits until the hub is idle (all N records stored,
its CPU quiet), and dumps one profile per thread. Prints instructions per fire for each thread
(the event loop is thread 1; a store's writer thread, when it has one, the busiest other) and their total, per mode,
and the cost against "off". The profiles stay in the output folder for callgrind_annotate.

On 2026-12-05 (200 fires, process runtime), instructions per fire on the loop thread: off 1,791k,
a second "off" hub 1,775k (-0.9%), everything on 1,987k (+10.9%), metrics alone 1,892k, lineage
alone 1,903k; the SQLite writer thread 593k off, 652k on. In a second run (off 1,781k, on 1,989k)
leaving out lineage's stored annotations and stamped event saved 63k on the loop and all of the
writer's extra (608k against 603k off: that extra is JSON-encoding the stored lineage), prometheus
Counter.inc and Histogram.observe 43k, the store-operation timing 27k. After merging main that
day (no busy writer thread in that run: the loop did the work): off 2,283k, on 2,559k (+12.1%),
100 fires. Needs valgrind.

When metrics' hooks stopped using prometheus_client's Counter and Histogram (plain counts that a
collector reads at scrape time; same day, 200 fires, 4-5 interleaved runs of each checkout), on
the loop thread: metrics alone cost 86-110k instructions per fire before and 29-55k after;
everything on cost 187-198k before and 124-135k after. Over main's lighter lineage (3b91c92),
everything on: 139-172k before, 78-101k after (all threads: +6.0-11.9% against off before,
+3.7-6.7% after); metrics alone 66-97k before, 23-26k after.

Later that day, after lineage built no second copy of the event and no TraceContext per fire and
the store wrote its documents with orjson (1,000 fires, off,on,off,on interleaved): off 1,899k and
1,904k, on 1,989k and 1,984k (+4.7%, +4.2%); loop thread +63k and +59k, writer thread +20k. Counts
move with timing (how fires batch into the writer's commits): read several interleaved runs on a
quiet machine.

    python -m bench.observe_instructions [--fires 200] [--modes off,control,on,metrics,lineage] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import tempfile
from pathlib import Path

from bench.observe_overhead import CONTROL, MODES, SPLIT, Hub, record_count, started

QUIET_CPU_S = 0.1  # a second in which the instrumented hub ran less than this: it is idle (idle is ~0.05)


def control(command: str, *args: str) -> None:
    subprocess.run(["callgrind_control", command, *args], check=True, capture_output=True)


async def fire_until_quiet(hub: Hub, count: int) -> int:
    """Fires `count` times (16 in flight), waits for a quiet second; the records stored meanwhile."""
    before = await record_count(hub)
    gate = asyncio.Semaphore(16)

    async def fire(i: int) -> None:
        async with gate, hub.session.post(f"{hub.base}/triggers/tick", json={"i": i}) as response:
            assert response.status == 202, await response.text()

    await asyncio.gather(*(fire(i) for i in range(count)))
    cpu_s = hub.cpu_s()
    while True:
        await asyncio.sleep(1.0)
        now_s = hub.cpu_s()
        if now_s - cpu_s < QUIET_CPU_S:
            break
        cpu_s = now_s
    return await record_count(hub) - before


def per_thread(out: Path, mode: str, pid: int) -> dict[int, int]:
    """Instructions per thread in the dump named `mode` (callgrind writes one file per thread)."""
    counts: dict[int, int] = {}
    for path in out.glob(f"cg.{mode}.{pid}.out.1-*"):
        found = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        counts[int(path.name.rsplit("-", 1)[1])] = int(found.group(1)) if found else 0
    return counts


async def run(args: argparse.Namespace) -> None:
    modes = {**MODES, **SPLIT, **CONTROL}
    out = Path(args.out or tempfile.mkdtemp(prefix="th-obs-instr-"))
    results: dict[str, dict[int, int]] = {}
    for mode in args.modes.split(","):
        wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                   f"--callgrind-out-file={out}/cg.{mode}.%p.out")
        async with started(modes[mode], wrapper=wrapper) as hub:
            await fire_until_quiet(hub, 20)  # warm, uninstrumented
            control("-z", str(hub.pid))
            control("-i", "on", str(hub.pid))
            stored = await fire_until_quiet(hub, args.fires)
            control("-d", mode, str(hub.pid))  # dump before switching off: switching off drops the counts
            control("-i", "off", str(hub.pid))
            assert stored == args.fires, f"{mode}: {stored} records for {args.fires} fires"
            results[mode] = {thread: count // args.fires for thread, count in per_thread(out, mode, hub.pid).items()}
        busy = {thread: count for thread, count in sorted(results[mode].items()) if count >= 1000}
        print(f"{mode:10} total {sum(results[mode].values()):>9,} instr/fire  " +
              "  ".join(f"thread {thread}: {count:,}" for thread, count in busy.items()), flush=True)
    if "off" in results:
        floor = sum(results["off"].values())  # all threads, as in the totals above (idle ones count 0)
        for mode, counts in results.items():
            print(f"{mode:10} {sum(counts.values()) / floor - 1:+.1%} against off")
    print(f"profiles in {out} (callgrind_annotate FILE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fires", type=int, default=200)
    parser.add_argument("--modes", default="off,control,on,metrics,lineage")
    parser.add_argument("--out", help="folder for the callgrind profiles (default: a new temporary one)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
