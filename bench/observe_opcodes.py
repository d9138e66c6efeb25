"""What metrics and lineage cost in Python bytecodes per fire on the event loop, function by function.

Instruction counts (bench/observe_instructions.py) say how much a mode costs but, for a Python
process, not where: callgrind sees the interpreter's C functions, not the Python ones. This runs
each hub under bench/opcode_hub.py, which counts the opcodes every Python function executes on the
loop thread (sys.settrace with opcode events) during N fires, and prints per mode the opcodes and
Python calls per fire, the cost against "off", and the functions whose counts differ most from
"off". The counts are exact and load-independent; tracing makes the hub about 20 times slower, so
use a few hundred fires at most.

On 2026-12-05 (100 fires) this found that lineage's extra on the loop was mostly dataclass
constructors (7 per fire, 246 of 497 opcodes), and that `json.loads(text, parse_constant=...)`
builds a JSONDecoder on every call (64 opcodes per request).

    python -m bench.observe_opcodes [--fires 100] [--modes off,on] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from bench.observe_instructions import fire_until_quiet
from bench.observe_overhead import CONTROL, MODES, SPLIT, started

Counts = dict[str, list[int]]  # "file:line:function" -> [opcodes, calls]


async def counted(mode_env: dict[str, str], fires: int, out: Path) -> Counts:
    wrapper = (sys.executable, str(Path(__file__).with_name("opcode_hub.py")))
    async with started({**mode_env, "TH_OPCODES_OUT": str(out)}, wrapper=wrapper) as hub:
        await fire_until_quiet(hub, 20)  # warm, untraced
        os.kill(hub.pid, signal.SIGUSR1)
        stored = await fire_until_quiet(hub, fires)
        os.kill(hub.pid, signal.SIGUSR2)
        for _ in range(300):
            if out.exists() and out.stat().st_size:
                break
            await asyncio.sleep(0.1)
        assert stored == fires, f"{stored} records for {fires} fires"
    counts: Counts = json.loads(out.read_text())
    return counts


def totals(counts: Counts) -> tuple[int, int]:
    return sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())


async def run(args: argparse.Namespace) -> None:
    modes = {**MODES, **SPLIT, **CONTROL}
    folder = Path(tempfile.mkdtemp(prefix="th-obs-opcodes-"))
    results: dict[str, Counts] = {}
    for mode in args.modes.split(","):
        results[mode] = await counted(modes[mode], args.fires, folder / f"{mode}.json")
        opcodes, calls = totals(results[mode])
        print(f"{mode:10} {opcodes / args.fires:>9,.0f} opcodes/fire  {calls / args.fires:>7,.1f} Python calls/fire",
              flush=True)
    if "off" not in results:
        return
    floor = results["off"]
    floor_opcodes = totals(floor)[0]
    for mode, counts in results.items():
        if mode == "off":
            continue
        print(f"\n{mode}: {totals(counts)[0] / floor_opcodes - 1:+.1%} opcodes against off; "
              f"the {args.top} functions that differ most (per fire):")
        rows = []
        for key in floor.keys() | counts.keys():
            (off_opcodes, off_calls), (opcodes, calls) = floor.get(key, [0, 0]), counts.get(key, [0, 0])
            if (off_opcodes, off_calls) != (opcodes, calls):
                rows.append(((opcodes - off_opcodes) / args.fires, (calls - off_calls) / args.fires, key))
        for opcodes_d, calls_d, key in sorted(rows, key=lambda row: -abs(row[0]))[:args.top]:
            print(f"  {opcodes_d:+8.1f} opcodes {calls_d:+6.2f} calls  {key}")
    print(f"\ncounts in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fires", type=int, default=100)
    parser.add_argument("--modes", default="off,on")
    parser.add_argument("--top", type=int, default=25)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
