"""DockerRuntimeFactory against a real dockerd and the real runtime images."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import docker
import docker.errors
import pytest

from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.base import ProxyResponse, RuntimeSpec
from triggerhub.invoker.docker import DockerRuntime, DockerRuntimeFactory

pytestmark = pytest.mark.docker

AT_NS = 1_714_979_289_123_456_789  # 2024-05-06T07:08:09.123456789Z
STAMP = "2024-05-06T07:08:09.123456789Z"  # 30 characters: the padding adds nothing
PYTHON = RuntimeSpec(kind="python:3.11", memory_mb=128)
NODEJS = RuntimeSpec(kind="nodejs:20", memory_mb=128)
LOG_LIMIT_BYTES = 10_000
Start = Callable[[RuntimeSpec, str], Awaitable[DockerRuntime]]


def init_value(code: str) -> dict[str, object]:
    return {"name": "test", "main": "main", "binary": False, "code": textwrap.dedent(code), "env": {}}


def run_body(args: dict[str, object]) -> dict[str, object]:
    return {"value": args, "namespace": "guest", "action_name": "/guest/test", "action_version": "0.0.1",
            "activation_id": uuid.uuid4().hex, "transaction_id": "tid", "deadline": "0"}


@pytest.fixture
def clocked_factory(make_docker_factory: Callable[..., DockerRuntimeFactory]) -> DockerRuntimeFactory:
    return make_docker_factory(clock_ns=lambda: AT_NS)


@pytest.fixture
async def started(clocked_factory: DockerRuntimeFactory) -> AsyncIterator[Start]:
    """Creates and initialises runtimes; destroys them after the test."""
    made: list[DockerRuntime] = []

    async def start(spec: RuntimeSpec, code: str) -> DockerRuntime:
        runtime = await clocked_factory.create(spec)
        made.append(runtime)
        response = await runtime.init(init_value(code), timeout_ms=10_000)
        assert response.status == 200, response
        return runtime

    yield start
    for runtime in made:
        await runtime.destroy()


async def test_python_hello_world_runs_and_logs(started: Start) -> None:
    runtime = await started(PYTHON, """
        import sys
        def main(args):
            print("hello " + args["name"])
            print("to stderr", file=sys.stderr)
            return {"greeting": "Hello " + args["name"] + "!"}
    """)

    first = await runtime.run(run_body({"name": "ada"}), timeout_ms=5_000)
    first_logs = await runtime.logs(LOG_LIMIT_BYTES)
    second = await runtime.run(run_body({"name": "bob"}), timeout_ms=5_000)

    assert (first.status, first.body) == (200, {"greeting": "Hello ada!"})
    assert sorted(first_logs) == [f"{STAMP} stderr: to stderr", f"{STAMP} stdout: hello ada"]
    assert (second.status, second.body) == (200, {"greeting": "Hello bob!"})
    assert sorted(await runtime.logs(LOG_LIMIT_BYTES)) == [
        f"{STAMP} stderr: to stderr", f"{STAMP} stdout: hello bob"]


async def test_logs_not_taken_carry_over_to_the_next_take(started: Start) -> None:
    runtime = await started(PYTHON, """
        def main(args):
            print("run %d" % args["n"])
            return {}
    """)

    await runtime.run(run_body({"n": 1}), timeout_ms=5_000)
    await runtime.run(run_body({"n": 2}), timeout_ms=5_000)

    assert await runtime.logs(LOG_LIMIT_BYTES) == [f"{STAMP} stdout: run 1", f"{STAMP} stdout: run 2"]
    assert await runtime.logs(LOG_LIMIT_BYTES) == []


async def test_nodejs_hello_world_runs_and_logs(started: Start) -> None:
    runtime = await started(NODEJS, """
        function main(args) {
            console.log("hello " + args.name);
            console.error("to stderr");
            return {greeting: "Hello " + args.name + "!"};
        }
    """)

    response = await runtime.run(run_body({"name": "ada"}), timeout_ms=5_000)

    assert (response.status, response.body) == (200, {"greeting": "Hello ada!"})
    assert sorted(await runtime.logs(LOG_LIMIT_BYTES)) == [
        f"{STAMP} stderr: to stderr", f"{STAMP} stdout: hello ada"]


async def test_logs_over_the_limit_are_truncated(started: Start) -> None:
    runtime = await started(PYTHON, """
        def main(args):
            for i in range(5):
                print("line %d" % i)
            return {}
    """)

    await runtime.run(run_body({}), timeout_ms=5_000)

    # Each "line N" counts 6 bytes: 20 bytes hold three lines.
    assert await runtime.logs(20) == [
        f"{STAMP} stdout: line 0",
        f"{STAMP} stdout: line 1",
        f"{STAMP} stdout: line 2",
        "Logs were truncated because the total bytes size exceeds the limit of 20 bytes.",
    ]


async def test_memory_hog_is_reported_as_oom(started: Start) -> None:
    runtime = await started(PYTHON, """
        def main(args):
            hog = b"x" * (512 * 1024 * 1024)
            return {"size": len(hog)}
    """)

    response = await runtime.run(run_body({}), timeout_ms=20_000)

    # The kernel kills the proxy with the action, so the connection drops.
    assert (response.status, response.body, response.oom, response.timed_out) == (0, None, True, False)


async def test_crashed_proxy_drops_the_connection_and_keeps_its_last_words(started: Start) -> None:
    runtime = await started(PYTHON, """
        import os, sys
        def main(args):
            sys.stdout.write("last words")
            sys.stdout.flush()
            os._exit(3)
    """)

    response = await runtime.run(run_body({}), timeout_ms=5_000)

    assert response == ProxyResponse(status=0, body=None)
    assert await runtime.logs(LOG_LIMIT_BYTES) == [f"{STAMP} stdout: last words"]


async def test_run_past_its_timeout_is_reported_and_container_can_be_destroyed(
        started: Start, dockerd: docker.DockerClient) -> None:
    runtime = await started(PYTHON, """
        def main(args):
            while True:
                pass
    """)

    response = await runtime.run(run_body({}), timeout_ms=300)
    await runtime.destroy()

    assert response == ProxyResponse(status=0, body=None, timed_out=True)
    with pytest.raises(docker.errors.NotFound):
        dockerd.containers.get(runtime.container_id)


async def test_paused_container_resumes_and_runs(started: Start,
                                                 dockerd: docker.DockerClient) -> None:
    runtime = await started(PYTHON, """
        def main(args):
            return {"n": args["n"] + 1}
    """)

    await runtime.pause()
    paused_status = dockerd.containers.get(runtime.container_id).status
    await runtime.resume()
    response = await runtime.run(run_body({"n": 41}), timeout_ms=5_000)

    assert paused_status == "paused"
    assert dockerd.containers.get(runtime.container_id).status == "running"
    assert (response.status, response.body) == (200, {"n": 42})


async def test_action_runs_unprivileged_offline_on_a_read_only_root(started: Start) -> None:
    runtime = await started(PYTHON, """
        import os
        def main(args):
            try:
                open("/etc/triggerhub-probe", "w")
                root = "writable"
            except OSError as exc:
                root = exc.strerror
            with open("/tmp/probe", "w") as probe:
                probe.write("ok")
            with open("/proc/net/dev") as dev:
                interfaces = sorted(line.split(":")[0].strip() for line in dev.readlines()[2:])
            return {"uid": os.getuid(), "root": root, "tmp": open("/tmp/probe").read(),
                    "interfaces": interfaces}
    """)

    response = await runtime.run(run_body({}), timeout_ms=5_000)

    assert response.body == {"uid": 65534, "root": "Read-only file system", "tmp": "ok",
                             "interfaces": ["lo"]}


async def test_network_is_given_only_when_the_action_asks(started: Start) -> None:
    runtime = await started(RuntimeSpec(kind="python:3.11", memory_mb=128, network=True), """
        def main(args):
            with open("/proc/net/dev") as dev:
                return {"interfaces": sorted(line.split(":")[0].strip() for line in dev.readlines()[2:])}
    """)

    response = await runtime.run(run_body({}), timeout_ms=5_000)

    assert response.body == {"interfaces": ["eth0", "lo"]}


async def test_container_limits_and_labels(clocked_factory: DockerRuntimeFactory,
                                           dockerd: docker.DockerClient) -> None:
    runtime = await clocked_factory.create(RuntimeSpec(kind="python:3.11", memory_mb=192,
                                                       labels={"triggerhub.action": "guest/hello"}))
    try:
        attrs = dockerd.containers.get(runtime.container_id).attrs
    finally:
        await runtime.destroy()

    host = attrs["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (192 << 20, 192 << 20, 1024)
    assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"]) == ("none", True, ["ALL"])
    assert attrs["Config"]["User"] == "65534:65534"
    labels = {k: v for k, v in attrs["Config"]["Labels"].items()
              if k.startswith("triggerhub.") and k != "triggerhub.build-hash"}
    assert len(labels.pop("triggerhub.factory")) == 32
    assert labels == {
        "triggerhub.managed": "1", "triggerhub.hub": clocked_factory.hub_id, "triggerhub.kind": "python:3.11",
        "triggerhub.memory_mb": "192", "triggerhub.action": "guest/hello"}


ORPHAN_MAKER = """
import asyncio, sys
from pathlib import Path
from triggerhub.invoker.base import RuntimeSpec
from triggerhub.invoker.docker import DockerRuntimeFactory

