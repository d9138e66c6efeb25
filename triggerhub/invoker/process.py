"""The process runtime: each action runtime is a local proxy process (no container).

Used when no Docker engine answers. The proxy (runtimes/<lang>/proxy*) listens on a Unix
socket in a private temporary directory; stdout and stderr are pipes read by the hub.
With a `Sandbox` (sandbox.py, the default of `triggerhub up`) each proxy runs under bubblewrap as
an unprivileged user with its own namespaces, no network unless asked, and its memory, process
and file-size limits; without one it runs as the hub's user, NOT isolated. Blackbox (image)
actions are refused either way. Each proxy holds the read end of a pipe whose write end only the
hub holds (its lifeline, `TRIGGERHUB_LIFELINE_FD`): however the hub ends, even by kill -9 before
bwrap's --die-with-parent is armed, the proxy reads end-of-file and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triggerhub.config import search_path
from triggerhub.errors import ActionRuntimeError, UnsupportedKind
from triggerhub.invoker.base import LOG_SENTINEL, ProxyResponse, RuntimeSpec
from triggerhub.invoker.cgroups import Cgroup
from triggerhub.invoker.proxy_client import ProxyClient
from triggerhub.invoker.sandbox import PROCESS_LIMIT, PROXY_MOUNT, SOCKET_MOUNT, Sandbox
from triggerhub.model import JSON, Kind

logger = logging.getLogger(__name__)

RUNTIMES_DIR = Path(__file__).resolve().parents[2] / "runtimes"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes including the terminating NUL
DIR_PREFIX = "triggerhub-proc-"
SOCKET_NAME = "proxy.sock"
SOCKET_DIR = "sock"  # inside the runtime's directory: the only host folder a sandbox sees
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
LIFELINE_ENV = "TRIGGERHUB_LIFELINE_FD"  # the proxy exits when this pipe ends
_LINE_MAX_BYTES = 1024 * 1024  # longer log lines are split into parts of this size
_STREAM_CAP_BYTES = 11 * 1024 * 1024  # kept per stream per activation; above the 10 MB log limit
_SENTINEL = LOG_SENTINEL.encode()
COLLECTION_ISSUE = "There was an issue while collecting your logs. Data might be missing."


@dataclass(frozen=True, slots=True)
class LogLine:
    time_ns: int
    stream: str  # "stdout" or "stderr"
    text: str


def format_logs(lines: list[LogLine], limit_bytes: int) -> list[str]:
    """OpenWhisk's activation log lines: `f"{time:<30} {stream}: {text}"`, cut at `limit_bytes`
    (counting the UTF-8 bytes of each line's text) with a closing truncation notice."""
    out: list[str] = []
    total_bytes = 0
    for line in sorted(lines, key=lambda entry: entry.time_ns):
        total_bytes += len(line.text.encode("utf-8"))
        if total_bytes > limit_bytes:
            out.append(f"Logs were truncated because the total bytes size exceeds the limit of {limit_bytes} bytes.")
            break
        out.append(f"{iso_ns(line.time_ns):<30} {line.stream}: {line.text}")
    return out


def iso_ns(time_ns: int) -> str:
    """`2026-11-28T03:19:26.123456789Z` (nanoseconds, as docker stamps its log lines)."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class LogStream:
    """One pipe of a proxy: lines stamped as they arrive, split into activations by sentinels."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._partial = b""
        self._entries: list[LogLine | None] = []  # None marks a sentinel
        self._kept_bytes = 0
        self.sentinels = 0
        self.at_eof = False

    @property
    def ready(self) -> bool:
        """The current activation's lines are complete (its sentinel came, or the pipe closed)."""
        return self.sentinels > 0 or self.at_eof

    def feed(self, data: bytes) -> None:
        stamp = time.time_ns()
        *complete, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > _LINE_MAX_BYTES:  # a very long line is taken in parts
            complete.append(self._partial)
            self._partial = b""
        for raw in complete:
            self._add(raw, stamp)

    def close(self) -> None:
        if self._partial:
            self._add(self._partial, time.time_ns())
            self._partial = b""
        self.at_eof = True

    def take(self) -> list[LogLine]:
        """The lines up to the first sentinel (all of them when none came), consumed."""
        if self.sentinels:
            end = self._entries.index(None)
            lines, self._entries = self._entries[:end], self._entries[end + 1:]
            self.sentinels -= 1
        else:
            lines, self._entries = self._entries, []
        kept = [line for line in lines if line is not None]
        self._kept_bytes -= sum(len(line.text) for line in kept)
        return kept

    def _add(self, raw: bytes, stamp: int) -> None:
        text = raw.rstrip(b"\r")
        is_sentinel = text.endswith(_SENTINEL)
        if is_sentinel:
            text = text[: -len(_SENTINEL)]
        if (text or not is_sentinel) and self._kept_bytes < _STREAM_CAP_BYTES:
            line = LogLine(stamp, self.name, text.decode("utf-8", errors="replace"))
            self._kept_bytes += len(line.text)
            self._entries.append(line)
        if is_sentinel:
            self._entries.append(None)
            self.sentinels += 1


class _ProxyProtocol(asyncio.SubprocessProtocol):
    """Receives the proxy's pipes as data arrives: nothing ever blocks the action on a full pipe."""

    def __init__(self) -> None:
        self.streams = {1: LogStream("stdout"), 2: LogStream("stderr")}
        self.changed = asyncio.Event()
        self.exited = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        stream = self.streams[fd]
        sentinels = stream.sentinels
        stream.feed(data)
        if stream.sentinels != sentinels:
            self.changed.set()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self.streams:
            self.streams[fd].close()
            self.changed.set()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until `condition()` holds after a pipe event."""
        if condition():
            return True
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


class ProcessRuntime:
    """A proxy process; one activation at a time (the pool guarantees it)."""

    def __init__(self, spec: RuntimeSpec, transport: asyncio.SubprocessTransport, protocol: _ProxyProtocol,
                 client: ProxyClient, workdir: str, log_grace_ms: int, cgroup: Cgroup | None = None, *,
                 lifeline_fd: int | None = None) -> None:
        self.spec = spec
        self.pid: int = transport.get_pid()
        self._transport = transport
        self._protocol = protocol
        self._client = client
        self._workdir = workdir
        self._log_grace_ms = log_grace_ms
        self._cgroup = cgroup
        self._lifeline_fd = lifeline_fd  # the write end of the proxy's lifeline pipe
        self._oom_kills_seen = 0
        self._streams = tuple(protocol.streams.values())
        self._destroyed = False

    async def init(self, value: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return self._with_oom(await self._client.post("/init", {"value": value}, timeout_ms))

    async def run(self, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return self._with_oom(await self._client.post("/run", body, timeout_ms))

    def _with_oom(self, response: ProxyResponse) -> ProxyResponse:
        """Marks a failed exchange during which the kernel killed a process of this runtime's
        memory cgroup (the count is raised before the victim dies, so it is never late)."""
        if self._cgroup is None or response.timed_out or 0 < response.status < 500:
            return response
        kills = self._cgroup.oom_kills()
        if kills <= self._oom_kills_seen:
            return response
        self._oom_kills_seen = kills
        logger.info("process runtime %s (%s): killed for exceeding %d MB", self.pid, self.spec.kind,
                    self.spec.memory_mb)
        return dataclasses.replace(response, oom=True)

    async def logs(self, limit_bytes: int) -> list[str]:
        """Lines since the last call, up to both sentinels. After destroy(): what the process
        wrote before it died. Waits at most the log grace for missing sentinels."""
        complete = await self._protocol.until(lambda: all(s.ready for s in self._streams),
                                              self._log_grace_ms / 1000)
        lines = format_logs([line for stream in self._streams for line in stream.take()], limit_bytes)
        if not complete:
            lines.append(COLLECTION_ISSUE)
        return lines

    async def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    async def resume(self) -> None:
        self._signal(signal.SIGCONT)

    async def destroy(self) -> None:
        """Kill the whole process group, keep what it wrote for logs(), remove its directory."""
        if self._destroyed:
            return
        self._destroyed = True
        self._signal(signal.SIGKILL)
        if self._lifeline_fd is not None:
            os.close(self._lifeline_fd)
            self._lifeline_fd = None
        await self._protocol.exited
        await self._client.close()
        # A grandchild that left the process group may still hold a pipe: wait only briefly.
        await self._protocol.until(lambda: all(s.at_eof for s in self._streams), 1.0)
        self._transport.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self._cgroup is not None:
            await self._cgroup.remove()
        logger.debug("process runtime %s (%s) destroyed", self.pid, self.spec.kind)

    @property
    def exited(self) -> bool:
        return self._protocol.exited.done()

    def stderr_text(self) -> str:
        return " ".join(line.text for line in self._streams[1].take())

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


class ProcessRuntimeFactory:
    """Starts proxy processes: python:* → `python3 proxy.py`, nodejs:* → `node proxy.js`.

    With `sandbox` each proxy runs under bubblewrap (see sandbox.py); with None it runs as the
    hub's user, unlimited and not isolated (the composition root allows that only when asked).
    """

    def __init__(self, *, runtimes_dir: Path = RUNTIMES_DIR, python: str = sys.executable,
                 node: str = "node", start_timeout_ms: int = 10_000, log_grace_ms: int = 2_000,
                 api_host: str | None = None, temp_root: str | None = None,
                 sandbox: Sandbox | None = None) -> None:
        self._proxies = {"python": runtimes_dir / "python" / "proxy.py", "nodejs": runtimes_dir / "nodejs" / "proxy.js"}
        self._interpreters = {"python": python, "nodejs": node}
        self._start_timeout_ms = start_timeout_ms
        self._log_grace_ms = log_grace_ms
        self._api_host = api_host
        self._temp_root = temp_root or tempfile.gettempdir()
        self._sandbox = sandbox
        longest = len(os.path.join(self._temp_root, f"{DIR_PREFIX}{os.getpid()}-{'x' * 8}", SOCKET_DIR, SOCKET_NAME))
        if longest > MAX_SOCKET_PATH:
            raise ActionRuntimeError(f"temporary folder '{self._temp_root}' is too deep for Unix socket paths "
                                     f"({longest} > {MAX_SOCKET_PATH} characters); set TMPDIR to a shorter folder")
        if sandbox is not None:
            sandbox.check_reachable(Path(self._temp_root))

    async def create(self, spec: RuntimeSpec) -> ProcessRuntime:
        family = self._family(spec)
        # The owner's pid is in the name, so that cleanup_orphans of another hub process sees it
        # from the moment the directory exists.
        workdir = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=self._temp_root)
        socket_dir = os.path.join(workdir, SOCKET_DIR)
        os.mkdir(socket_dir, 0o700)
        socket_path = os.path.join(socket_dir, SOCKET_NAME)
        # The proxy inherits the read end; the write end stays in this process alone (close-on-exec)
        # until destroy(), so the proxy reads end-of-file as soon as the hub is gone, however it ended.
        lifeline_read, lifeline_write = os.pipe()
        try:
            transport, protocol, cgroup = await self._start(spec, family, workdir, socket_dir, lifeline_read)
        except BaseException:
            os.close(lifeline_write)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            os.close(lifeline_read)
        Path(workdir, "pid").write_text(str(transport.get_pid()))
        client = ProxyClient(socket_path=socket_path)
        runtime = ProcessRuntime(spec, transport, protocol, client, workdir, self._log_grace_ms, cgroup,
                                 lifeline_fd=lifeline_write)
        try:
            ready = await self._wait_ready(runtime, client)
        except BaseException:  # cancelled while it starts (the pool or the hub is closing): it goes too
            await runtime.destroy()
            raise
        if not ready:
            await runtime.destroy()
            raise ActionRuntimeError(f"the {spec.kind} proxy did not answer on {socket_path} "
                                     f"within {self._start_timeout_ms} ms; its stderr: "
                                     f"{runtime.stderr_text()[-500:] or '(empty)'}")
        if self._sandbox is not None:
            self._sandbox.close_socket_folder(socket_dir)
        logger.debug("process runtime %s (%s) started", runtime.pid, spec.kind)
        return runtime

    async def _start(self, spec: RuntimeSpec, family: str, workdir: str, socket_dir: str,
                     lifeline_fd: int) -> tuple[asyncio.SubprocessTransport, _ProxyProtocol, Cgroup | None]:
        """The proxy process, in its sandbox and cgroup if there is one, holding `lifeline_fd`."""
        cgroup: Cgroup | None = None
        try:
            if self._sandbox is None:
                command = [self._interpreters[family], str(self._proxies[family])]
                env = self._env(workdir, os.path.join(socket_dir, SOCKET_NAME), lifeline_fd)
                transport, protocol = await self._spawn(command, env, workdir, (lifeline_fd,))
            else:
                cgroup, sandboxed = self._sandboxed(self._sandbox, spec, family, workdir, socket_dir)
                with open(self._proxies[family], "rb") as proxy:
                    env = self._env("/tmp", f"{SOCKET_MOUNT}/{SOCKET_NAME}", lifeline_fd)
                    env["PATH"] = SANDBOX_PATH
                    transport, protocol = await self._spawn(sandboxed(proxy.fileno()), env, "/",
                                                            (proxy.fileno(), lifeline_fd))
        except BaseException as exc:  # OSError, or cancelled: a proxy already forked was killed by asyncio
            if cgroup is not None:
                await cgroup.remove()
            if isinstance(exc, OSError):
                raise ActionRuntimeError(f"cannot start the {spec.kind} proxy: {exc}; "
                                         f"is {self._interpreters[family]!r} installed and on PATH?") from exc
            raise
        return transport, protocol, cgroup

    def _sandboxed(self, sandbox: Sandbox, spec: RuntimeSpec, family: str, workdir: str,
                   socket_dir: str) -> tuple[Cgroup | None, Callable[[int], list[str]]]:
        """The runtime's cgroup (if the sandbox has cgroups) and its command for a proxy fd."""
        sandbox.open_folders(workdir, socket_dir)
        interpreter = str(Path(shutil.which(self._interpreters[family]) or self._interpreters[family]).resolve())
        proxy_name = self._proxies[family].name
        cgroup = (sandbox.cgroups.create(os.path.basename(workdir), memory_mb=spec.memory_mb,
                                         process_limit=PROCESS_LIMIT) if sandbox.cgroups else None)

        def command(proxy_fd: int) -> list[str]:
            return sandbox.command([interpreter, f"{PROXY_MOUNT}/{proxy_name}"], proxy_fd=proxy_fd,
                                   proxy_name=proxy_name, socket_dir=socket_dir, memory_mb=spec.memory_mb,
                                   network=spec.network, cgroup=cgroup)

        return cgroup, command

    async def _spawn(self, command: list[str], env: dict[str, str], cwd: str,
                     pass_fds: tuple[int, ...]) -> tuple[asyncio.SubprocessTransport, _ProxyProtocol]:
        loop = asyncio.get_running_loop()
        # restore_signals=False keeps SIGXFSZ ignored, as the hub has it: an action over its file
        # size limit gets EFBIG on the write instead of being killed.
        return await loop.subprocess_exec(
            _ProxyProtocol, *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env, start_new_session=True, pass_fds=pass_fds,
            restore_signals=False)

    async def cleanup_orphans(self) -> int:
        """Kill proxies whose hub process is gone and remove their directories (and cgroups)."""
        removed = 0
        for workdir in Path(self._temp_root).glob(DIR_PREFIX + "*"):
            if not _orphaned(workdir.name):
                continue
            pid = _read_pid(workdir / "pid")
            if pid is not None and _is_proxy(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            shutil.rmtree(workdir, ignore_errors=True)
            removed += 1
        if self._sandbox is not None and self._sandbox.cgroups is not None:
            self._sandbox.cgroups.remove_orphans(DIR_PREFIX, _orphaned)
        return removed

    def _family(self, spec: RuntimeSpec) -> str:
        if spec.kind == Kind.BLACKBOX or spec.image is not None:
            raise UnsupportedKind(f"the process runtime cannot run blackbox actions (image {spec.image!r}): "
                                  "start the hub with a Docker engine (TRIGGERHUB_RUNTIME=docker) or "
                                  "rewrite the action in a python or nodejs kind")
        family = spec.kind.partition(":")[0]
        if family not in self._proxies:
            raise UnsupportedKind(f"kind {spec.kind!r} is not supported by the process runtime; "
                                  f"supported: {', '.join(sorted(self._proxies))}")
        return family

    def _env(self, home: str, socket_path: str, lifeline_fd: int) -> dict[str, str]:
        # A clean environment: the hub's own settings (database URLs, keys) must not leak in.
        env = {"PATH": search_path(), "HOME": home, "LANG": "C.UTF-8", "TMPDIR": home,
               "PYTHONDONTWRITEBYTECODE": "1", "TRIGGERHUB_SOCKET": socket_path, LIFELINE_ENV: str(lifeline_fd)}
        if self._api_host:
            env["__OW_API_HOST"] = self._api_host
        return env

    async def _wait_ready(self, runtime: ProcessRuntime, client: ProxyClient) -> bool:
        return await client.ready(self._start_timeout_ms, alive=lambda: not runtime.exited)


def _orphaned(name: str) -> bool:
    """A runtime directory (or cgroup) whose owning hub process, named in it, is gone."""
    owner = name[len(DIR_PREFIX):].partition("-")[0]
    return owner.isdigit() and not _alive(int(owner))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_proxy(pid: int) -> bool:
    """Guards against a recycled pid: only a process running one of our proxies is killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"proxy.py" in cmdline or b"proxy.js" in cmdline
