"""Actions run end to end through ActionInvoker on a real RuntimeFactory (`runtime_factory`).

Everything but the few process-only tests at the end is runtime-agnostic, so the same tests
can run on the Docker runtime by parametrizing the `runtime_factory` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import LOG_SENTINEL, RuntimeFactory, RuntimeSpec
from triggerhub.invoker.pool import ContainerPool
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.invoker.sandbox import Sandbox
from triggerhub.model import Activation, Parameter, StatusCode
from tests.plugins.invoker import make_action, make_invocation

LOG_LINE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr): (.*)\Z")

HELLO = {
    "python:3.11": "def main(args):\n    print('hello', args.get('name'))\n"
                   "    return {'payload': 'Hello, ' + args.get('name', 'World') + '!'}\n",
    "nodejs:20": "function main(args) {\n  console.log('hello', args.name);\n"
                 "  return {payload: 'Hello, ' + (args.name || 'World') + '!'};\n}\n",
}


def texts(record: Activation) -> list[str]:
    """The log lines without their timestamps, checking each line's format on the way."""
    out = []
    for line in record.logs:
        match = LOG_LINE.match(line)
        assert match is not None, f"badly formatted log line {line!r}"
        out.append(f"{match.group(1)}: {match.group(2)}")
    return out


def annotation_map(record: Activation) -> dict[str, object]:
    return {a.key: a.value for a in record.annotations}