async def main():
    factory = DockerRuntimeFactory(hub_id=sys.argv[1], socket_root=Path(sys.argv[2]))
    runtime = await factory.create(RuntimeSpec(kind="python:3.11", memory_mb=128))
    print(runtime.container_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_cleanup_removes_containers_of_a_killed_hub_but_not_its_own(runtime_images: list[str],
                                                          dockerd: docker.DockerClient) -> None:
    hub_id = f"orphans{uuid.uuid4().hex[:8]}"
    sockets = Path(tempfile.mkdtemp(prefix="th-orphans-"))  # short: Unix socket paths are limited
    maker = subprocess.Popen([sys.executable, "-c", ORPHAN_MAKER, hub_id, str(sockets)],
                             stdout=subprocess.PIPE, text=True)
    container_id = (await asyncio.to_thread(maker.stdout.readline)).strip()  # type: ignore[union-attr]
    maker.kill()
    maker.wait()
    maker.stdout.close()  # type: ignore[union-attr]

    restarted = DockerRuntimeFactory(hub_id=hub_id, socket_root=sockets)
    own = await restarted.create(RuntimeSpec(kind="python:3.11", memory_mb=128))
    removed = await restarted.cleanup_orphans()
    own_status = dockerd.containers.get(own.container_id).status
    await own.destroy()
    restarted.close()

    assert removed == 1
    with pytest.raises(docker.errors.NotFound):
        dockerd.containers.get(container_id)
    assert own_status == "running"
    assert list(sockets.iterdir()) == []
    sockets.rmdir()


BLACKBOX_DOCKERFILE = """
FROM triggerhub/python:3.11
ENV TRIGGERHUB_PORT=8080
"""


async def test_blackbox_image_is_reached_on_a_loopback_port(clocked_factory: DockerRuntimeFactory,
                                                             dockerd: docker.DockerClient) -> None:
    # Any image serving the action protocol on 8080 is a blackbox; our python image can be one.
    image, _ = dockerd.images.build(fileobj=io.BytesIO(BLACKBOX_DOCKERFILE.encode()),
                                    tag="triggerhub-test/blackbox:latest", network_mode="none", rm=True)
    runtime = await clocked_factory.create(RuntimeSpec(kind="blackbox", memory_mb=128,
                                                       image="triggerhub-test/blackbox:latest"))
    try:
        ports = dockerd.containers.get(runtime.container_id).attrs["NetworkSettings"]["Ports"]
        init = await runtime.init(init_value("def main(args):\n    return {'echo': args}\n"), timeout_ms=10_000)
        response = await runtime.run(run_body({"a": 1}), timeout_ms=5_000)
    finally:
        await runtime.destroy()

    assert ports["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert init.status == 200
    assert (response.status, response.body) == (200, {"echo": {"a": 1}})


HTTP_SERVER_BLACKBOX = {
    "Dockerfile": """
FROM triggerhub/base-python:bookworm
COPY server.py /server.py
CMD ["python3", "-u", "/server.py"]
""",
    # Python's http.server as is: HTTP/1.0, so it closes the connection after every answer.
    "server.py": """
import json
from http.server import BaseHTTPRequestHandler, HTTPServer


class Action(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {"ok": True} if self.path == "/init" else {"echo": body["value"]}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


HTTPServer(("0.0.0.0", 8080), Action).serve_forever()
""",
}


def build_context(files: dict[str, str]) -> io.BytesIO:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.seek(0)
    return archive


async def test_a_blackbox_served_by_http_server_as_is_runs_again_and_again(
        clocked_factory: DockerRuntimeFactory, dockerd: docker.DockerClient) -> None:
    dockerd.images.build(fileobj=build_context(HTTP_SERVER_BLACKBOX), custom_context=True,
                         tag="triggerhub-test/http-server-blackbox:latest", network_mode="none", rm=True)
    runtime = await clocked_factory.create(RuntimeSpec(kind="blackbox", memory_mb=128,
                                                       image="triggerhub-test/http-server-blackbox:latest"))
    try:
        init = await runtime.init(init_value("def main(args):\n    return args\n"), timeout_ms=10_000)
        runs = [await runtime.run(run_body({"n": n}), timeout_ms=5_000) for n in range(4)]
    finally:
        await runtime.destroy()

    assert (init.status, init.body) == (200, {"ok": True})
    assert [(run.status, run.body) for run in runs] == [(200, {"echo": {"n": n}}) for n in range(4)]


async def test_failed_init_answers_502_with_its_logs(clocked_factory: DockerRuntimeFactory) -> None:
    runtime = await clocked_factory.create(NODEJS)
    try:
        response = await runtime.init(init_value("console.log('loading'); throw new Error('boom');"),
                                      timeout_ms=10_000)
        logs = await runtime.logs(LOG_LIMIT_BYTES)
    finally:
        await runtime.destroy()

    assert (response.status, response.body) == (502, {"error": "Initialization has failed due to: Error: boom"})
    # stdout and stderr reach the hub through separate pipes: only each stream's order is fixed.
    assert [line for line in logs if " stdout: " in line] == [f"{STAMP} stdout: loading"]
    assert [line for line in logs if " stderr: " in line][0] == f"{STAMP} stderr: Error: boom"


async def test_unknown_kind_is_refused_with_the_known_ones(docker_factory: DockerRuntimeFactory) -> None:
    with pytest.raises(ActionRuntimeError) as refused:
        await docker_factory.create(RuntimeSpec(kind="python:2", memory_mb=128))

    assert str(refused.value) == "no Docker image for kind 'python:2'; known: nodejs:20, python:3.11, blackbox"


async def test_missing_blackbox_image_is_refused_when_pulling_is_off(
        make_docker_factory: Callable[..., DockerRuntimeFactory]) -> None:
    factory = make_docker_factory(pull_images=False)

    with pytest.raises(ActionRuntimeError) as refused:
        await factory.create(RuntimeSpec(kind="blackbox", memory_mb=128, image="triggerhub-test/absent:1"))

    assert str(refused.value) == (
        "blackbox image 'triggerhub-test/absent:1' is not present and pulling is off; load or build it on this host")
