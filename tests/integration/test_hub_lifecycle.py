"""A hub's life as a process sees it: what starting loads, and what stopping leaves behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plugins.cli import HubProcess, free_port

# Starts the embedded hub on SQLite (the process runtime, no stem cells), runs one action, and
# prints which optional drivers its modules and its start loaded.
EMBEDDED_START = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path

    import aiohttp

    from triggerhub.cli.compose import running_hub
    from triggerhub.config import load_config

    async def main(home):
        config = load_config(env={"TRIGGERHUB_HOME": home, "TRIGGERHUB_PORT": "0", "TRIGGERHUB_RUNTIME": "process",
                                  "TRIGGERHUB_DEPLOY_EXAMPLES": "false", "TRIGGERHUB_PREWARM_COUNT": "0"})
        async with running_hub(config) as hub, aiohttp.ClientSession() as session:
            auth = aiohttp.BasicAuth(*hub.guest_auth.split(":"))
            url = f"{hub.apihost}/api/v1/namespaces/_/actions/echo"
            async with session.put(url, auth=auth, json={"exec": {"kind": "python:3.11",
                                   "code": "def main(args):\\n    return args"}}) as response:
                assert response.status == 200, await response.text()
            async with session.post(url, auth=auth, params={"blocking": "true", "result": "true"},
                                    json={"n": 1}) as response:
                result = await response.json()
        loaded = sorted(name for name in sys.modules if name.partition(".")[0] in ("asyncpg", "aiokafka", "faust"))
        print(json.dumps({"result": result, "loaded": loaded}))

    asyncio.run(main(sys.argv[1]))
""")


def test_an_embedded_hub_on_sqlite_never_loads_asyncpg(tmp_path: Path) -> None:
    """asyncpg (~2.9 MiB of idle RSS) is for PostgreSQL stores and feeds only: none of its error
    classes may be named at module level on the embedded start path."""
    run = subprocess.run([sys.executable, "-c", EMBEDDED_START, str(tmp_path / "home")], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"result": {"n": 1}, "loaded": []}


# Stands in for bwrap on PATH: a proxy's sandbox starts only once the hub that asked for it is
# gone, as when a hub is killed between forking a runtime and bwrap arming --die-with-parent.
LATE_BWRAP = """#!/bin/sh
case "$*" in
  *"/opt/triggerhub/proxy"*) while [ -d "/proc/$PPID" ]; do sleep 0.05; done ;;
esac
exec {bwrap} "$@"
"""


