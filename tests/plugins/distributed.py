"""Fixtures for distributed mode: controller, worker and invokers on Kafka and PostgreSQL.

`deployment` starts every role as its own process (`python -m triggerhub.cli.distributed ...`)
on a fresh database and a fresh topic prefix, for fault tests that kill them. `distributed_hub`
is the HubClient-compatible fixture for the API suite: worker, feeds and two invoker processes shared
by the session, and a controller started in the test's own loop on tables emptied for each test.
Every process is killed at teardown, with the action proxies its invokers started, and the
deployment's topics are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.plugins.cli import free_port
from tests.plugins.hub import HubClient
from tests.plugins.services import PROJECT_ROOT, asyncpg_dsn, create_database, drop_database, run_in_thread
from triggerhub.bus.topics import delete_topics
from triggerhub.config import HubConfig, load_config

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
INVOKER_COUNT = 2
SESSION_TIMEOUT_MS = 6000  # the broker's group.min.session.timeout.ms
EMPTIED_TABLES = ("entities", "activations", "pending", "events", "feeds", "cursors", "api_routes",
                  "rule_counts", "replays", "retries", "dead_letters", "derive_state", "derive_outbox", "feed_counts")


@dataclass
class HubProcess:
    role: str
    popen: subprocess.Popen[str]
    log_path: Path
    ready_line: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    """Processes of one distributed hub sharing `env` (database URL, topic prefix, home)."""

    root: Path
    env: dict[str, str]
    processes: list[HubProcess] = field(default_factory=list)

    def start(self, role: str, *args: str, extra_env: dict[str, str] | None = None,
              wait_ready: bool = True) -> HubProcess:
        """Start `triggerhub <role> <args>` and wait for the line it prints once ready (or call
        `wait_ready(process)` later)."""
        name = "-".join((role, *args)).replace("--", "")
        starts = sum(1 for p in self.processes if p.log_path.name.startswith(f"{name}."))
        log_path = self.root / (f"{name}.log" if not starts else f"{name}.{starts}.log")
        env = {**os.environ, **self.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1",
               "TMPDIR": str(self.proxies_dir)}
        with log_path.open("w") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "triggerhub.cli.distributed", role, *args], cwd=PROJECT_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, text=True,
                start_new_session=True)
        process = HubProcess(role, popen, log_path)
        self.processes.append(process)
        if wait_ready:
            self.wait_ready(process)
        return process

    @staticmethod
    def wait_ready(process: HubProcess, timeout_s: float = READY_TIMEOUT_S) -> str:
        process.ready_line = _read_ready_line(process, timeout_s)
        return process.ready_line

    @property
    def proxies_dir(self) -> Path:
        """Short and per deployment: Unix socket paths inside it must stay under 108 bytes."""
        path = Path(tempfile.gettempdir()) / f"thp-{hashlib.sha1(str(self.root).encode()).hexdigest()[:10]}"
        path.mkdir(exist_ok=True)
        return path

    @property
    def credentials(self) -> dict[str, str]:
        import json

        return json.loads((Path(self.env["TRIGGERHUB_HOME"]) / "credentials.json").read_text())

    def config(self, **env: str) -> HubConfig:
        return load_config(env={**self.env, **env})

    def stop_all(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.popen.stdout is not None:
                process.popen.stdout.close()
        _kill_orphaned_proxies(self.proxies_dir)
        shutil.rmtree(self.proxies_dir, ignore_errors=True)
        # Its topics go too: the shared broker would keep them for ever, and every client's
        # metadata refresh costs CPU per topic (2,687 test topics once cost ~55 ms a refresh).
        kafka = self.config().kafka
        run_in_thread(lambda: delete_topics(kafka, prefix=kafka.topic_prefix))


def _read_ready_line(process: HubProcess, timeout_s: float) -> str:
    stdout = process.popen.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = stdout.readline()
                if line:
                    return line.strip()
            if process.popen.poll() is not None:
                break
    raise RuntimeError(f"triggerhub {process.role} did not get ready (exit code {process.popen.poll()}); "
                       f"its log {process.log_path}:\n{process.log_tail()}")


def _kill_orphaned_proxies(proxies_dir: Path) -> None:
    """Action proxies run in sessions of their own; an invoker killed with -9 leaves them behind."""
    for pid_file in proxies_dir.glob("*/pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text())
            if "proxy" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.killpg(pid, signal.SIGKILL)


def deployment_env(pg_url: str, kafka_bootstrap: str, home: Path, **extra: str) -> dict[str, str]:
    return {
        "TRIGGERHUB_STORE_URL": pg_url, "TRIGGERHUB_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRIGGERHUB_KAFKA_TOPIC_PREFIX": f"th-test-{secrets.token_hex(4)}.", "TRIGGERHUB_HOME": str(home),
        "TRIGGERHUB_PORT": "0", "TRIGGERHUB_RUNTIME": "process", "TRIGGERHUB_DEPLOY_EXAMPLES": "false",
        "TRIGGERHUB_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), "TRIGGERHUB_PREWARM_COUNT": "0",
        "TRIGGERHUB_PROPS": str(home.parent / "triggerhubprops"),  # a controller writes it; never the user's
        **extra,
    }


@contextlib.contextmanager
def started(deployment: Deployment) -> Iterator[Deployment]:
    try:
        yield deployment
    finally:
        deployment.stop_all()


# ---------------------------------------------------------------- every role a process


@pytest.fixture
def deployment(pg_admin_url: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    """An empty deployment (fresh database and topic prefix); the test starts the roles it needs."""
    url = create_database(pg_admin_url, "th_dist")
    env = deployment_env(url, kafka_bootstrap, tmp_path / "home")
    try:
        with started(Deployment(tmp_path, env)) as running:
            yield running
    finally:
        drop_database(pg_admin_url, url)


def controller_apihost(process: HubProcess) -> str:
    return process.ready_line.rsplit(" ", 1)[-1]


@dataclass
class ApiClient:
    """HubClient's REST helper for a controller running in another process."""

    apihost: str
    auth: str
    session: aiohttp.ClientSession

    call = HubClient.call
    headers = HubClient.headers

    async def admin(self, path: str) -> Any:
        async with self.session.get(f"{self.apihost}/{path.lstrip('/')}") as response:
            return await response.json()


