"""Docker containers as action runtimes: the RuntimeFactory used whenever a Docker engine answers.

A managed kind's container runs the triggerhub action proxy, which listens on a Unix socket in a
per-container host directory bind-mounted at /run/triggerhub, so the container needs no network
(`--network none`). A blackbox image speaks the protocol on TCP 8080 instead: dockerd runs with
`--bridge=none`, so such containers join the user-defined bridge network `triggerhub`, whose host
binding is 127.0.0.1, and publish 8080 on 127.0.0.1 only (an action with `network: true` joins it
too; with dockerd's --iptables=false that reaches this host only, not the internet). Logs are read
from the container's attach stream and split at the activation sentinels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.types import LogConfig, Ulimit

from triggerhub.config import docker_host_of_environment
from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.base import LOG_SENTINEL, ProxyResponse, RuntimeSpec
from triggerhub.invoker.images import IMAGE_FOR_KIND
from triggerhub.invoker.process import COLLECTION_ISSUE, LogLine, format_logs
from triggerhub.invoker.proxy_client import ProxyClient
from triggerhub.model import JSON, Kind

logger = logging.getLogger(__name__)

MANAGED_LABEL = "triggerhub.managed"
HUB_LABEL = "triggerhub.hub"
KIND_LABEL = "triggerhub.kind"
FACTORY_LABEL = "triggerhub.factory"  # one value per factory instance, i.e. per hub process
BLACKBOX_NETWORK = "triggerhub"
BLACKBOX_PORT = 8080
SOCKET_MOUNT = "/run/triggerhub"
SOCKET_NAME = "action.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes including the terminating NUL
PIDS_LIMIT = 1024
NOFILE_LIMIT = 1024
CONNECT_RETRY_S = 0.002
OOM_CHECKS = 10
OOM_CHECK_INTERVAL_S = 0.02
_SENTINEL = LOG_SENTINEL.encode()
_STREAMS = {1: "stdout", 2: "stderr"}


class LogStream:
    """Demultiplexes a Docker attach stream into log lines, one activation at a time.

    Docker frames each write as an 8-byte header (stream id, 3 zero bytes, big-endian size) and
    the payload. A line ending in the sentinel marks the end of an activation on that stream;
    its text before the sentinel is kept. Lines past `cap_bytes` are dropped so a chatty action
    cannot exhaust the hub's memory (the limit given to `take()` is far below it).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 clock_ns: Callable[[], int], cap_bytes: int) -> None:
        self._reader = reader
        self._writer = writer
        self._clock_ns = clock_ns
        self._cap_bytes = cap_bytes
        self._frames = bytearray()
        self._partial = {1: bytearray(), 2: bytearray()}
        self._lines: list[LogLine] = []
        self._size_bytes = 0
        self._ended: set[int] = set()
        self.eof = False

    def begin_activation(self) -> None:
        """Forget sentinels already seen; lines not yet taken stay for the next `take()`."""
        self._ended.clear()

    @property
    def complete(self) -> bool:
        """Both sentinels of the current activation have arrived."""
        return len(self._ended) == 2

    async def pump(self, *, until_sentinels: bool) -> None:
        """Read the stream: until both sentinels arrived (or EOF), or until cancelled."""
        while not (until_sentinels and self.complete) and not self.eof:
            try:
                chunk = await self._reader.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                for stream_id in self._partial:  # the container died in mid-line
                    self._feed_stream(stream_id, b"\n" if self._partial[stream_id] else b"")
                return
            self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        self._frames += chunk
        while len(self._frames) >= 8:
            size = int.from_bytes(self._frames[4:8], "big")
            if len(self._frames) < 8 + size:
                return
            stream_id = self._frames[0]
            payload = bytes(self._frames[8:8 + size])
            del self._frames[:8 + size]
            if stream_id in self._partial:
                self._feed_stream(stream_id, payload)

    def _feed_stream(self, stream_id: int, payload: bytes) -> None:
        pending = self._partial[stream_id]
        pending += payload
        *lines, rest = pending.split(b"\n")
        if len(rest) > self._cap_bytes:  # one endless line: keep it bounded too
            lines.append(rest)
            rest = bytearray()
        self._partial[stream_id] = bytearray(rest)
        stamp_ns = self._clock_ns()
        for line in lines:
            if line.endswith(_SENTINEL):
                self._ended.add(stream_id)
                line = line[: -len(_SENTINEL)]
                if not line:
                    continue
            if self._size_bytes + len(line) <= self._cap_bytes:
                self._size_bytes += len(line)
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                self._lines.append(LogLine(stamp_ns, _STREAMS[stream_id], text))

    def take(self, limit_bytes: int) -> list[str]:
        """The formatted lines not taken yet, at most `limit_bytes` of text; consumed."""
        lines, self._lines, self._size_bytes = self._lines, [], 0
        return format_logs(lines, limit_bytes)

    def close(self) -> None:
        self._writer.close()