def _processes_naming(text: str) -> list[int]:
    """Processes whose command line holds `text`, or whose working folder starts with it (an
    unsandboxed proxy runs in its runtime's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        or os.readlink(entry / "cwd").startswith(text)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_runtimes_end_with_a_hub_killed_before_their_sandbox_could_arm(tmp_path: Path) -> None:
    """kill -9 of `triggerhub up` while its stem cells start: the proxies that start after it died
    find their lifeline closed and exit, instead of living on under init."""
    wrapper_dir = Path(tempfile.mkdtemp(prefix="th-late-"))  # the sandbox user runs the wrapper
    runtimes_root = Path(tempfile.mkdtemp(prefix="th-rt-"))
    for folder in (wrapper_dir, runtimes_root):
        folder.chmod(0o755)
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    (wrapper_dir / "bwrap").write_text(LATE_BWRAP.format(bwrap=bwrap))
    (wrapper_dir / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper_dir}:{os.environ['PATH']}", "TMPDIR": str(runtimes_root),
           "TRIGGERHUB_PREWARM": "start", "TRIGGERHUB_PREWARM_COUNT": "1", "TRIGGERHUB_PROPS": str(tmp_path / "props")}
    hub = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", "0", "--home", str(tmp_path / "home"),
                            "--runtime", "process", "--sandbox", "bwrap", "--no-examples"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Both stem cells (python, nodejs) are waiting in the wrapper: the hub is inside pool.start().
        assert _wait_until(lambda: len(_processes_naming(str(runtimes_root))) == 2, 60), "no stem cell started"
        _kill_and_expect_no_runtime_left(hub, runtimes_root)
    finally:
        _end_hub_and_runtimes(hub, runtimes_root)
        shutil.rmtree(wrapper_dir, ignore_errors=True)



def _kill_and_expect_no_runtime_left(hub: subprocess.Popen[str] | subprocess.Popen[bytes], runtimes_root: Path) -> None:
    """kill -9 of the hub; within 30 s no runtime process names its folder any more."""
    hub.kill()
    hub.wait(timeout=10)
    assert _wait_until(lambda: not _processes_naming(str(runtimes_root)), 30), (
        f"runtimes outlived their hub: {_processes_naming(str(runtimes_root))}")


def _end_hub_and_runtimes(hub: subprocess.Popen[str] | subprocess.Popen[bytes], runtimes_root: Path) -> None:
    """A test's cleanup whatever its assertions said: the hub, then any runtime naming its folder."""
    if hub.poll() is None:
        hub.kill()
        hub.wait(timeout=10)
    if hub.stdout is not None:
        hub.stdout.close()
    for pid in _processes_naming(str(runtimes_root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(runtimes_root, ignore_errors=True)


def test_unsandboxed_runtimes_end_with_a_hub_killed_with_sigkill(tmp_path: Path) -> None:
    """Without bwrap there is no --die-with-parent: the lifeline alone ends the proxies."""
    runtimes_root = Path(tempfile.mkdtemp(prefix="th-rt-"))
    env = {**os.environ, "TMPDIR": str(runtimes_root), "TRIGGERHUB_PREWARM": "start", "TRIGGERHUB_PREWARM_COUNT": "1",
           "TRIGGERHUB_PROPS": str(tmp_path / "props")}
    hub = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", "0", "--home", str(tmp_path / "home"),
                            "--runtime", "process", "--sandbox", "none", "--allow-unsandboxed-root", "--no-examples"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert hub.stdout is not None
        assert hub.stdout.readline().startswith("triggerhub listening on ")  # after the stem cells answered
        assert len(_processes_naming(str(runtimes_root))) == 2
        _kill_and_expect_no_runtime_left(hub, runtimes_root)
    finally:
        _end_hub_and_runtimes(hub, runtimes_root)


# A process with a hub's arguments (`triggerhub.cli`); an unrelated one beside it, such as a service a
# test restarted, is left alone.
LEAVING_TEST = """
import subprocess
import sys


def test_starts_a_process_and_leaves_it():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "triggerhub.cli"], start_new_session=True)
    subprocess.Popen(["sleep", "299"], start_new_session=True)
"""


def _run_inner_session(tmp_path: Path, test_text: str) -> subprocess.CompletedProcess[str]:
    """A pytest session in a child process with this suite's leftovers plugin and run folder."""
    (tmp_path / "conftest.py").write_text("pytest_plugins = ['tests.plugins.leftovers']\n")
    (tmp_path / "test_inner.py").write_text(test_text)
    project = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(project), "TH_TEST_LEFTOVERS_GRACE_S": "1"}
    env.pop("PYTEST_DEBUG_TEMPROOT", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
                           str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_session_that_leaves_a_process_of_its_own_fails_naming_it_and_kills_it(tmp_path: Path) -> None:
    run = _run_inner_session(tmp_path, LEAVING_TEST)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    start = lines.index("the run left 1 processes of its own running 1 s after its last teardown (killed now); "
                        "a hub did not reap its runtimes:")
    pid, command = lines[start + 1].strip().split(": ", 1)
    assert command == f"{sys.executable} -c import time; time.sleep(300) triggerhub.cli"
    assert "1 passed" in run.stdout
    assert _wait_until(lambda: _state(int(pid)) in ("gone", "Z"), 5)
    unrelated = [int(p) for p in _processes_naming("sleep 299")]
    assert len(unrelated) == 1  # not this run's to judge
    os.kill(unrelated[0], signal.SIGKILL)


def test_a_session_that_leaves_nothing_passes(tmp_path: Path) -> None:
    run = _run_inner_session(tmp_path, LEAVING_TEST.replace("subprocess.Popen(", "subprocess.run(").replace(
        "sleep(300)", "sleep(0)").replace('"299"', '"0"'))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the run left" not in run.stdout


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.parametrize(("args", "env"), [(["--no-props"], {}), ([], {"TRIGGERHUB_WRITE_PROPS": "false"})],
                         ids=["flag", "environment"])
def test_a_hub_started_not_to_record_itself_leaves_the_props_file_alone(tmp_path: Path, args: list[str],
                                                                         env: dict[str, str]) -> None:
    props = tmp_path / "triggerhubprops"
    props.write_text("APIHOST=http://127.0.0.1:3233\nAUTH=user:key\n")  # the user's own hub's
    hub = HubProcess(tmp_path / "home", free_port(), extra_args=args, extra_env={**env, "TRIGGERHUB_PROPS": str(props)})
    hub.home.mkdir()
    hub.start()
    try:
        log = tmp_path / f"hub-{hub.port}.log"
        notice = (f"  not recorded in {props} (--no-props, TRIGGERHUB_WRITE_PROPS=false); to reach this hub:\n"
                  f"  wsk property set --apihost {hub.apihost} --auth {hub.auth}\n")
        assert _wait_until(lambda: notice in log.read_text(), 30), log.read_text()
        assert props.read_text() == "APIHOST=http://127.0.0.1:3233\nAUTH=user:key\n"
    finally:
        hub.stop()


@pytest.mark.parametrize("ending", ["sigterm", "port-taken"])
def test_a_hub_that_stops_or_fails_to_start_removes_its_stem_cells_itself(tmp_path: Path, ending: str) -> None:
    """Not left to bwrap's --die-with-parent or the next start's sweep: no runtime process and no
    runtime folder remains once `triggerhub up` has exited."""
    runtimes_root = Path(tempfile.mkdtemp(prefix="th-rt-"))
    runtimes_root.chmod(0o711)
    env = {**os.environ, "TMPDIR": str(runtimes_root), "TRIGGERHUB_PREWARM": "start", "TRIGGERHUB_PREWARM_COUNT": "1",
           "TRIGGERHUB_PROPS": str(tmp_path / "props")}
    log = tmp_path / "hub.log"
    with socket.socket() as taken, log.open("w") as log_file:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if ending == "port-taken" else free_port()
        hub = subprocess.Popen([sys.executable, "-m", "triggerhub.cli", "up", "--port", str(port), "--home",
                                str(tmp_path / "home"), "--runtime", "process", "--no-examples"],
                               env=env, stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True)
        try:
            if ending == "sigterm":
                assert hub.stdout is not None
                assert hub.stdout.readline().startswith(f"triggerhub listening on http://127.0.0.1:{port} ")
                assert len(list(runtimes_root.glob("triggerhub-proc-*"))) == 2  # python's and nodejs' stem cells
                hub.terminate()
            hub.communicate(timeout=60)
        finally:
            if hub.poll() is None:
                hub.kill()
                hub.wait(timeout=10)
    try:
        assert hub.returncode == (0 if ending == "sigterm" else 1), log.read_text()
        assert list(runtimes_root.iterdir()) == []
        assert _processes_naming(str(runtimes_root)) == []
    finally:
        for pid in _processes_naming(str(runtimes_root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(runtimes_root, ignore_errors=True)
