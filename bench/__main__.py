"""The benchmark harness: triggerhub's event paths beside their floors and Node-RED, in one run.

    python -m bench                       # every scenario, under 10 minutes on 2 cores
    python -m bench --quick               # the same, small (a minute or two)
    python -m bench --only fires.one      # one scenario (and the floors it is divided by)
    python -m bench --list                # the scenario names
    python -m bench --profile             # also py-spy the embedded hub per scenario (pip install '.[bench]')

Writes bench/results/latest.json and latest.md and regenerates the README's Performance section
(`--out DIR` writes elsewhere and leaves the README alone). Needs wrk, mosquitto and
mosquitto_pub/sub (Debian packages), Node.js with npm (Node-RED is installed into bench/peer by
`npm ci` on first use), and for the Docker scenarios the dockerd of scripts/services with the
runtime images built. Run it nice'd on a shared machine: `nice python -m bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench import profile, report
from bench.measure import LoadSampler
from bench.context import Context, Sizes
from bench.scenarios import FLOORS, SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
# The scenarios that load the embedded hub (process runtime) that --profile samples.
PROFILED = ("invoke.process", "sequence", "fires.one", "fires.many", "delivery", "webhook", "http_function",
            "mqtt.stored", "mqtt.reply")
CORES_SHARED = ("every system and its client share the machine's cores with whatever else runs on it (see the "
                "load average); the HTTP client is wrk with one thread (at most one core, event-driven, compiled), "
                "the MQTT bursts come from mosquitto_pub/mosquitto_sub (compiled, one thread each), paced MQTT "
                "from paho at 100 msg/s; the system measured is one process (triggerhub up or Node-RED) plus its "
                "action runtimes, left the other core. One system is under load at a time; the others started in the run "
                "(floor servers, Node-RED, other hubs) stay up idle. Each ratio divides by its floor measured again "
                "right after the row, so load drifting during the run moves both.")


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        node = "missing"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_kib / 1024 / 1024,
            "os": platform.platform(terse=True), "python": platform.python_version(), "node": node}


def plan(only: list[str]) -> list[str]:
    """The scenarios to run, in the harness's order (floors are also measured beside each row)."""
    if not only:
        return list(SCENARIOS)
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    return [name for name in SCENARIOS if name in only]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run this scenario (repeatable) and the floors it needs")
    parser.add_argument("--out", type=Path, default=None,
                        help="write latest.json/latest.md here instead of bench/results (and leave the README)")
    parser.add_argument("--list", action="store_true", help="print the scenario names and exit")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the embedded hub during each scenario that drives it, and every process "
                             "of the distributed scenario (raw stacks in profiles/)")
    args = parser.parse_args()
    # Every hub a benchmark starts is a throwaway: none may take over the user's ~/.triggerhubprops.
    os.environ.setdefault("TRIGGERHUB_WRITE_PROPS", "false")
    if args.list:
        print("\n".join(SCENARIOS))
        return
    names = plan(args.only)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    failures: dict[str, str] = {}
    profiles: dict[str, dict[str, object]] = {}
    out_dir = args.out or ROOT / "bench" / "results"
    with tempfile.TemporaryDirectory(prefix="th-bench-") as scratch, ExitStack() as stack, \
            LoadSampler() as load:
        ctx = Context(Path(scratch), Sizes.of(quick=args.quick), stack, FLOORS,
                      profile_dir=out_dir / "profiles" if args.profile else None)
        for index, name in enumerate(names, 1):
            print(f"[{index}/{len(names)}] {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
            try:
                if args.profile and name in PROFILED:
                    raw = out_dir / "profiles" / f"{name}.txt"
                    with profile.profiled(ctx.hub().pid, raw):
                        SCENARIOS[name](ctx)
                    profiles[name] = profile.summarize(raw)
                else:
                    SCENARIOS[name](ctx)
            except (SystemExit, OSError, subprocess.SubprocessError, AssertionError) as error:
                failures[name] = str(error) or type(error).__name__
                print(f"  {name} FAILED: {failures[name]}", flush=True)
        stack.close()
        profiles.update(ctx.profiles)
    samples = load.samples
    result: dict[str, object] = {
        "started": started.isoformat(timespec="seconds"), "duration_s": time.perf_counter() - t0,
        "quick": args.quick, "only": args.only, "machine": machine(), "cores_shared": CORES_SHARED,
        "load_average": {"min": min(samples), "max": max(samples), "mean": statistics.fmean(samples),
                         "samples": len(samples)},
        "scenarios": names, "failures": failures,
        "rows": [row.to_json() for row in ctx.rows.values()],
        "targets": report.targets(ctx.rows), "profiles": profiles,
    }
    report.write_all(result, out_dir, None if args.out else ROOT / "README.md")
    print(report.table(result))
    print(f"wrote {out_dir / 'latest.json'} and latest.md in {time.perf_counter() - t0:.0f} s"
          + ("" if args.out else "; README Performance section regenerated"))
    if failures:
        sys.exit(f"{len(failures)} scenario(s) failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
