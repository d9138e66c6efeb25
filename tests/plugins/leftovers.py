"""The run's own temporary folder, and the check at the end that the run left no process behind.

At configure time, before any test, TMPDIR (and `tempfile.tempdir`) points at a folder of this run
alone. Every hub a test starts, here or as a child process, keeps its runtimes' folders under it,
and child processes inherit the variable: a process whose command line or working folder names
that folder (a sandboxed runtime: bwrap, its proxy), or a triggerhub process whose environment has
TMPDIR set to it (a hub, an invoker), belongs to this run, even after it was orphaned to init. A
service a test restarted through scripts/services (the Kafka broker in CI) inherits TMPDIR too and
is meant to outlive the run: only triggerhub's own processes are looked at. Once every fixture is
torn down, such processes get a short grace (a teardown's kill is delivered asynchronously), then
the survivors are named, killed, and the run fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

GRACE_S = float(os.environ.get("TH_TEST_LEFTOVERS_GRACE_S", "10"))


RUN_TMP = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Make the run's folder and point this process and its children at it; pytest's own tmp_path
    folders stay where they were (PYTEST_DEBUG_TEMPROOT)."""
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    folder = tempfile.mkdtemp(prefix="th-run-")
    os.chmod(folder, 0o711)  # the sandbox user passes through it to a runtime's socket folder
    os.environ["TMPDIR"] = folder
    tempfile.tempdir = folder
    config.stash[RUN_TMP] = folder
    # `triggerhub up` records itself for the CLI in ~/.triggerhubprops: hubs started by tests write
    # to a file of this run instead, never over the user's own.
    os.environ.setdefault("TRIGGERHUB_PROPS", os.path.join(folder, "triggerhubprops"))


def leftovers(run_tmp: str) -> dict[int, str]:
    """pid -> command line of every live process of this run but this one."""
    found: dict[int, str] = {}
    marker = f"TMPDIR={run_tmp}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not cmdline:  # a zombie, or a kernel thread
                continue
            cwd = os.readlink(entry / "cwd")
            ours = (run_tmp.encode() in cmdline or cwd.startswith(run_tmp)
                    or (_is_triggerhub(cmdline.split(b"\0")) and marker in (entry / "environ").read_bytes()))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if ours:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _is_triggerhub(argv: list[bytes]) -> bool:
    """`python -m triggerhub.cli ...` (or .cli.distributed), or the `triggerhub` console script;
    not merely a process whose arguments pass through a folder named triggerhub."""
    return (any(arg.startswith(b"triggerhub.cli") for arg in argv)
            or any(os.path.basename(arg) == b"triggerhub" for arg in argv[:2]))


@pytest.hookimpl(trylast=True)  # after the runner's own, which tears the session's fixtures down
def pytest_sessionfinish(session: pytest.Session) -> None:
    run_tmp = session.config.stash[RUN_TMP]
    deadline = time.monotonic() + GRACE_S
    left = leftovers(run_tmp)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers(run_tmp)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  {pid}: {command[:300]}" for pid, command in sorted(left.items())]
        message = "\n".join([f"the run left {len(left)} processes of its own running {GRACE_S:.0f} s after its "
                             "last teardown (killed now); a hub did not reap its runtimes:", *lines])
        if reporter is not None:
            reporter.write("\n")  # after -q's progress, which ends without one
            reporter.write_line(message, red=True)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(run_tmp, ignore_errors=True)