async def open_attach_stream(docker_socket: str, container_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Hijack `POST /containers/{id}/attach` into a raw stream the event loop can read.

    Done over asyncio rather than the SDK because the SDK's hijacked socket is blocking and its
    HTTP reader may already have buffered stream bytes.
    """
    reader, writer = await asyncio.open_unix_connection(docker_socket)
    writer.write(
        f"POST /containers/{container_id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
        "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    if status_line.split(b" ")[1:2] not in ([b"101"], [b"200"]):
        writer.close()
        raise ActionRuntimeError(
            f"attaching to container {container_id[:12]} failed: {status_line.decode(errors='replace').strip()}"
        )
    return reader, writer


class DockerRuntime:
    """One container speaking the OpenWhisk action protocol (implements base.Runtime)."""

    def __init__(self, *, spec: RuntimeSpec, client: docker.DockerClient, container_id: str, name: str,
                 proxy: ProxyClient, log: LogStream, socket_dir: Path | None, log_grace_ms: int) -> None:
        self.spec = spec
        self.container_id = container_id
        self.name = name
        self._api = client.api
        self._proxy = proxy
        self._log = log
        self._socket_dir = socket_dir
        self._log_grace_s = log_grace_ms / 1000
        self._sentinelled = spec.kind != Kind.BLACKBOX
        self._logs_missing = False
        self._oom_kills_seen = 0

    async def init(self, value: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return await self._exchange("/init", {"value": value}, timeout_ms, retry_connect=True)

    async def run(self, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        return await self._exchange("/run", body, timeout_ms, retry_connect=False)

    async def logs(self, limit_bytes: int) -> list[str]:
        lines = self._log.take(limit_bytes)
        if self._logs_missing:
            lines.append(COLLECTION_ISSUE)
            self._logs_missing = False
        return lines

    async def pause(self) -> None:
        await self._docker("pause", self._api.pause, self.container_id)

    async def resume(self) -> None:
        await self._docker("unpause", self._api.unpause, self.container_id)

    async def destroy(self) -> None:
        await self._proxy.close()
        self._log.close()
        try:
            await self._docker("remove", self._api.remove_container, self.container_id, force=True)
        except ActionRuntimeError as exc:
            if not isinstance(exc.__cause__, docker.errors.NotFound):
                raise
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        logger.info("container %s destroyed", self.name)

    async def _exchange(self, path: str, payload: dict[str, JSON], timeout_ms: int,
                        *, retry_connect: bool) -> ProxyResponse:
        # The log stream is read while the request is in flight: an action that logs more than
        # the pipe buffers hold would otherwise block before it can answer.
        deadline_s = asyncio.get_running_loop().time() + timeout_ms / 1000
        self._log.begin_activation()
        async with asyncio.TaskGroup() as tasks:
            pump = tasks.create_task(self._log.pump(until_sentinels=self._sentinelled))
            response = await self._post(path, payload, deadline_s, retry_connect=retry_connect)
            # The proxy writes sentinels after every /run and every failed /init; a proxy that
            # died ends the stream instead. Either ends the pump.
            sentinels_due = response.status != 0 and (path == "/run" or response.status != 200)
            crashed = response.status == 0 and not response.timed_out
            if self._sentinelled and (sentinels_due or crashed):
                await asyncio.wait({pump}, timeout=self._log_grace_s)
                self._logs_missing = not self._log.complete and not self._log.eof
            pump.cancel()
        if response.timed_out:
            logger.info("container %s: %s exceeded %d ms", self.name, path, timeout_ms)
        elif (response.status == 0 or response.status >= 500) and await self._oom_killed(connection_dropped=response.status == 0):
            logger.info("container %s: killed for exceeding %d MB", self.name, self.spec.memory_mb)
            return dataclasses.replace(response, oom=True)
        return response

    async def _post(self, path: str, payload: dict[str, JSON], deadline_s: float,
                    *, retry_connect: bool) -> ProxyResponse:
        loop = asyncio.get_running_loop()
        while True:
            remaining_ms = int((deadline_s - loop.time()) * 1000)
            if remaining_ms <= 0:
                return ProxyResponse(status=0, body=None, timed_out=True)
            response = await self._proxy.post(path, payload, remaining_ms)
            # /init may be sent before the proxy listens (a published port even accepts and then
            # drops the connection until then); OpenWhisk retries it too. /run is never retried.
            if response.status or response.timed_out or not retry_connect:
                return response
            await asyncio.sleep(CONNECT_RETRY_S)

    async def _oom_killed(self, *, connection_dropped: bool) -> bool:
        # When the proxy itself was killed, the dropped connection can be seen before dockerd has
        # recorded the exit and after the cgroup is gone; such a lag is retried briefly.
        for _ in range(OOM_CHECKS if connection_dropped else 1):
            kills = _cgroup_oom_kills(self.container_id)
            if kills is not None and kills > self._oom_kills_seen:
                # A child of the proxy may be the one killed; the container then lives on.
                self._oom_kills_seen = kills
                return True
            state = (await self._docker("inspect", self._api.inspect_container, self.container_id))["State"]
            if state.get("OOMKilled") or (not state.get("Running") and state.get("ExitCode") == 137):
                return True
            if not state.get("Running") or kills is not None or not connection_dropped:
                return False
            await asyncio.sleep(OOM_CHECK_INTERVAL_S)
        return False

    async def _docker(self, what: str, call: Callable[..., JSON], *args: JSON, **kwargs: JSON) -> JSON:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except docker.errors.DockerException as exc:
            raise ActionRuntimeError(f"docker {what} of container {self.name} failed: {exc}") from exc


class DockerRuntimeFactory:
    """Creates DockerRuntimes (implements base.RuntimeFactory).

    `hub_id` marks every container this hub creates; it must be unique among hubs sharing one
    dockerd, because `cleanup_orphans()` removes every container carrying it that another
    factory instance (an earlier, crashed run of the same hub) created. `docker_host` is the
    engine's address (`RuntimeConfig.docker_host`; by default DOCKER_HOST, through config).
    """

    def __init__(self, *, hub_id: str = "hub0", client: docker.DockerClient | None = None,
                 docker_host: str | None = None, docker_socket: str | None = None,
                 socket_root: Path | None = None,
                 api_host: str | None = None, clock_ns: Callable[[], int] = time.time_ns,
                 log_cap_bytes: int = 10 * 1024 * 1024, log_grace_ms: int = 2000,
                 pull_images: bool = True) -> None:
        host = docker_host or docker_host_of_environment()
        self._docker_socket = docker_socket or host.removeprefix("unix://")
        if docker_socket is None and not host.startswith("unix://"):
            raise ActionRuntimeError(
                f"DOCKER_HOST={host!r}: the Docker runtime needs the engine's Unix socket to stream "
                "container logs; point DOCKER_HOST at unix:///path/to/docker.sock"
            )
        try:
            self._client = client or docker.DockerClient(base_url=host)
        except docker.errors.DockerException as exc:
            raise ActionRuntimeError(
                f"cannot reach the Docker engine at {host} ({exc}); start it with scripts/services/dockerd.sh start"
            ) from exc
        self.hub_id = hub_id
        self._instance = uuid.uuid4().hex
        self._socket_root = socket_root or Path(tempfile.gettempdir()) / "triggerhub-sockets"
        longest = len(str(self._socket_root / f"triggerhub_{hub_id}_{'0' * 12}" / SOCKET_NAME))
        if longest > MAX_SOCKET_PATH:
            # connect() on a longer Unix socket path fails, and every /init would time out
            raise ActionRuntimeError(f"socket_root '{self._socket_root}' is too long for Unix sockets "
                                     f"({longest} > {MAX_SOCKET_PATH} characters with the container name); "
                                     "use a shorter folder, e.g. under /tmp")
        self._api_host = api_host
        self._clock_ns = clock_ns
        self._log_cap_bytes = log_cap_bytes
        self._log_grace_ms = log_grace_ms
        self._network_ready = False
        self._pull_images = pull_images  # a missing blackbox image is pulled, as OpenWhisk does

    async def create(self, spec: RuntimeSpec) -> DockerRuntime:
        blackbox = spec.kind == Kind.BLACKBOX
        image = self._image_for(spec)
        name = f"triggerhub_{self.hub_id}_{uuid.uuid4().hex[:12]}"
        socket_dir = None if blackbox else self._make_socket_dir(name)
        if blackbox or spec.network:
            await asyncio.to_thread(self._ensure_network)
        try:
            container_id = await asyncio.to_thread(self._create_container, spec, image, name, socket_dir)
        except BaseException:
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        log: LogStream | None = None
        try:
            reader, writer = await open_attach_stream(self._docker_socket, container_id)
            log = LogStream(reader, writer, self._clock_ns, self._log_cap_bytes)
            await asyncio.to_thread(self._client.api.start, container_id)
            if blackbox:
                port = await asyncio.to_thread(self._published_port, container_id)
                proxy = ProxyClient(port=port)
            else:
                proxy = ProxyClient(socket_path=str(self._socket_root / name / SOCKET_NAME))
        except BaseException as exc:
            if log is not None:
                log.close()
            await asyncio.to_thread(self._remove_quietly, container_id, socket_dir)
            if isinstance(exc, docker.errors.DockerException):
                raise ActionRuntimeError(f"starting container {name} from {image} failed: {exc}") from exc
            raise
        logger.info("container %s created (kind %s, %d MB)", name, spec.kind, spec.memory_mb)
        return DockerRuntime(
            spec=spec, client=self._client, container_id=container_id, name=name,
            proxy=proxy, log=log, socket_dir=socket_dir, log_grace_ms=self._log_grace_ms,
        )

    def close(self) -> None:
        """Close the Docker client's connections (runtimes already made stay usable until then)."""
        self._client.close()

    async def cleanup_orphans(self) -> int:
        filters = {"label": [f"{MANAGED_LABEL}=1", f"{HUB_LABEL}={self.hub_id}"]}
        try:
            found = await asyncio.to_thread(self._client.api.containers, all=True, filters=filters)
        except docker.errors.DockerException as exc:
            raise ActionRuntimeError(f"listing containers of hub {self.hub_id!r} failed: {exc}") from exc
        orphans = [container for container in found if container["Labels"].get(FACTORY_LABEL) != self._instance]
        for container in orphans:
            name = container["Names"][0].lstrip("/")
            await asyncio.to_thread(self._remove_quietly, container["Id"], self._socket_root / name)
            logger.info("removed orphaned container %s of hub %s", name, self.hub_id)
        return len(orphans)

    def _image_for(self, spec: RuntimeSpec) -> str:
        if spec.kind == Kind.BLACKBOX:
            if not spec.image:
                raise ActionRuntimeError("a blackbox action needs an image; set exec.image")
            return spec.image
        try:
            return IMAGE_FOR_KIND[spec.kind]
        except KeyError:
            raise ActionRuntimeError(
                f"no Docker image for kind {spec.kind!r}; known: {', '.join(sorted(IMAGE_FOR_KIND))}, blackbox"
            ) from None

    def _make_socket_dir(self, name: str) -> Path:
        socket_dir = self._socket_root / name
        socket_dir.mkdir(parents=True, mode=0o755)
        if os.getuid() == 0:
            os.chown(socket_dir, 65534, 65534)  # the proxy runs as nobody and creates the socket
        return socket_dir

    def _create_container(self, spec: RuntimeSpec, image: str, name: str, socket_dir: Path | None) -> str:
        api = self._client.api
        memory = f"{spec.memory_mb}m"
        labels = {**spec.labels, MANAGED_LABEL: "1", HUB_LABEL: self.hub_id, FACTORY_LABEL: self._instance,
                  KIND_LABEL: spec.kind, "triggerhub.memory_mb": str(spec.memory_mb)}
        environment = {"__OW_API_HOST": self._api_host} if self._api_host else {}
        common = dict(
            mem_limit=memory, memswap_limit=memory, pids_limit=PIDS_LIMIT,
            ulimits=[Ulimit(name="nofile", soft=NOFILE_LIMIT, hard=NOFILE_LIMIT)],
            security_opt=["no-new-privileges"],
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "1"}),
        )
        if socket_dir is None:  # blackbox: the user's image decides its own user and file system
            host_config = api.create_host_config(
                network_mode=BLACKBOX_NETWORK, port_bindings={BLACKBOX_PORT: ("127.0.0.1", None)}, **common)
            extra: dict[str, JSON] = {"ports": [BLACKBOX_PORT]}
        else:
            environment["TRIGGERHUB_SOCKET"] = f"{SOCKET_MOUNT}/{SOCKET_NAME}"
            host_config = api.create_host_config(
                network_mode=BLACKBOX_NETWORK if spec.network else "none",
                read_only=True, tmpfs={"/tmp": f"rw,nosuid,nodev,size={memory},mode=1777"},
                binds={str(socket_dir): {"bind": SOCKET_MOUNT, "mode": "rw"}}, cap_drop=["ALL"], **common)
            uid = os.getuid()
            extra = {"user": "65534:65534" if uid == 0 else f"{uid}:{os.getgid()}"}
        try:
            return str(api.create_container(image, name=name, labels=labels, environment=environment,
                                            host_config=host_config, **extra)["Id"])
        except docker.errors.ImageNotFound as exc:
            if spec.kind == Kind.BLACKBOX and self._pull_images:
                return self._pull_and_create(image, name, labels, environment, host_config, extra, exc)
            if spec.kind == Kind.BLACKBOX:
                raise ActionRuntimeError(
                    f"blackbox image {image!r} is not present and pulling is off; load or build it on this host"
                ) from exc
            raise ActionRuntimeError(
                f"image {image!r} for kind {spec.kind!r} is missing; build it with "
                "`triggerhub images build` (or python -m triggerhub.invoker.images)"
            ) from exc
        except docker.errors.DockerException as exc:
            raise ActionRuntimeError(f"creating container {name} from {image} failed: {exc}") from exc

    def _pull_and_create(self, image: str, name: str, labels: dict[str, str], environment: dict[str, str],
                         host_config: dict[str, JSON], extra: dict[str, JSON], missing: Exception) -> str:
        try:
            self._client.images.pull(image)
            return str(self._client.api.create_container(image, name=name, labels=labels, environment=environment,
                                                         host_config=host_config, **extra)["Id"])
        except docker.errors.DockerException as exc:
            raise ActionRuntimeError(
                f"blackbox image {image!r} is not present and could not be pulled ({exc}); "
                "load or build it on this host first"
            ) from missing

    def _ensure_network(self) -> None:
        if self._network_ready:
            return
        api = self._client.api
        try:
            api.inspect_network(BLACKBOX_NETWORK)
        except docker.errors.NotFound:
            try:
                api.create_network(
                    BLACKBOX_NETWORK, driver="bridge", labels={MANAGED_LABEL: "1"}, check_duplicate=True,
                    options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # another hub created it meanwhile
                    raise ActionRuntimeError(f"creating Docker network {BLACKBOX_NETWORK!r} failed: {exc}") from exc
        self._network_ready = True

    def _published_port(self, container_id: str) -> int:
        ports = self._client.api.inspect_container(container_id)["NetworkSettings"]["Ports"]
        return int(ports[f"{BLACKBOX_PORT}/tcp"][0]["HostPort"])

    def _remove_quietly(self, container_id: str, socket_dir: Path | None) -> None:
        try:
            self._client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            logger.warning("removing container %s failed: %s", container_id[:12], exc)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _cgroup_oom_kills(container_id: str) -> int | None:
    """OOM kills in the container's memory cgroup (cgroupfs driver, v1 or v2); None if not found."""
    for path in (f"/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control",
                 f"/sys/fs/cgroup/docker/{container_id}/memory.events"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    return None
