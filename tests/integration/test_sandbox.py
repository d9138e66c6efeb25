"""The process runtime's bubblewrap sandbox, tried from inside by actions (real bwrap, real kernel).

What an action must not reach: the hub's environment and home, the network (unless annotated
`sandbox-network: true`), other processes, any writable place but /tmp; and where it must stop:
its memory, process-count and file-size limits. Plus the start-up refusal of unsandboxed root.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.plugins.hub import HubClient, hub_config
from tests.plugins.invoker import make_action, make_invocation
from triggerhub.cli.compose import running_hub
from triggerhub.config import RuntimeConfig, SandboxChoice
from triggerhub.errors import ActionRuntimeError, ConfigError
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import RuntimeFactory, RuntimeSpec
from triggerhub.invoker.pool import NETWORK_ANNOTATION
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import FILE_SIZE_LIMIT_MB, PROCESS_LIMIT, SANDBOX_UID, Sandbox, find_sandbox
from triggerhub.model import Parameter, StatusCode

SECRET = "postgresql://hub:s3cret-password@127.0.0.1/hub"
PROTOCOL_ENV = {"HOME", "LANG", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "TMPDIR", "TRIGGERHUB_SOCKET"}
# What the sandbox starts with: the proxy takes its lifeline's fd out before any action runs.
START_ENV = PROTOCOL_ENV | {"TRIGGERHUB_LIFELINE_FD"}
RUN_ENV = {"__OW_ACTION_NAME", "__OW_ACTION_VERSION", "__OW_ACTIVATION_ID", "__OW_DEADLINE", "__OW_NAMESPACE",
           "__OW_TRANSACTION_ID",
           # delivery keys (README: Delivery semantics; empty outside rule activations) and the trace context
           "__OW_ATTEMPT", "__OW_DELIVERY_KEY", "__OW_EVENT_ID", "__OW_IDEMPOTENCY_KEY", "__OW_RULE", "__OW_TRACEPARENT"}

SNOOP = """
import os

