"""What metrics and lineage cost: the same embedded hub with them on and off, measured in one run.

Starts two `triggerhub up` hubs (SQLite, process runtime): one with TRIGGERHUB_METRICS=false and
TRIGGERHUB_LINEAGE=false (the floor), one with the defaults (both on); `--split` adds one hub with
metrics only and one with lineage only, `--control` a second hub with both off (what two equal
hubs differ by in this run: the noise to read the costs against). Each round drives every hub at the same time (so the
machine's load falls on each alike) and measures the warm blocking invoke p50 (sequential per
hub, noop action) and fires end to end (a fire with one rule -> its action record stored, 16 in
flight), in wall time and in the hub process's CPU time per operation (/proc; steadier than wall
time on a shared machine). Prints each round, then the medians and on/off ratios; the issue's
target is under 5% cost.

    python bench/observe_overhead.py [--rounds 4] [--invokes 300] [--fires 300] [--split] [--control]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

NOOP = "def main(args):\n    return {}\n"
MODES = {"off": {"TRIGGERHUB_METRICS": "false", "TRIGGERHUB_LINEAGE": "false"}, "on": {}}
SPLIT = {"metrics": {"TRIGGERHUB_LINEAGE": "false"}, "lineage": {"TRIGGERHUB_METRICS": "false"}}
CONTROL = {"control": MODES["off"]}  # a second "off" hub: how far two equal hubs differ in this run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Hub:
    session: aiohttp.ClientSession
    base: str
    pid: int

    def cpu_s(self) -> float:
        """CPU time the hub process has used (user + system): steadier than wall time on a shared machine."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def started(extra_env: dict[str, str]) -> AsyncIterator[Hub]:
    home = Path(tempfile.mkdtemp(prefix="th-obs-bench-"))
    port = free_port()
    apihost = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "1000000", "TRIGGERHUB_PREWARM_COUNT": "1",
           "TRIGGERHUB_PREWARM": "start", **extra_env}
    with open(home / "hub.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", str(port), "--home",
                                    str(home), "--runtime", "process", "--no-examples"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(600):
                if process.poll() is not None:
                    raise SystemExit(f"hub exited with {process.returncode}; see {home / 'hub.log'}")
                try:
                    async with probe.get(f"{apihost}/ping") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        auth = json.loads((home / "credentials.json").read_text())["guest"]
        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=64)) as session:
            hub = Hub(session, f"{apihost}/api/v1/namespaces/_", process.pid)
            await prepare(hub)
            yield hub
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


async def prepare(hub: Hub) -> None:
    for path, body in (("actions/noop", {"exec": {"kind": "python:default", "code": NOOP}}), ("triggers/tick", {}),
                       ("rules/tick-noop", {"trigger": "tick", "action": "noop"})):
        async with hub.session.put(f"{hub.base}/{path}", json=body) as response:
            assert response.status == 200, await response.text()
    for _ in range(30):  # warm runtime, warm caches
        await invoke_ms(hub)


async def invoke_ms(hub: Hub) -> float:
    start = time.perf_counter()
    async with hub.session.post(f"{hub.base}/actions/noop?blocking=true&result=true") as response:
        await response.read()
        assert response.status == 200, response.status
    return (time.perf_counter() - start) * 1000


async def invoke_p50_ms(hub: Hub, count: int) -> tuple[float, float]:
    """(p50 in ms, hub CPU ms per invoke)."""
    cpu_s = hub.cpu_s()
    p50 = statistics.median([await invoke_ms(hub) for _ in range(count)])
    return p50, (hub.cpu_s() - cpu_s) * 1000 / count


async def record_count(hub: Hub) -> int:
    async with hub.session.get(f"{hub.base}/activations", params={"count": "true", "name": "noop"}) as response:
        return int((await response.json())["activations"])


async def fires_per_s(hub: Hub, count: int) -> tuple[float, float]:
    """(fires/s end to end, hub CPU ms per fire; the count polls are included and equal in both modes)."""
    before = await record_count(hub)
    cpu_s = hub.cpu_s()
    gate = asyncio.Semaphore(16)

    async def fire(i: int) -> None:
        async with gate, hub.session.post(f"{hub.base}/triggers/tick", json={"i": i}) as response:
            assert response.status == 202, await response.text()

    start = time.perf_counter()
    await asyncio.gather(*(fire(i) for i in range(count)))
    while await record_count(hub) < before + count:
        await asyncio.sleep(0.02)
    return count / (time.perf_counter() - start), (hub.cpu_s() - cpu_s) * 1000 / count


