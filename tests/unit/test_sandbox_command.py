"""The bubblewrap command line of the process runtime's sandbox (pure: no process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerhub.config import RuntimeConfig, SandboxChoice
from triggerhub.errors import ConfigError
from triggerhub.invoker.cgroups import Cgroup, MemoryCgroups
from triggerhub.invoker.sandbox import Sandbox, find_sandbox

BIND_OPTIONS = ("--bind", "--ro-bind", "--ro-bind-try", "--bind-try", "--dev-bind", "--dev-bind-try")
REPOSITORY = str(Path(__file__).resolve().parents[2])


CGROUP = Cgroup(Path("/sys/fs/cgroup/triggerhub-sandbox/triggerhub-proc-1-abc"), 2)


def command(sandbox: Sandbox, *, network: bool = False, cgroup: Cgroup | None = None) -> list[str]:
    return sandbox.command(["/usr/bin/python3.11", "/opt/triggerhub/proxy.py"], proxy_fd=7, proxy_name="proxy.py",
                           socket_dir="/tmp/triggerhub-proc-1-abc/sock", memory_mb=128, network=network,
                           cgroup=cgroup)


def binds(args: list[str]) -> dict[str, str]:
    return {args[i + 2]: args[i + 1] for i, arg in enumerate(args) if arg in BIND_OPTIONS}


ROOT_SANDBOX = Sandbox(bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv", prlimit="/usr/bin/prlimit",
                       cgroups=MemoryCgroups(Path("/sys/fs/cgroup/triggerhub-sandbox"), 2))


def test_root_joins_the_cgroup_then_drops_to_nobody_and_binds_nothing_of_the_hub() -> None:
    args = command(ROOT_SANDBOX, cgroup=CGROUP)
    assert args[:10] == ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', f"{CGROUP.path}/cgroup.procs",
                         "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/bwrap"]
    mounted = binds(args)
    assert mounted["/run/triggerhub"] == "/tmp/triggerhub-proc-1-abc/sock"
    assert mounted["/usr"] == "/usr"
    sources = set(mounted.values())
    assert not any(source in ("/", "/root", "/proc", "/home", "/tmp") or source.startswith(("/root/", "/proc/"))
                   or source.startswith(REPOSITORY) for source in sources), sources
    for namespace in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"):
        assert namespace in args
    tmpfs = [args[i - 2:i + 2] for i, arg in enumerate(args) if arg == "--tmpfs"]
    assert tmpfs == [["--size", str(64 << 20), "--tmpfs", "/dev/shm"], ["--size", str(128 << 20), "--tmpfs", "/tmp"]]
    assert args.index("--remount-ro") > max(i for i, arg in enumerate(args) if arg in BIND_OPTIONS)
    limits = args[args.index("/usr/bin/prlimit"):]
    assert limits == ["/usr/bin/prlimit", "--nproc=256", f"--fsize={64 << 20}", "--core=0", "--",
                      "/usr/bin/python3.11", "/opt/triggerhub/proxy.py"]  # memory: by the cgroup


def test_network_annotation_keeps_the_host_network_and_no_cgroup_means_rlimit_data() -> None:
    unprivileged = Sandbox(bwrap="/usr/bin/bwrap", setpriv=None, prlimit="/usr/bin/prlimit")
    args = command(unprivileged, network=True)
    assert args[0] == "/usr/bin/bwrap" and "--unshare-net" not in args
    assert f"--data={128 << 20}" in args


def test_unsandboxed_root_is_refused_and_allowed_only_explicitly() -> None:
    with pytest.raises(ConfigError, match=r"^TRIGGERHUB_SANDBOX=none: the hub runs as root"):
        find_sandbox(RuntimeConfig(sandbox=SandboxChoice.NONE), uid=0)
    assert find_sandbox(RuntimeConfig(sandbox=SandboxChoice.NONE, allow_unsandboxed_root=True), uid=0) is None
    assert find_sandbox(RuntimeConfig(sandbox=SandboxChoice.NONE), uid=1000) is None
