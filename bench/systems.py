"""The systems a run starts, each on 127.0.0.1 in a process of its own, stopped when the block ends.

- floors: `bench.floors` servers (aiohttp in-process; aiohttp -> Unix socket -> warm worker);
- a private Mosquitto with a queue large enough for a burst (`max_queued_messages 100000`; the
  default 1,000 drops the tail of a 5,000-message burst to a slow subscriber);
- `triggerhub up` (SQLite, process or docker runtime) with limits raised out of the way;
- Node-RED 4.x from bench/peer (`npm ci` on first use) with bench/peer/flows.json.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "bench" / "peer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def started(command: list[str], log: Path, *, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        yield process
    finally:
        stop(process)


@contextmanager
def aiohttp_floor(scratch: Path) -> Iterator[str]:
    port = free_port()
    with started([sys.executable, "-m", "bench.floors", "aiohttp", "--port", str(port)], scratch / "floor.log",
                 cwd=ROOT) as process:
        wait_http(f"http://127.0.0.1:{port}/", process, scratch / "floor.log")
        yield f"http://127.0.0.1:{port}"


@contextmanager
def unix_floor(scratch: Path) -> Iterator[str]:
    port, path = free_port(), str(scratch / f"worker-{free_port()}.sock")
    with started([sys.executable, "-m", "bench.floors", "worker", "--socket", path], scratch / "worker.log",
                 cwd=ROOT) as worker:
        for _ in range(300):
            if os.path.exists(path) or worker.poll() is not None:
                break
            time.sleep(0.05)
        with started([sys.executable, "-m", "bench.floors", "unix", "--port", str(port), "--socket", path],
                     scratch / "floor-unix.log", cwd=ROOT) as front:
            wait_http(f"http://127.0.0.1:{port}/", front, scratch / "floor-unix.log")
            yield f"http://127.0.0.1:{port}"


@contextmanager
def mosquitto(scratch: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    conf = scratch / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\nlog_dest stderr\nlog_type error\n")
    binary = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else "mosquitto"
    with started([binary, "-c", str(conf)], scratch / "mosquitto.log"):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield "127.0.0.1", port


@dataclass(frozen=True, slots=True)
class Hub:
    pid: int
    apihost: str
    auth_header: str  # Basic ...
    home: Path

    @property
    def api(self) -> str:
        return f"{self.apihost}/api/v1/namespaces/_"

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        """One API call on /api/v1/namespaces/_/{path} (or on {path} from the root); returns (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        url = f"{self.apihost}{path}" if path.startswith("/") else f"{self.api}/{path}"
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Authorization": self.auth_header,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def must(self, method: str, path: str, body: object | None = None) -> object:
        status, answer = self.call(method, path, body)
        if status not in (200, 202):
            raise SystemExit(f"{method} {path} answered {status}: {answer}")
        return answer

    def count(self, name: str) -> int:
        answer = self.must("GET", f"activations?count=true&name={name}")
        assert isinstance(answer, dict)
        return int(answer["activations"])


@contextmanager
def hub(scratch: Path, *, runtime: str = "process", prewarm: int | None = 0, examples: bool = False,
        settings: dict[str, str] | None = None, checkout: Path | None = None) -> Iterator[Hub]:
    """`triggerhub up` with its limits raised; `prewarm=None` keeps the default stem cells (each kind's
    start after its first invoke); `prewarm=N` keeps N per kind, started with the hub; `settings`:
    more TRIGGERHUB_* variables; `checkout`: run the triggerhub package of that source tree (a
    folder holding `triggerhub/` and `runtimes/`) instead of this one."""
    home = Path(tempfile.mkdtemp(prefix=f"hub-{runtime}-", dir=scratch))
    port = free_port()
    env = {**os.environ, "TRIGGERHUB_INVOCATIONS_PER_MINUTE": "100000000",
           "TRIGGERHUB_CONCURRENT_INVOCATIONS": "100000", "TRIGGERHUB_FIRES_PER_MINUTE": "100000000",
           **(settings or {})}
    if prewarm is not None:
        env["TRIGGERHUB_PREWARM_COUNT"] = str(prewarm)
    if prewarm:
        env["TRIGGERHUB_PREWARM"] = "start"
    command = [sys.executable, "-m", "triggerhub.cli", "up", "--port", str(port), "--home", str(home),
               "--runtime", runtime, "--examples" if examples else "--no-examples"]
    if checkout is not None:  # from a folder without a triggerhub/ of its own, so PYTHONPATH decides
        env["PYTHONPATH"] = str(checkout.resolve())
    with started(command, home / "hub.log", env=env, cwd=home if checkout is not None else None) as process:
        wait_http(f"http://127.0.0.1:{port}/ping", process, home / "hub.log", timeout_s=120)
        auth = json.loads((home / "credentials.json").read_text())["guest"]
        yield Hub(process.pid, f"http://127.0.0.1:{port}", "Basic " + base64.b64encode(auth.encode()).decode(), home)


def peer_installed() -> Path:
    """bench/peer/node_modules/node-red, installed with `npm ci` from the lock file when missing."""
    red = PEER / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        print("installing Node-RED into bench/peer (npm ci) ...", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True)
    return red


@contextmanager
def node_red(scratch: Path, broker: tuple[str, int], prefix: str) -> Iterator[tuple[str, int]]:
    """Node-RED on loopback: POST /echo answers {}; MQTT {prefix}/+/temp (QoS 1) -> {prefix}/reply (QoS 1)."""
    red = peer_installed()
    user_dir = scratch / "node-red"
    user_dir.mkdir(exist_ok=True)
    flows = (PEER / "flows.json").read_text()
    flows = flows.replace("BROKER_HOST", broker[0]).replace("BROKER_PORT", str(broker[1])).replace("PREFIX", prefix)
    (user_dir / "flows.json").write_text(flows)
    port = free_port()
    command = ["node", str(red), "--settings", str(PEER / "settings.js"), "--userDir", str(user_dir),
               "--port", str(port), "flows.json"]
    log = scratch / "node-red.log"
    with started(command, log, cwd=user_dir) as process:
        wait_http(f"http://127.0.0.1:{port}/nothing-here", process, log)
        deadline = time.monotonic() + 30
        while "Connected to broker" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"Node-RED did not connect to the broker within 30 s; see {log}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
