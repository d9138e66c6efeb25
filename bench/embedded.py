"""Embedded-mode benchmark through the REST API, for one runtime (process or docker).

Starts `triggerhub up` (SQLite) in a child process on a free loopback port and drives it over
HTTP/1.1 keep-alive as a client would. Prints:
  - cold start p50 (no stem cells: each invoke is the first of a new action)
  - prewarmed first invoke p50 (a stem cell per kind; refilled between invokes)
  - warm blocking invoke p50/p99 (sequential, noop action)
  - invokes/s with 8 concurrent clients (blocking, warm)
  - fires/s: 202s answered, and end to end (fire -> action record stored)

    python bench/embedded.py [--runtime process|docker] [--invokes 1000] [--fires 500] [--cold 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

NOOP = "function main() { return {}; }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def hub(runtime: str, prewarm: int) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    home = Path(tempfile.mkdtemp(prefix="th-bench-"))
    port = free_port()
    apihost = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "1000000", "TRIGGERHUB_PREWARM_COUNT": str(prewarm),
           "TRIGGERHUB_PREWARM": "start"}
    with open(home / "hub.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", str(port), "--home", str(home),
                                    "--runtime", runtime, "--no-examples"], stdout=log, stderr=subprocess.STDOUT, env=env)
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
            yield session, f"{apihost}/api/v1/namespaces/_"
    finally:
        process.terminate()
        process.wait(timeout=60)


async def put_action(session: aiohttp.ClientSession, base: str, name: str) -> None:
    async with session.put(f"{base}/actions/{name}", json={"exec": {"kind": "nodejs:default", "code": NOOP}}) as r:
        assert r.status == 200, await r.text()


async def invoke_ms(session: aiohttp.ClientSession, base: str, name: str) -> float:
    start = time.perf_counter()
    async with session.post(f"{base}/actions/{name}?blocking=true&result=true") as r:
        await r.read()
        assert r.status == 200, r.status
    return (time.perf_counter() - start) * 1000


async def first_invokes(session: aiohttp.ClientSession, base: str, count: int, pause_s: float, tag: str) -> list[float]:
    samples = []
    for i in range(count):
        await put_action(session, base, f"{tag}{i}")
        samples.append(await invoke_ms(session, base, f"{tag}{i}"))
        await asyncio.sleep(pause_s)  # lets the pool refill its stem cell
    return samples


async def run(args: argparse.Namespace) -> None:
    label = f"runtime={args.runtime}"
    if args.cold > 0:  # --cold 0 skips the cold-start measurement
        async with hub(args.runtime, prewarm=0) as (session, base):
            cold = await first_invokes(session, base, args.cold, 0.2, "cold")
            print(f"{label} cold start (no prewarm), {args.cold} new actions: p50={p(cold, 0.5):.1f} ms "
                  f"max={max(cold):.1f} ms")
    async with hub(args.runtime, prewarm=1) as (session, base):
        await asyncio.sleep(3)  # stem cells start
        if args.cold > 0:
            warm_first = await first_invokes(session, base, args.cold, 2.0, "pre")
            print(f"{label} prewarmed first invoke, {args.cold} new actions: p50={p(warm_first, 0.5):.1f} ms "
                  f"max={max(warm_first):.1f} ms")
        await put_action(session, base, "noop")
        for _ in range(20):
            await invoke_ms(session, base, "noop")
        latencies = [await invoke_ms(session, base, "noop") for _ in range(args.invokes)]
        print(f"{label} warm blocking invoke, {args.invokes} sequential: p50={p(latencies, 0.5):.2f} ms "
              f"p99={p(latencies, 0.99):.2f} ms mean={statistics.fmean(latencies):.2f} ms")

        async def client(n: int) -> None:
            for _ in range(n):
                await invoke_ms(session, base, "noop")

        await asyncio.gather(*(client(5) for _ in range(8)))  # 8 warm runtimes before measuring
        start = time.perf_counter()
        await asyncio.gather(*(client(args.invokes // 8) for _ in range(8)))
        elapsed = time.perf_counter() - start
        print(f"{label} 8 concurrent clients: {8 * (args.invokes // 8) / elapsed:.0f} invokes/s")
        await fires(session, base, args.fires, label)


async def fires(session: aiohttp.ClientSession, base: str, count: int, label: str) -> None:
    async with session.put(f"{base}/triggers/tick", json={}) as r:
        assert r.status == 200
    async with session.put(f"{base}/rules/tick-noop", json={"trigger": "tick", "action": "noop"}) as r:
        assert r.status == 200
    async with session.get(f"{base}/activations?count=true") as r:
        before = (await r.json())["activations"]
    gate = asyncio.Semaphore(16)

    async def fire(i: int) -> None:
        async with gate, session.post(f"{base}/triggers/tick", json={"i": i}) as r:
            assert r.status == 202, await r.text()

    start = time.perf_counter()
    await asyncio.gather(*(fire(i) for i in range(count)))
    accepted_s = time.perf_counter() - start
    expected = before + 2 * count  # one trigger record and one action record per fire
    while True:
        async with session.get(f"{base}/activations?count=true") as r:
            if (await r.json())["activations"] >= expected:
                break
        await asyncio.sleep(0.05)
    done_s = time.perf_counter() - start
    print(f"{label} fires: {count} answered 202 at {count / accepted_s:.0f} fires/s; "
          f"end to end (action record stored) {count / done_s:.0f} fires/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    parser.add_argument("--invokes", type=int, default=1000)
    parser.add_argument("--fires", type=int, default=500)
    parser.add_argument("--cold", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