@contextlib.asynccontextmanager
async def api_client(deployment: Deployment, controller: HubProcess) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(controller_apihost(controller), deployment.credentials["guest"], session)


STUCK_JOIN_S = 45.0


async def wait_for_invokers(client: Any, count: int, timeout_s: float = READY_TIMEOUT_S, *,
                            restart: Callable[[str], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Wait until `count` invokers are up and each holds partitions of the invocations topic.

    When invokers were Faust apps, two joining their group together now and then stayed in a
    rebalance that never completed (Faust's unbounded wait at revocation); invokers now use
    bus/group.py, whose wait is bounded. The safety net stays: with `restart`, an invoker still
    without partitions after STUCK_JOIN_S is killed and started again once, as after any
    invoker crash, and a WARNING says so, since it should never happen."""
    loop = asyncio.get_running_loop()
    restart_at = loop.time() + STUCK_JOIN_S
    restarted: set[str] = set()
    async with asyncio.timeout(timeout_s):
        while True:
            states = await client.admin("invokers")
            statistics = await client.admin("invokers/statistics")
            up = [name for name, state in states.items() if state == "up"]
            if len(up) == count and all(statistics.get(name, {}).get("partitions", 0) > 0 for name in up):
                return statistics
            if restart is not None and loop.time() > restart_at:
                for name in (f"invoker{i}" for i in range(count)):
                    if name not in restarted and statistics.get(name, {}).get("partitions", 0) == 0:
                        log.warning("%s holds no partitions after %.0f s: restarting it (a stuck rebalance; "
                                    "this should not happen any more)", name, STUCK_JOIN_S)
                        restarted.add(name)
                        await restart(name)
                restart_at = loop.time() + STUCK_JOIN_S
            await asyncio.sleep(0.2)


def invoker_restarter(deployment: Deployment, processes: dict[str, HubProcess],
                      metrics_ports: dict[str, int] | None = None) -> Callable[[str], Awaitable[None]]:
    """restart(name) for wait_for_invokers: kill -9 invoker `name` and start it again (in a thread,
    since starting waits for its ready line), on its /metrics port if it had one."""
    async def restart(name: str) -> None:
        process = processes[name]
        process.kill()
        port = (metrics_ports or {}).get(name)
        extra_env = {"TRIGGERHUB_METRICS_PORT": str(port)} if port else None
        processes[name] = await asyncio.to_thread(deployment.start, "invoker", "--id", name.removeprefix("invoker"),
                                                  extra_env=extra_env)
    return restart


# ---------------------------------------------------------------- the API suite's fixture


@dataclass
class SharedCluster:
    deployment: Deployment
    url: str
    invokers: dict[str, HubProcess]
    metrics_ports: dict[str, int]  # role (worker, feeds, invoker0, ...) -> its loopback /metrics port


@pytest.fixture(scope="session")
def distributed_cluster(pg_admin_url: str, kafka_bootstrap: str,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedCluster]:
    """One worker, one feeds process and two invokers for the whole session (limits raised in the worker: the API
    suite's throttle expectations are the controller's, which each test starts afresh)."""
    root = tmp_path_factory.mktemp("distributed")
    url = create_database(pg_admin_url, "th_dist_session")
    env = deployment_env(url, kafka_bootstrap, root / "home")
    try:
        with started(Deployment(root, env)) as running:
            relaxed = {"TRIGGERHUB_INVOCATIONS_PER_MINUTE": "100000", "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000"}
            ports = {role: free_port() for role in ("worker", "feeds", *(f"invoker{i}" for i in range(INVOKER_COUNT)))}

            def metrics_env(role: str) -> dict[str, str]:
                return {"TRIGGERHUB_METRICS_PORT": str(ports[role])}

            running.start("worker", extra_env={**relaxed, **metrics_env("worker")})
            running.start("feeds", extra_env={**relaxed, **metrics_env("feeds")})
            invokers = {f"invoker{i}": running.start("invoker", "--id", str(i), extra_env=metrics_env(f"invoker{i}"))
                        for i in range(INVOKER_COUNT)}
            yield SharedCluster(running, url, invokers, ports)
    finally:
        drop_database(pg_admin_url, url)


@dataclass
class ControllerAdmin:
    apihost: str
    session: aiohttp.ClientSession

    async def admin(self, path: str) -> Any:
        async with self.session.get(f"{self.apihost}/{path.lstrip('/')}") as response:
            return await response.json()


@pytest.fixture
async def distributed_hub(distributed_cluster: SharedCluster) -> AsyncIterator[HubClient]:
    """HubClient-compatible (.apihost, .auth, .call; .hub.engine is the controller's engine)."""
    from triggerhub.cli.distributed import running_controller

    connection = await asyncpg.connect(asyncpg_dsn(distributed_cluster.url))
    try:
        tables = [t for t in EMPTIED_TABLES
                  if await connection.fetchval("SELECT to_regclass($1)", t) is not None]
        if tables:
            await connection.execute(f"TRUNCATE {', '.join(tables)}")
    finally:
        await connection.close()
    async with running_controller(distributed_cluster.deployment.config()) as controller:
        async with aiohttp.ClientSession() as session:
            await wait_for_invokers(ControllerAdmin(controller.apihost, session), INVOKER_COUNT,
                                    restart=invoker_restarter(distributed_cluster.deployment,
                                                              distributed_cluster.invokers,
                                                              distributed_cluster.metrics_ports))
            yield HubClient(controller, session)  # type: ignore[arg-type]
