"""Docker runtime paths: warm invoke, cold first invoke, first invoke on a stem cell, `docker run`.

Needs the dockerd of scripts/services (DOCKER_HOST in .cache/services.env) and the runtime images.
"""

from __future__ import annotations

import os
import subprocess
import time

from bench import systems
from bench.context import NOOP_PY, Context, http_pair, http_row, latency_stats, warm
from bench.measure import Row

def measure_floor_docker_run(ctx: Context) -> Row:
    def measure() -> Row:  # seconds per sample: measured once per run
        docker_env()
        samples = []
        for _ in range(ctx.sizes.first_invokes):
            start = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", "--network", "none", "triggerhub/python:3.11", "python3", "-c",
                            "pass"], check=True, capture_output=True)
            samples.append((time.perf_counter() - start) * 1000)
        return Row("floor.docker_run", "floor", "`docker run --rm --network none triggerhub/python:3.11 python3 -c "
                   "pass` from exec to exit", *latency_stats(samples))
    return ctx.once("floor.docker_run", measure)


def docker_env() -> None:
    """DOCKER_HOST from .cache/services.env (scripts/services/dockerd.sh) unless already set."""
    env_file = systems.ROOT / ".cache" / "services.env"
    if "DOCKER_HOST" not in os.environ and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("DOCKER_HOST="):
                os.environ["DOCKER_HOST"] = line.split("=", 1)[1]


def first_invokes(hub: systems.Hub, tag: str, count: int, pause_s: float) -> list[float]:
    samples = []
    for i in range(count):
        hub.must("PUT", f"actions/{tag}{i}", {"exec": {"kind": "python:3.11", "code": NOOP_PY}})
        start = time.perf_counter()
        hub.must("POST", f"actions/{tag}{i}?blocking=true&result=true", {})
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(pause_s)  # the pool refills its stem cell
    return samples


def docker_cold(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-cold", runtime="docker", prewarm=0)
    samples = first_invokes(hub, "cold", ctx.sizes.first_invokes, 0.2)
    ctx.add(Row("docker.cold", "triggerhub", "POST /actions/coldN?blocking=true of a new python:3.11 action, no stem "
                "cell (container create + start + /init + /run) -> 200 read", *latency_stats(samples),
                floor="floor.docker_run"))


def docker_prewarmed(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-warm", runtime="docker", prewarm=1)
    time.sleep(3)  # the stem cells start
    samples = first_invokes(hub, "pre", ctx.sizes.first_invokes, 2.0)
    ctx.add(Row("docker.prewarmed", "triggerhub", "POST /actions/preN?blocking=true of a new python:3.11 action with "
                "a stem cell ready (/init + /run) -> 200 read", *latency_stats(samples), floor="floor.docker_run"))


def invoke_docker(ctx: Context) -> None:
    docker_env()
    hub = ctx.hub("docker-warm", runtime="docker", prewarm=1)
    hub.must("PUT", "actions/noop", {"exec": {"kind": "python:3.11", "code": NOOP_PY}})
    warm(hub, "noop")
    pair = http_pair(f"{hub.api}/actions/noop?blocking=true&result=true", ctx=ctx,
                     headers={"Authorization": hub.auth_header})
    ctx.add(http_row("invoke.docker", "triggerhub", "wrk POST /actions/noop?blocking=true&result=true (python noop, "
                     "warm Docker container) -> 200 with the result read", "floor.unix", pair))