def attempt(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read().decode(errors='replace')
    except OSError as exc:
        return type(exc).__name__

def main(args):
    return {
        'hub_environ': attempt(f"/proc/{args['hub_pid']}/environ"),
        'init_environ': attempt('/proc/1/environ'),
        'own_environ': attempt('/proc/self/environ'),
        'env_keys': sorted(os.environ),
        'credentials': attempt(args['credentials']),
        'home_listing': attempt(args['home']),
        'uid': os.getuid(),
        'pid': os.getpid(),
        'pids': sorted(int(name) for name in os.listdir('/proc') if name.isdigit()),
    }
"""


@pytest.fixture
def open_home() -> Iterator[Path]:
    """A hub home every user could read, so only the sandbox keeps its credentials from actions."""
    root = Path(tempfile.mkdtemp(prefix="th-open-home-"))
    root.chmod(0o755)
    yield root / "home"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def sandboxed_hub(open_home: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HubClient]:
    monkeypatch.setenv("TRIGGERHUB_STORE_URL", SECRET)  # in the hub's environ; the config below ignores it
    async with running_hub(hub_config(open_home), runtime=ProcessRuntimeFactory(sandbox=sandbox),
                           runtime_name="process") as running:
        async with aiohttp.ClientSession() as session:
            yield HubClient(running, session)


async def test_action_sees_neither_the_hubs_environment_nor_its_home(sandboxed_hub: HubClient) -> None:
    home = sandboxed_hub.hub.config.home
    credentials = home / "credentials.json"
    credentials.chmod(0o644)
    assert "whisk.system" in json.loads(credentials.read_text())  # readable by anyone on the host
    status, _ = await sandboxed_hub.call("PUT", "namespaces/_/actions/snoop",
                                         {"exec": {"kind": "python:3.11", "code": SNOOP}})
    assert status == 200
    status, result = await sandboxed_hub.call(
        "POST", "namespaces/_/actions/snoop", {"hub_pid": os.getpid(), "credentials": str(credentials),
                                               "home": str(home)}, blocking=True, result=True)
    assert status == 200
    assert result["hub_environ"] == "FileNotFoundError"  # the hub's pid is not in the action's /proc
    assert result["credentials"] == "FileNotFoundError"
    assert result["home_listing"] == "FileNotFoundError"
    assert (result["uid"], result["pid"], result["pids"]) == (SANDBOX_UID, 2, [1, 2])
    assert set(result["env_keys"]) == PROTOCOL_ENV | RUN_ENV
    for environ in (result["init_environ"], result["own_environ"]):
        names = {entry.partition("=")[0] for entry in environ.split("\0") if entry}
        assert names <= START_ENV, environ
        assert SECRET not in environ and "TRIGGERHUB_STORE_URL" not in environ


async def test_every_process_of_a_runtime_is_nobody_on_the_host(runtime_factory: RuntimeFactory) -> None:
    runtime = await runtime_factory.create(RuntimeSpec("nodejs:20", 256))
    try:
        group = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _pgid(int(pid)) == runtime.pid]  # type: ignore[attr-defined]
        uids = {tuple(_status(pid, "Uid")[:2]) for pid in group}
    finally:
        await runtime.destroy()
    assert len(group) == 3  # bwrap outside, bwrap as PID 1 inside, the proxy as PID 2
    assert uids == {(str(SANDBOX_UID), str(SANDBOX_UID))}  # real and effective uid outside the sandbox


NETWORK = {
    "python:3.11": "import socket\ndef main(args):\n    try:\n"
                   "        with socket.create_connection(('127.0.0.1', args['port']), timeout=5) as s:\n"
                   "            return {'got': s.recv(64).decode()}\n"
                   "    except OSError as exc:\n        return {'failed': type(exc).__name__}\n",
    "nodejs:20": "const net = require('net');\nfunction main(args) {\n  return new Promise((resolve) => {\n"
                 "    const s = net.connect(args.port, '127.0.0.1');\n"
                 "    s.on('data', (d) => { resolve({got: d.toString()}); s.destroy(); });\n"
                 "    s.on('error', (e) => resolve({failed: e.code}));\n  });\n}\n",
}
REFUSED = {"python:3.11": "ConnectionRefusedError", "nodejs:20": "ECONNREFUSED"}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_network_only_for_actions_annotated_for_it(invoker: ActionInvoker, kind: str) -> None:
    accepted: list[str] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername")[0])
        writer.write(b"hello from the host")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        offline = await invoker.invoke(make_invocation(make_action(kind, NETWORK[kind]), {"port": port}))
        assert offline.response.result == {"failed": REFUSED[kind]}  # its own loopback: nobody listens
        assert accepted == []
        online_action = make_action(kind, NETWORK[kind], name="online",
                                    annotations=(Parameter(NETWORK_ANNOTATION, True),))
        online = await invoker.invoke(make_invocation(online_action, {"port": port}))
        assert online.response.result == {"got": "hello from the host"}
        assert accepted == ["127.0.0.1"]


WRITER = """
import errno
def main(args):
    outcome = {}
    for path in args['paths']:
        try:
            with open(path, 'w') as handle:
                handle.write('x')
            outcome[path] = 'written'
        except OSError as exc:
            outcome[path] = errno.errorcode[exc.errno]
    return outcome
"""


async def test_only_tmp_and_dev_shm_are_writable(invoker: ActionInvoker, runtimes_root: str) -> None:
    paths = ["/x", "/usr/x", "/etc/x", "/opt/triggerhub/x", "/run/triggerhub/x", "/dev/x", "/proc/x",
             f"{runtimes_root}/x", "/root/x", "/dev/null", "/tmp/x", "/dev/shm/x"]
    record = await invoker.invoke(make_invocation(make_action("python:3.11", WRITER), {"paths": paths}))
    assert record.response.result == {
        "/x": "EROFS", "/usr/x": "EROFS", "/etc/x": "EROFS", "/opt/triggerhub/x": "EROFS",
        "/run/triggerhub/x": "EACCES",  # the socket folder: closed to new files once the proxy listens
        "/dev/x": "EROFS", "/proc/x": "ENOENT", f"{runtimes_root}/x": "ENOENT", "/root/x": "ENOENT",
        "/dev/null": "written", "/tmp/x": "written", "/dev/shm/x": "written"}  # both private tmpfs
    # On the host, the warm runtime's folder holds what the hub put there and nothing written inside.
    assert sorted(path.name for path in Path(runtimes_root).glob("*/**/*")) == ["pid", "proxy.sock", "sock"]


MEMORY_HOG = {
    "python:3.11": "def main(args):\n    hog = bytearray(args['mb'] * 1024 * 1024)\n    return {'kept': len(hog)}\n",
    "nodejs:20": "function main(args) {\n  const hog = Buffer.alloc(args.mb * 1024 * 1024, 1);\n"
                 "  return {kept: hog.length};\n}\n",
}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_memory_limit_kills_with_the_oom_message(invoker: ActionInvoker, sandbox: Sandbox, kind: str) -> None:
    if sandbox.cgroups is None:
        pytest.skip("no writable memory cgroup on this machine: memory is limited by RLIMIT_DATA only, "
                    "which surfaces as the action's own allocation error")
    action = make_action(kind, MEMORY_HOG[kind], memory_mb=128)
    record = await invoker.invoke(make_invocation(action, {"mb": 300}))
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": "The action exhausted its memory and was aborted."}
    again = await invoker.invoke(make_invocation(action, {"mb": 16}))
    assert again.response.result == {"kept": 16 * 1024 * 1024}
    assert any(a.key == "initTime" for a in again.annotations)  # the killed runtime was replaced


FORKER = """
import os
def main(args):
    children = []
    try:
        while True:
            pid = os.fork()
            if pid == 0:
                os._exit(0)  # an unreaped child still counts against the limit
            children.append(pid)
    finally:
        print('forked', len(children))
        for pid in children:
            os.waitpid(pid, 0)
"""


async def test_process_count_limit_stops_fork(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("python:3.11", FORKER)))
    assert record.response.status_code is StatusCode.APPLICATION_ERROR
    assert record.response.result == {"error": "[Errno 11] Resource temporarily unavailable"}
    forked = [line for line in record.logs if " stdout: forked " in line]
    # bwrap's PID 1 and the proxy count too.
    assert [line.rsplit(" ", 1)[1] for line in forked] == [str(PROCESS_LIMIT - 2)]


BIG_FILE = {
    "python:3.11": "def main(args):\n    chunk = b'x' * (1024 * 1024)\n    with open('/tmp/big', 'wb', buffering=0) as f:\n"
                   "        for n in range(args['mb']):\n            f.write(chunk)\n    return {'mb': args['mb']}\n",
    "nodejs:20": "const fs = require('fs');\nfunction main(args) {\n  const fd = fs.openSync('/tmp/big', 'w');\n"
                 "  for (let n = 0; n < args.mb; n++) fs.writeSync(fd, Buffer.alloc(1024 * 1024, 120));\n"
                 "  return {mb: args.mb};\n}\n",
}
TOO_LARGE = {"python:3.11": (StatusCode.APPLICATION_ERROR, "[Errno 27] File too large"),
             "nodejs:20": (StatusCode.DEVELOPER_ERROR, "An error has occurred: Error: EFBIG: file too large, write")}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_file_size_limit_fails_the_write(invoker: ActionInvoker, kind: str) -> None:
    action = make_action(kind, BIG_FILE[kind])
    fits = await invoker.invoke(make_invocation(action, {"mb": FILE_SIZE_LIMIT_MB}))
    assert fits.response.result == {"mb": FILE_SIZE_LIMIT_MB}
    record = await invoker.invoke(make_invocation(action, {"mb": FILE_SIZE_LIMIT_MB + 1}))
    assert (record.response.status_code, record.response.result) == (TOO_LARGE[kind][0],
                                                                       {"error": TOO_LARGE[kind][1]})


# ------------------------------------------------------------------ start-up policy

ROOT_REFUSAL = (
    "TRIGGERHUB_SANDBOX=none: the hub runs as root, so its actions would run as root with full access to this "
    "machine; refused. Use the bubblewrap sandbox (apt-get install bubblewrap, TRIGGERHUB_SANDBOX=bwrap), run "
    "the hub as an unprivileged user, or accept the risk with TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT=true "
    "(triggerhub up --allow-unsandboxed-root)")


async def test_root_hub_refuses_unsandboxed_actions_unless_allowed(tmp_path: Path) -> None:
    assert os.getuid() == 0, "this test checks the root policy; the suite runs as root"
    refused = hub_config(tmp_path / "refused", TRIGGERHUB_RUNTIME="process", TRIGGERHUB_SANDBOX="none")
    with pytest.raises(ConfigError) as caught:
        async with running_hub(refused):
            pass
    assert str(caught.value) == ROOT_REFUSAL
    assert not (tmp_path / "refused").exists()  # refused before its home or store was made
    allowed = hub_config(tmp_path / "allowed", TRIGGERHUB_RUNTIME="process", TRIGGERHUB_SANDBOX="none",
                         TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT="true")
    async with running_hub(allowed) as hub:
        assert hub.runtime_name == "process"
        auth = base64.b64encode(hub.guest_auth.encode()).decode()
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"}) as session:
            async with session.put(f"{hub.apihost}/api/v1/namespaces/_/actions/who", json={"exec": {
                    "kind": "python:3.11", "code": "import os\ndef main(a):\n    return {'uid': os.getuid()}\n"}}) as put:
                assert put.status == 200
            async with session.post(f"{hub.apihost}/api/v1/namespaces/_/actions/who",
                                    params={"blocking": "true", "result": "true"}) as invoked:
                assert (invoked.status, await invoked.json()) == (200, {"uid": 0})  # as asked: unsandboxed root


def test_up_refuses_unsandboxed_root_with_the_message(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from triggerhub.cli import main

    result = CliRunner().invoke(main, ["up", "--home", str(tmp_path / "home"), "--port", "0", "--runtime", "process",
                                       "--sandbox", "none", "--no-examples"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: {ROOT_REFUSAL}"


def test_missing_bwrap_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no bwrap, no setpriv
    with pytest.raises(ConfigError) as caught:
        find_sandbox(RuntimeConfig(sandbox=SandboxChoice.BWRAP))
    assert str(caught.value) == (
        "the process runtime runs actions in a bubblewrap sandbox, but `bwrap` is not on PATH; install it with "
        "`apt-get install bubblewrap` (or start a Docker engine for the Docker runtime, or set "
        "TRIGGERHUB_SANDBOX=none to run actions unsandboxed, which as root also needs "
        "TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT=true)")


def test_a_temporary_folder_the_sandbox_user_cannot_reach_is_refused(runtimes_root: str, sandbox: Sandbox) -> None:
    closed = Path(runtimes_root) / "closed"
    closed.mkdir(mode=0o700)
    (closed / "below").mkdir(mode=0o755)  # open itself, but behind a closed folder
    with pytest.raises(ActionRuntimeError) as caught:
        ProcessRuntimeFactory(temp_root=str(closed / "below"), sandbox=sandbox)
    assert str(caught.value) == (
        f"temporary folder '{closed / 'below'}' cannot be reached by the sandbox user (uid 65534): '{closed}' is not "
        "searchable by others; set TMPDIR to a folder such as /tmp")


async def test_a_proxy_that_cannot_start_in_the_sandbox_reports_why(runtimes_root: str, sandbox: Sandbox) -> None:
    factory = ProcessRuntimeFactory(temp_root=runtimes_root, sandbox=sandbox, python="/usr/bin/python-missing",
                                    start_timeout_ms=5_000)
    with pytest.raises(ActionRuntimeError) as caught:
        await factory.create(RuntimeSpec("python:3.11", 256))
    message = str(caught.value)
    assert message.startswith(f"the python:3.11 proxy did not answer on {runtimes_root}/triggerhub-proc-")
    assert message.endswith("/sock/proxy.sock within 5000 ms; its stderr: "
                            "prlimit: failed to execute /usr/bin/python-missing: No such file or directory")
    assert os.listdir(runtimes_root) == []  # its folder is gone


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _status(pid: int, field: str) -> list[str]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return value.split()
    raise AssertionError(f"/proc/{pid}/status has no {field}")
