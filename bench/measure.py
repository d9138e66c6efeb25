"""Measuring tools of the harness: rows, percentiles, the wrk client, MQTT clients, RSS, load.

HTTP load comes from `wrk` (Debian package, compiled; one client thread), MQTT bursts from
`mosquitto_pub -l` and `mosquitto_sub -C`, so the load generator is not what is measured.
Paced MQTT (100 msg/s) uses paho in a thread: at that rate it is idle most of the time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

WRK_SCRIPT = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  method = args[1]
  template = args[2]
  spread = tonumber(args[3])
  unique = args[4]
  keys = tonumber(args[5] or "0")
end
function request()
  counter = counter + 1
  local path = template
  local body = '{"seq":' .. counter .. '}'
  if keys > 0 then
    -- requests 0, 1, ... spread-1 go to {n} = 0, 1, ... spread-1 with one key, the next spread
    -- requests with the next key: with spread 2, each pair of requests shares a key
    local n = counter - 1
    local group = math.max(spread, 1)
    if spread > 0 then path = string.gsub(template, "{n}", tostring(n % spread)) end
    body = '{"seq":' .. counter .. ',"deviceId":"' .. unique .. '-' .. (math.floor(n / group) % keys) .. '"}'
  else
    if spread > 0 then path = string.gsub(template, "{n}", tostring(counter % spread)) end
    if unique ~= "" then body = '{"run":"' .. unique .. '","t":' .. tid .. ',"seq":' .. counter .. '}' end
  end
  if method == "GET" then body = nil end
  return wrk.format(method, path, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"status_errors":%d,"socket_errors":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One measured line of the report: a system on a scenario, timed from `timed`."""

    scenario: str
    system: str  # triggerhub | node-red | floor
    timed: str  # from where to where
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    rate_per_s: float | None = None
    rate_samples: int = 0
    floor: str = ""  # the scenario name of the floor row this one is divided by
    ratio: dict[str, float] = field(default_factory=dict)  # p50, p99: x floor; rate: fraction of floor
    values: dict[str, float] = field(default_factory=dict)  # scenario-specific numbers (per step, RSS, ...)
    notes: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    status_errors: int
    socket_errors: int

    @property
    def rate_per_s(self) -> float:
        return self.requests / self.duration_s


def ensure_tool(command: str, package: str) -> None:
    """Install the Debian package of a missing client tool, as the service scripts do (needs root)."""
    if shutil.which(command) is not None:
        return
    common = Path(__file__).resolve().parents[1] / "scripts" / "services" / "common.sh"
    print(f"  {command} is missing: installing the Debian package {package} ...", flush=True)
    installed = subprocess.run(["bash", "-c", f'source "{common}" && th_apt_install {package}'], check=False)
    if installed.returncode != 0 or shutil.which(command) is None:
        raise SystemExit(f"{command} is missing and could not be installed: run apt-get install -y {package} as root")


def wrk(url: str, *, method: str = "POST", connections: int = 1, duration_s: float = 2.0,
        headers: dict[str, str] | None = None, spread: int = 0, unique: str = "", keys: int = 0) -> WrkResult:
    """Run wrk (one thread) against `url`; `{n}` in the path cycles 0..spread-1; `unique` makes every
    body distinct; `keys` > 0: bodies carry `deviceId` "<unique>-<k>", k cycling over `keys`
    devices, each device's key on `spread` consecutive requests (one to each {n})."""
    ensure_tool("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    scheme_host, _, path = url.partition("//")[2].partition("/")
    base = url[: url.index(scheme_host) + len(scheme_host)]
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s",
               "-s", script.name, "-H", "Content-Type: application/json"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += [base, "--", method, "/" + path, str(spread), unique, str(keys)]
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration_s + 60).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000,
                     data["status_errors"], data["socket_errors"])


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) `pid` has used so far, in ms, from /proc (its children not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """(RSS of `pid` alone, RSS of `pid` and all its descendants) in MiB, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))

    def rss(one: int) -> float:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    total, stack = 0.0, [pid]
    while stack:
        one = stack.pop()
        total += rss(one)
        stack.extend(children.get(one, []))
    return rss(pid), total


class LoadSampler:
    """Samples the 1-minute load average every few seconds while the harness runs."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.samples: list[float] = []
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self._interval_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])


@contextmanager
def mqtt_listener(host: str, port: int, topic: str) -> Iterator[list[tuple[float, dict[str, object]]]]:
    """Subscribe (QoS 1) to `topic`; yields a list that fills with (receive wall time ms, JSON payload)."""
    received: list[tuple[float, dict[str, object]]] = []
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-listen-{os.getpid()}-{time.monotonic_ns()}")
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, msg: received.append((time.time() * 1000, json.loads(msg.payload)))
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit(f"no SUBACK from {host}:{port} for {topic}")
    try:
        yield received
    finally:
        client.loop_stop()
        client.disconnect()


def publish_paced(host: str, port: int, topic: str, count: int, rate_per_s: float) -> None:
    """Publish `count` QoS 1 messages {"seq", "sent_ms"} at `rate_per_s`."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paced-{os.getpid()}-{time.monotonic_ns()}")
    client.connect(host, port)
    client.loop_start()
    start = time.perf_counter()
    infos = []
    for seq in range(count):
        delay = start + seq / rate_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        infos.append(client.publish(topic, json.dumps({"seq": seq, "sent_ms": time.time() * 1000}), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()


def publish_burst(host: str, port: int, topic: str, count: int) -> subprocess.Popen[bytes]:
    """Start `mosquitto_pub -l` publishing `count` QoS 1 lines as fast as the broker takes them."""
    ensure_tool("mosquitto_pub", "mosquitto-clients")
    lines = "".join(json.dumps({"seq": seq, "sent_ms": 0}) + "\n" for seq in range(count)).encode()
    publisher = subprocess.Popen(["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-l"],
                                 stdin=subprocess.PIPE)
    assert publisher.stdin is not None
    publisher.stdin.write(lines)
    publisher.stdin.close()
    return publisher


def receive_burst(host: str, port: int, topic: str, count: int) -> subprocess.Popen[bytes]:
    """Start `mosquitto_sub -C count` (QoS 1): it exits once `count` messages arrived."""
    return subprocess.Popen(["mosquitto_sub", "-h", host, "-p", str(port), "-q", "1", "-t", topic,
                             "-C", str(count), "-W", "120"], stdout=subprocess.DEVNULL)