async def run(args: argparse.Namespace) -> None:
    modes = {**MODES, **(SPLIT if args.split else {}), **(CONTROL if args.control else {})}
    keys = ("invoke_p50_ms", "invoke_cpu_ms", "fires_per_s", "fire_cpu_ms")
    results: dict[str, dict[str, list[float]]] = {mode: {key: [] for key in keys} for mode in modes}
    async with AsyncExitStack() as stack:
        hubs = {mode: await stack.enter_async_context(started(env)) for mode, env in modes.items()}
        for round_no in range(args.rounds):
            # Every hub is driven at once, so the machine's load falls on each alike; who starts
            # first alternates.
            order = list(modes) if round_no % 2 == 0 else list(reversed(modes))
            invokes = await asyncio.gather(*(invoke_p50_ms(hubs[mode], args.invokes) for mode in order))
            fires = await asyncio.gather(*(fires_per_s(hubs[mode], args.fires) for mode in order))
            for mode, (p50, invoke_cpu_ms), (rate, fire_cpu_ms) in zip(order, invokes, fires):
                for key, measured in zip(keys, (p50, invoke_cpu_ms, rate, fire_cpu_ms)):
                    results[mode][key].append(measured)
                print(f"round {round_no + 1} {mode:>7}: warm invoke p50 {p50:.2f} ms ({invoke_cpu_ms:.3f} ms hub CPU), "
                      f"fires end to end {rate:.0f}/s ({fire_cpu_ms:.3f} ms hub CPU each)", flush=True)
    load = os.getloadavg()[0]
    off, on = ({k: statistics.median(v) for k, v in results[m].items()} for m in ("off", "on"))
    invoke_cost = on["invoke_p50_ms"] / off["invoke_p50_ms"] - 1
    fire_cost = 1 - on["fires_per_s"] / off["fires_per_s"]
    print(f"medians over {args.rounds} rounds (load average {load:.1f}):")
    print(f"  warm invoke p50: off {off['invoke_p50_ms']:.2f} ms, on {on['invoke_p50_ms']:.2f} ms "
          f"-> cost {invoke_cost:+.1%}")
    print(f"  fires end to end: off {off['fires_per_s']:.0f}/s, on {on['fires_per_s']:.0f}/s -> cost {fire_cost:+.1%}")
    invoke_cpu = on["invoke_cpu_ms"] / off["invoke_cpu_ms"] - 1
    fire_cpu = on["fire_cpu_ms"] / off["fire_cpu_ms"] - 1
    print(f"  hub CPU per invoke: off {off['invoke_cpu_ms']:.3f} ms, on {on['invoke_cpu_ms']:.3f} ms -> cost {invoke_cpu:+.1%}")
    print(f"  hub CPU per fire: off {off['fire_cpu_ms']:.3f} ms, on {on['fire_cpu_ms']:.3f} ms -> cost {fire_cpu:+.1%}")
    print(f"  target: under 5% cost: wall time {'met' if max(invoke_cost, fire_cost) < 0.05 else 'missed'}, "
          f"CPU {'met' if max(invoke_cpu, fire_cpu) < 0.05 else 'missed'}")
    for mode in modes:
        if mode not in MODES:
            alone = {k: statistics.median(v) for k, v in results[mode].items()}
            print(f"  {mode} alone: CPU per invoke {alone['invoke_cpu_ms'] / off['invoke_cpu_ms'] - 1:+.1%}, "
                  f"per fire {alone['fire_cpu_ms'] / off['fire_cpu_ms'] - 1:+.1%}; wall: invoke p50 "
                  f"{alone['invoke_p50_ms'] / off['invoke_p50_ms'] - 1:+.1%}, "
                  f"fires/s {1 - alone['fires_per_s'] / off['fires_per_s']:+.1%} cost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--invokes", type=int, default=300)
    parser.add_argument("--fires", type=int, default=300)
    parser.add_argument("--split", action="store_true", help="also metrics alone and lineage alone")
    parser.add_argument("--control", action="store_true", help="also a second hub with both off: the noise floor")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
