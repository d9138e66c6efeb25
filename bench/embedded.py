"""Embedded-mode benchmark: warm blocking-invoke latency and fire throughput through the REST API.

Starts `triggerhub up` (SQLite, the chosen runtime) in a child process on a free loopback port,
then drives it over HTTP/1.1 keep-alive like a client would.

    python bench/embedded.py [--runtime process|docker] [--invokes 1000] [--fires 500]
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
from pathlib import Path

import aiohttp

NOOP = "function main() { return {}; }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_ready(apihost: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process.poll() is not None:
                raise SystemExit(f"hub exited with {process.returncode}")
            try:
                async with session.get(f"{apihost}/ping") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("hub did not start")


async def run(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="th-bench-"))
    port = free_port()
    apihost = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRIGGERHUB_INVOCATIONS_PER_MINUTE": "1000000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000",
           "TRIGGERHUB_FIRES_PER_MINUTE": "1000000"}
    log = open(home / "hub.log", "wb")  # noqa: SIM115 - lives as long as the child
    process = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", str(port), "--home", str(home),
                                "--runtime", args.runtime, "--no-examples"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_ready(apihost, process)
        auth = json.loads((home / "credentials.json").read_text())["guest"]
        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            base = f"{apihost}/api/v1/namespaces/_"
            async with session.put(f"{base}/actions/noop", json={"exec": {"kind": "nodejs:default", "code": NOOP}}) as r:
                assert r.status == 200, await r.text()
            for _ in range(20):  # warm the container and the connection
                async with session.post(f"{base}/actions/noop?blocking=true&result=true") as r:
                    assert r.status == 200, await r.text()
            latencies = []
            for _ in range(args.invokes):
                start = time.perf_counter()
                async with session.post(f"{base}/actions/noop?blocking=true&result=true") as r:
                    await r.read()
                    assert r.status == 200
                latencies.append((time.perf_counter() - start) * 1000)
            print(f"runtime={args.runtime} warm blocking invoke over REST, {args.invokes} sequential: "
                  f"p50={percentile(latencies, 0.5):.2f} ms p99={percentile(latencies, 0.99):.2f} ms "
                  f"mean={statistics.fmean(latencies):.2f} ms")

            async with session.put(f"{base}/triggers/tick", json={}) as r:
                assert r.status == 200
            async with session.put(f"{base}/rules/tick-noop", json={"trigger": "tick", "action": "noop"}) as r:
                assert r.status == 200
            async with session.get(f"{base}/activations?count=true") as r:
                before = (await r.json())["activations"]
            semaphore = asyncio.Semaphore(16)

            async def fire(i: int) -> None:
                async with semaphore, session.post(f"{base}/triggers/tick", json={"i": i}) as r:
                    assert r.status == 202, await r.text()

            start = time.perf_counter()
            await asyncio.gather(*(fire(i) for i in range(args.fires)))
            accepted_s = time.perf_counter() - start
            expected = before + 2 * args.fires  # one trigger record and one action record per fire
            while True:
                async with session.get(f"{base}/activations?count=true") as r:
                    if (await r.json())["activations"] >= expected:
                        break
                await asyncio.sleep(0.05)
            done_s = time.perf_counter() - start
            print(f"fires: {args.fires} accepted in {accepted_s:.2f} s = {args.fires / accepted_s:.0f} fires/s (202 answered); "
                  f"end to end (action record stored) {args.fires / done_s:.0f} fires/s")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    parser.add_argument("--invokes", type=int, default=1000)
    parser.add_argument("--fires", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