def zipped(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_hello_world_cold_then_warm(invoker: ActionInvoker, kind: str) -> None:
    action = make_action(kind, HELLO[kind])
    cold = await invoker.invoke(make_invocation(action, {"name": "Ada"}))
    assert cold.response.status_code is StatusCode.SUCCESS
    assert cold.response.result == {"payload": "Hello, Ada!"}
    assert texts(cold) == ["stdout: hello Ada"]
    assert "initTime" in annotation_map(cold)
    warm = await invoker.invoke(make_invocation(action, {}))
    assert warm.response.result == {"payload": "Hello, World!"}
    assert texts(warm) == ["stdout: hello None" if kind.startswith("python") else "stdout: hello undefined"]
    assert "initTime" not in annotation_map(warm)


ENV_ACTION = {
    "python:3.11": "import os\nAT_INIT = os.environ.get('TOKEN')\n"
                   "def main(args):\n    keys = ['__OW_NAMESPACE', '__OW_ACTION_NAME', '__OW_ACTION_VERSION',"
                   " '__OW_ACTIVATION_ID', '__OW_TRANSACTION_ID', '__OW_DEADLINE', 'TOKEN']\n"
                   "    return {'args': args, 'init': AT_INIT, 'env': {k: os.environ.get(k) for k in keys}}\n",
    "nodejs:20": "const AT_INIT = process.env.TOKEN;\nfunction main(args) {\n  const keys = ['__OW_NAMESPACE',"
                 " '__OW_ACTION_NAME', '__OW_ACTION_VERSION', '__OW_ACTIVATION_ID', '__OW_TRANSACTION_ID',"
                 " '__OW_DEADLINE', 'TOKEN'];\n  const env = {};\n  for (const k of keys) env[k] = process.env[k];\n"
                 "  return {args, init: AT_INIT, env};\n}\n",
}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_params_init_params_and_context_env(invoker: ActionInvoker, kind: str) -> None:
    action = make_action(kind, ENV_ACTION[kind], parameters=(Parameter("TOKEN", {"s": 1}, init=True),))
    invocation = make_invocation(action, {"TOKEN": {"s": 1}, "n": [1, 2]}, namespace="alice",
                                 activation_id="e" * 32, transaction_id="tx-9")
    record = await invoker.invoke(invocation)
    result = record.response.result
    assert result["args"] == {"n": [1, 2]}
    assert result["init"] == '{"s": 1}'
    deadline = int(result["env"].pop("__OW_DEADLINE"))
    assert record.start_ms < deadline <= record.end_ms + 60_000
    assert result["env"] == {"__OW_NAMESPACE": "alice", "__OW_ACTION_NAME": "/guest/hello",
                             "__OW_ACTION_VERSION": "0.0.1", "__OW_ACTIVATION_ID": "e" * 32,
                             "__OW_TRANSACTION_ID": "tx-9", "TOKEN": '{"s": 1}'}
    assert record.namespace == "alice"


LOGGING = {
    "python:3.11": "import sys\ndef main(args):\n    for i in range(args['n']):\n        print('out', i)\n"
                   "        print('err', i, file=sys.stderr)\n    return {}\n",
    "nodejs:20": "function main(args) {\n  for (let i = 0; i < args.n; i++) {\n    console.log('out', i);\n"
                 "    console.error('err', i);\n  }\n  return {};\n}\n",
}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_logs_of_both_streams_framed_by_sentinels(invoker: ActionInvoker, kind: str) -> None:
    action = make_action(kind, LOGGING[kind])
    first = await invoker.invoke(make_invocation(action, {"n": 2}))
    assert sorted(texts(first)) == ["stderr: err 0", "stderr: err 1", "stdout: out 0", "stdout: out 1"]
    assert [t for t in texts(first) if t.startswith("stdout")] == ["stdout: out 0", "stdout: out 1"]
    second = await invoker.invoke(make_invocation(action, {"n": 1}))
    assert sorted(texts(second)) == ["stderr: err 0", "stdout: out 0"]
    assert not any(LOG_SENTINEL in line for line in first.logs + second.logs)


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_logs_over_the_limit_are_truncated(invoker: ActionInvoker, kind: str) -> None:
    action = make_action(kind, LOGGING[kind], logs_mb=0)
    record = await invoker.invoke(make_invocation(action, {"n": 3}))
    assert record.logs == ("Logs were truncated because the total bytes size exceeds the limit of 0 bytes.",)
    assert record.response.status_code is StatusCode.SUCCESS


async def test_log_limit_in_bytes_keeps_lines_that_fit(runtime_factory: RuntimeFactory) -> None:
    runtime = await runtime_factory.create(RuntimeSpec("python:3.11", 256))
    try:
        assert (await runtime.init({"code": LOGGING["python:3.11"].replace("file=sys.stderr", "file=sys.stdout"),
                                    "main": "main"}, 5_000)).status == 200
        assert (await runtime.run({"value": {"n": 3}}, 5_000)).status == 200
        lines = await runtime.logs(limit_bytes=12)
    finally:
        await runtime.destroy()
    assert [LOG_LINE.match(line).group(2) for line in lines[:2]] == ["out 0", "err 0"]  # type: ignore[union-attr]
    assert lines[2:] == ["Logs were truncated because the total bytes size exceeds the limit of 12 bytes."]


# Each runtime names itself with a random token made at /init: pids say nothing inside a sandbox
# or a container, where every proxy has the same low pid of its own PID namespace.
SLEEPY = {
    "python:3.11": "import time, uuid\nRUNTIME = uuid.uuid4().hex\ndef main(args):\n"
                   "    print('runtime', RUNTIME, flush=True)\n"
                   "    time.sleep(args.get('sleep_s', 0))\n    return {'runtime': RUNTIME}\n",
    "nodejs:20": "const RUNTIME = require('crypto').randomUUID();\nfunction main(args) {\n"
                 "  console.log('runtime', RUNTIME);\n"
                 "  return new Promise(r => setTimeout(() => r({runtime: RUNTIME}), (args.sleep_s || 0) * 1000));\n}\n",
}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_timeout_kills_the_process_and_next_invoke_is_cold(invoker: ActionInvoker, pool: ContainerPool,
                                                                 kind: str) -> None:
    action = make_action(kind, SLEEPY[kind], timeout_ms=500)
    record = await invoker.invoke(make_invocation(action, {"sleep_s": 30}))
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": "The action exceeded its time limits of 500 milliseconds."}
    assert annotation_map(record)["timeout"] is True
    killed = next(t for t in texts(record) if t.startswith("stdout: runtime ")).split()[-1]
    statistics = pool.statistics()
    assert (statistics.warm, statistics.busy, statistics.paused) == (0, 0, 0)  # destroyed, not returned
    again = await invoker.invoke(make_invocation(action, {}))
    assert again.response.status_code is StatusCode.SUCCESS
    assert annotation_map(again)["timeout"] is False
    assert "initTime" in annotation_map(again)
    assert again.response.result["runtime"] != killed


async def test_init_timeout_message(invoker: ActionInvoker) -> None:
    action = make_action("python:3.11", "import time\ntime.sleep(30)\ndef main(a):\n    return {}\n", timeout_ms=300)
    record = await invoker.invoke(make_invocation(action))
    assert record.response.result == {
        "error": "The action exceeded its time limits of 300 milliseconds during initialization."}
    assert annotation_map(record)["timeout"] is True


async def test_python_init_failure(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("python:3.11", "def main(args)\n    return {}\n")))
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": "The action failed to generate or locate a binary. See logs for details."}
    assert "stderr: SyntaxError: expected ':'" in texts(record)


