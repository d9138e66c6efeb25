"""CPU per fire and per webhook delivery of an embedded hub, end to end (accepted -> action record stored).

    python -m bench.fire_cpu [--rounds 3] [--seconds 3] [--profile DIR]

Starts `triggerhub up` (process runtime), a trigger with one rule -> nodejs noop, and a webhook
trigger with the same rule; each round runs wrk (16 connections, or `--connections`) against each path, waits until
every action record is stored, and reports the hub process's CPU time (all its threads; not its
runtimes') per event, the runtimes' CPU per event, and the end-to-end rate. CPU per event does not
depend on the share of the 2 cores a run got, so compare branches by it, interleaving runs (run
this once per checkout, alternating, e.g. with PYTHONPATH pointing at the other checkout).
`--profile DIR` py-spies the hub during each path's last round (raw stacks, bench/profile.py).

`--against DIR` compares with another checkout (e.g. `git archive main triggerhub runtimes | tar
-x -C DIR`): two hubs run side by side, this checkout's and DIR's, and every round runs each path
on both, alternating which goes first, so both meet the same machine load; it prints each
round's branch/base ratio of hub CPU per event and how many rounds the branch was lower.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench import profile, systems
from bench.context import CONCURRENCY, NOOP_JS, drained, warm
from bench.measure import cpu_ms, wrk


def tree_cpu_ms(pid: int) -> float:
    """CPU time (user + system) of `pid`'s descendants alive now, in ms."""
    total = 0.0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += (times.user + times.system) * 1000
    return total


def one_round(hub: systems.Hub, url: str, seconds: float, *, unique: bool, headers: dict[str, str] | None,
              connections: int = CONCURRENCY) -> tuple[float, float, float, int]:
    """(hub CPU ms per event, runtimes' CPU ms per event, end-to-end rate, events) of one wrk run."""
    before_count = hub.count("noop")
    hub_before, tree_before = cpu_ms(hub.pid), tree_cpu_ms(hub.pid)
    start = time.perf_counter()
    result = wrk(url, connections=connections, duration_s=seconds, headers=headers,
                 unique=uuid.uuid4().hex if unique else "")
    if result.status_errors or result.socket_errors:
        raise SystemExit(f"{url}: {result.status_errors} error statuses, {result.socket_errors} socket errors")
    count, elapsed_s = drained(hub, "noop", before_count + result.requests, start)
    events = count - before_count
    hub_ms = cpu_ms(hub.pid) - hub_before
    tree_ms = tree_cpu_ms(hub.pid) - tree_before
    return hub_ms / events, tree_ms / events, events / elapsed_s, events


def setup(hub: systems.Hub) -> dict[str, tuple[str, bool, dict[str, str] | None]]:
    """The noop action, a trigger and a webhook trigger with a rule each: path name -> (url, unique, headers)."""
    hub.must("PUT", "actions/noop", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
    warm(hub, "noop")
    hub.must("PUT", "triggers/tick", {})
    hub.must("PUT", "rules/on-tick", {"trigger": "tick", "action": "noop"})
    hub.must("PUT", "triggers/hook", {"annotations": [{"key": "feed", "value": "/whisk.system/webhook/webhook"}]})
    hub.must("POST", "/api/v1/namespaces/whisk.system/actions/webhook/webhook?blocking=true",
             {"lifecycleEvent": "CREATE", "triggerName": "/_/hook", "authKey": "", "verify": "none"})
    hub.must("PUT", "rules/on-hook", {"trigger": "hook", "action": "noop"})
    return {"fire": (f"{hub.api}/triggers/tick", False, {"Authorization": hub.auth_header}),
            "webhook": (f"{hub.apihost}/hooks/guest/hook", True, None)}


def compare(against: Path, rounds: int, seconds: float, connections: int) -> None:
    """This checkout's hub and `against`'s, alternating rounds on the same load."""
    with tempfile.TemporaryDirectory(prefix="th-bench-firecpu-") as scratch, ExitStack() as stack:
        hubs = {side: stack.enter_context(systems.hub(Path(scratch), prewarm=0, checkout=checkout))
                for side, checkout in (("base", against), ("branch", Path(__file__).resolve().parents[1]))}
        paths = {side: setup(hub) for side, hub in hubs.items()}
        cpu: dict[tuple[str, str], list[float]] = {(side, name): [] for side in hubs for name in PATHS}
        for n in range(rounds + 1):  # round 0 warms both
            for name in PATHS:
                for side in (["base", "branch"] if n % 2 else ["branch", "base"]):
                    url, unique, headers = paths[side][name]
                    hub_ms = one_round(hubs[side], url, seconds if n else 1, unique=unique, headers=headers,
                                       connections=connections)[0]
                    if n:
                        cpu[(side, name)].append(hub_ms)
            if n:
                print(f"round {n}: " + ", ".join(f"{side} {name} {values[-1]:.3f}" for (side, name), values in cpu.items())
                      + " ms/event", flush=True)
        for name in PATHS:
            base, branch = cpu[("base", name)], cpu[("branch", name)]
            ratios = [mine / theirs for mine, theirs in zip(branch, base)]
            print(f"{name}: hub CPU ms/event, base median {statistics.median(base):.3f}, branch "
                  f"{statistics.median(branch):.3f}; branch/base per round: median {statistics.median(ratios):.3f}, "
                  f"branch lower in {sum(r < 1 for r in ratios)} of {len(ratios)}")


PATHS = ("fire", "webhook")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the last round of each path into DIR")
    parser.add_argument("--connections", type=int, default=CONCURRENCY,
                        help="wrk connections (1: sequential, no batching, steadier CPU per event on a loaded machine)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout (holding triggerhub/ and runtimes/) to alternate rounds with")
    parser.add_argument("--gil", action="store_true", help="with --profile: only the samples holding the GIL")
    args = parser.parse_args()
    if args.against is not None:
        compare(args.against, args.rounds, args.seconds, args.connections)
        return
    with tempfile.TemporaryDirectory(prefix="th-bench-firecpu-") as scratch, \
            systems.hub(Path(scratch), prewarm=0) as hub:
        paths = setup(hub)
        for name, (url, unique, headers) in paths.items():  # warm both paths once
            one_round(hub, url, 1, unique=unique, headers=headers)
        results: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in paths}
        for n in range(args.rounds):
            for name, (url, unique, headers) in paths.items():
                if args.profile is not None and n == args.rounds - 1:
                    with profile.profiled(hub.pid, args.profile / f"{name}.txt", gil=args.gil):
                        results[name].append(one_round(hub, url, args.seconds, unique=unique, headers=headers,
                                                      connections=args.connections))
                else:
                    results[name].append(one_round(hub, url, args.seconds, unique=unique, headers=headers,
                                                      connections=args.connections))
                hub_ms, tree_ms, rate, events = results[name][-1]
                print(f"round {n} {name}: hub {hub_ms:.3f} ms/event, runtimes {tree_ms:.3f} ms/event, "
                      f"{rate:.0f}/s end to end, {events} events", flush=True)
        for name, rows in results.items():
            print(f"{name}: median hub {statistics.median(r[0] for r in rows):.3f} ms/event, runtimes "
                  f"{statistics.median(r[1] for r in rows):.3f} ms/event, {statistics.median(r[2] for r in rows):.0f}/s "
                  f"({len(rows)} rounds)")


if __name__ == "__main__":
    main()