async def test_nodejs_init_failure(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("nodejs:20", "function main(args) {")))
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": "Initialization has failed due to: SyntaxError: Unexpected end of input"}


async def test_missing_main_is_an_init_failure(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("nodejs:20", "function main(a) { return {}; }",
                                                              main="nothere")))
    assert record.response.result == {
        "error": "Initialization has failed due to: Error: Action entrypoint 'nothere' is not a function."}


@pytest.mark.parametrize(("kind", "code", "status", "result"), [
    ("python:3.11", "def main(args):\n    raise ValueError('bad input')\n",
     StatusCode.APPLICATION_ERROR, {"error": "bad input"}),
    ("python:3.11", "def main(args):\n    return {'error': 'declared'}\n",
     StatusCode.APPLICATION_ERROR, {"error": "declared"}),
    ("python:3.11", "def main(args):\n    return 42\n",
     StatusCode.DEVELOPER_ERROR, {"error": "The action did not return a dictionary or array."}),
    ("python:3.11", "def main(args):\n    return [1, 'two']\n", StatusCode.SUCCESS, [1, "two"]),
    ("nodejs:20", "function main(args) { throw new Error('bad input'); }",
     StatusCode.DEVELOPER_ERROR, {"error": "An error has occurred: Error: bad input"}),
    ("nodejs:20", "async function main(args) { throw new Error('late'); }",
     StatusCode.DEVELOPER_ERROR, {"error": "An error has occurred: Error: late"}),
    ("nodejs:20", "function main(args) { return {error: 'declared'}; }",
     StatusCode.APPLICATION_ERROR, {"error": "declared"}),
    ("nodejs:20", "function main(args) { return 42; }",
     StatusCode.DEVELOPER_ERROR, {"error": "The action did not return a dictionary."}),
    ("nodejs:20", "exports.main = async (args) => ({done: true});", StatusCode.SUCCESS, {"done": True}),
])
async def test_application_versus_developer_errors(invoker: ActionInvoker, kind: str, code: str,
                                                   status: StatusCode, result: object) -> None:
    record = await invoker.invoke(make_invocation(make_action(kind, code)))
    assert (record.response.status_code, record.response.result) == (status, result)


async def test_python_traceback_goes_to_stderr(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("python:3.11", "def main(a):\n    return 1 / 0\n")))
    assert record.response.result == {"error": "division by zero"}
    lines = texts(record)
    assert lines[0] == "stderr: Traceback (most recent call last):"
    assert lines[-1] == "stderr: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_crash_is_abnormal_run_and_next_invoke_is_cold(invoker: ActionInvoker, kind: str) -> None:
    code = ("import os\ndef main(a):\n    if a.get('die'):\n        os._exit(3)\n    return {}\n"
            if kind.startswith("python") else "function main(a) { if (a.die) process.exit(3); return {}; }")
    action = make_action(kind, code)
    record = await invoker.invoke(make_invocation(action, {"die": True}))
    assert record.response.result == {"error": "The action did not produce a valid response and exited unexpectedly."}
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    again = await invoker.invoke(make_invocation(action, {}))
    assert again.response.status_code is StatusCode.SUCCESS
    assert "initTime" in annotation_map(again)


async def test_python_zip_action(invoker: ActionInvoker) -> None:
    code = zipped({"__main__.py": "from helper import greet\ndef run(args):\n    return {'msg': greet(args['name'])}\n",
                   "helper.py": "def greet(name):\n    return 'hi ' + name\n"})
    record = await invoker.invoke(make_invocation(make_action("python:3.11", code, binary=True, main="run"),
                                                  {"name": "zip"}))
    assert record.response.result == {"msg": "hi zip"}


async def test_nodejs_zip_action(invoker: ActionInvoker) -> None:
    code = zipped({"package.json": '{"name": "a", "main": "lib/entry.js"}',
                   "lib/entry.js": "const greet = require('./greet');\nexports.main = (a) => ({msg: greet(a.name)});\n",
                   "lib/greet.js": "module.exports = (name) => 'hi ' + name;\n"})
    record = await invoker.invoke(make_invocation(make_action("nodejs:20", code, binary=True), {"name": "zip"}))
    assert record.response.result == {"msg": "hi zip"}


async def test_zip_without_entry_is_an_init_failure(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action("nodejs:20", zipped({"other.js": "x"}), binary=True)))
    assert record.response.result == {"error": "Initialization has failed due to: Error: Zipped actions must "
                                               "contain either package.json or index.js at the root."}


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_concurrent_invokes_never_share_a_process(invoker: ActionInvoker, pool: ContainerPool,
                                                        kind: str) -> None:
    action = make_action(kind, SLEEPY[kind])
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(invoker.invoke(make_invocation(action, {"sleep_s": 0.3}))) for _ in range(3)]
    runtimes = {task.result().response.result["runtime"] for task in tasks}
    assert len(runtimes) == 3
    assert pool.statistics().warm == 3
    sequential = {(await invoker.invoke(make_invocation(action, {}))).response.result["runtime"] for _ in range(3)}
    assert len(sequential) == 1 and sequential <= runtimes


# ------------------------------------------------------------------ process runtime only


async def test_blackbox_is_refused_by_the_process_runtime(runtime_factory: RuntimeFactory,
                                                          invoker: ActionInvoker) -> None:
    with pytest.raises(ActionRuntimeError, match=r"the process runtime cannot run blackbox actions \(image 'user/img'\): start the hub with a Docker engine"):
        await runtime_factory.create(RuntimeSpec("blackbox", 256, image="user/img"))
    record = await invoker.invoke(make_invocation(make_action("blackbox", "")))
    # A developer error that says what to do (issue 10), not a generic provisioning failure.
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert record.response.result == {"error": (
        "the process runtime cannot run blackbox actions (image None): start the hub with a Docker engine "
        "(TRIGGERHUB_RUNTIME=docker) or rewrite the action in a python or nodejs kind")}


async def test_pause_stops_the_process_and_resume_continues(runtime_factory: RuntimeFactory) -> None:
    runtime = await runtime_factory.create(RuntimeSpec("python:3.11", 256))
    pid = runtime.pid  # type: ignore[attr-defined]
    try:
        assert (await runtime.init({"code": HELLO["python:3.11"], "main": "main"}, 5_000)).status == 200
        await runtime.pause()
        assert await _process_state_becomes(pid, "T")
        await runtime.resume()
        reply = await runtime.run({"value": {"name": "again"}}, 5_000)
        assert (reply.status, reply.body) == (200, {"payload": "Hello, again!"})
    finally:
        await runtime.destroy()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def _process_state_becomes(pid: int, state: str) -> bool:
    """Signals are delivered asynchronously: poll /proc (bounded) for the state."""
    for _ in range(200):
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == state:
                return True
        await asyncio.sleep(0.005)
    return False


async def test_cleanup_orphans_kills_proxies_of_a_dead_hub(runtimes_root: str, sandbox: Sandbox) -> None:
    root = Path(runtimes_root)
    factory = ProcessRuntimeFactory(temp_root=runtimes_root, sandbox=sandbox)
    orphan = await factory.create(RuntimeSpec("nodejs:20", 256))
    kept = await factory.create(RuntimeSpec("python:3.11", 256))
    dead_hub = await asyncio.create_subprocess_exec("true")
    await dead_hub.wait()
    workdirs = sorted(root.iterdir())
    orphan_dir = next(d for d in workdirs if (d / "pid").read_text() == str(orphan.pid))  # type: ignore[attr-defined]
    dead_dir = orphan_dir.with_name(f"triggerhub-proc-{dead_hub.pid}-x")  # as if the dead hub had made it
    orphan_dir.rename(dead_dir)
    assert await factory.cleanup_orphans() == 1
    await orphan.destroy()
    with pytest.raises(ProcessLookupError):
        os.kill(orphan.pid, 0)  # type: ignore[attr-defined]
    assert [d.name for d in root.iterdir()] == [d.name for d in workdirs if d != orphan_dir]
    os.kill(kept.pid, 0)  # type: ignore[attr-defined]
    await kept.destroy()


async def test_result_over_one_megabyte_is_truncated(invoker: ActionInvoker) -> None:
    record = await invoker.invoke(make_invocation(make_action(
        "python:3.11", "def main(args):\n    return {'big': 'x' * (1024 * 1024)}\n")))
    assert record.response.status_code is StatusCode.APPLICATION_ERROR
    message = record.response.result["error"]
    assert message.startswith("The action produced a response that exceeded the allowed length: "
                              "1048587 > 1048576 bytes. The truncated response was: {\"big\": \"xxx")
    assert len(message) == len("The action produced a response that exceeded the allowed length: "
                               "1048587 > 1048576 bytes. The truncated response was: ") + 1048576
