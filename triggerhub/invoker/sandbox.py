"""The bubblewrap sandbox of the process runtime: the command line that starts one proxy.

Each proxy runs under `bwrap` (Debian package bubblewrap) as user nobody (65534; as root the hub
first drops to it with `setpriv`, so the uid is unprivileged outside the sandbox too), with the
environment it is given and nothing else, in its own user, mount, PID, IPC and UTS namespaces and,
unless the action is annotated `sandbox-network: true`, its own empty network namespace. It sees
/usr and a few files of /etc read-only, a size-limited private /tmp, a fresh /proc of its own PID
namespace, its socket folder at /run/triggerhub and its proxy script; nothing of the hub's home,
the repository, /root or the host's /proc. Limits: memory by a cgroup (cgroups.py) when the hub
can make one, else RLIMIT_DATA; processes and file size by rlimits set inside the sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from triggerhub.config import RuntimeConfig, SandboxChoice
from triggerhub.errors import ActionRuntimeError, ConfigError
from triggerhub.invoker.cgroups import Cgroup, MemoryCgroups

logger = logging.getLogger(__name__)

SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
SOCKET_MOUNT = "/run/triggerhub"
PROXY_MOUNT = "/opt/triggerhub"
PROCESS_LIMIT = 256  # processes and threads of one action (RLIMIT_NPROC, counted per sandbox)
FILE_SIZE_LIMIT_MB = 64  # largest file an action may write (RLIMIT_FSIZE)
SHM_LIMIT_MB = 64  # the private /dev/shm, as Docker's default
SYSTEM_DIRS = ("/usr",)
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the interpreters read from /etc: the loader cache, TLS roots, name resolution (for
# actions given the network), time zone and the user database.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/resolv.conf",
             "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/localtime",
             "/etc/passwd", "/etc/group", "/etc/mime.types")
INSTALL_HINT = "install it with `apt-get install bubblewrap`"


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How to wrap a proxy command: found once at start-up by `find_sandbox`."""

    bwrap: str
    setpriv: str | None  # set when the hub is root: drops to SANDBOX_UID before bwrap runs
    prlimit: str
    cgroups: MemoryCgroups | None = None

    @property
    def uid(self) -> int:
        """The uid the sandboxed processes have outside the sandbox."""
        return SANDBOX_UID if self.setpriv else os.getuid()

    def check_reachable(self, folder: Path) -> None:
        """bwrap binds a runtime's socket folder after dropping to the sandbox user, who must be
        able to pass through every folder above it."""
        if self.setpriv is None:
            return
        for ancestor in (folder.resolve(), *folder.resolve().parents):
            if not os.stat(ancestor).st_mode & 0o001:
                raise ActionRuntimeError(
                    f"temporary folder '{folder}' cannot be reached by the sandbox user (uid {SANDBOX_UID}): "
                    f"'{ancestor}' is not searchable by others; set TMPDIR to a folder such as /tmp")

    def open_folders(self, workdir: str, socket_dir: str) -> None:
        """Before start: bwrap must reach the socket folder; as root, that folder stays root's,
        and the sandbox user may create its socket there but not list it."""
        os.chmod(workdir, 0o711)
        if self.setpriv is not None:
            os.chmod(socket_dir, 0o1733)

    def close_socket_folder(self, socket_dir: str) -> None:
        """Once the proxy listens: the sandbox may create nothing more in its only host folder."""
        if self.setpriv is not None:
            os.chmod(socket_dir, 0o711)

    def command(self, program: list[str], *, proxy_fd: int, proxy_name: str, socket_dir: str,
                memory_mb: int, network: bool, cgroup: Cgroup | None = None) -> list[str]:
        """The command that runs `program` (interpreter first, proxy script last, as it is seen
        inside) in the sandbox. `proxy_fd` is an open, readable file of the proxy script; with
        `cgroup`, the first process joins it before anything of the sandbox exists."""
        args = [self.bwrap, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox", "--unshare-cgroup-try",
                "--die-with-parent", "--disable-userns", "--cap-drop", "ALL"]
        if not network:
            args.append("--unshare-net")
        for folder in SYSTEM_DIRS:
            args += ["--ro-bind", folder, folder]
        for link in TOP_LEVEL_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
        interpreter_home = _outside_system_dirs(program[0])
        if interpreter_home is not None:
            args += ["--ro-bind", interpreter_home, interpreter_home]
        for path in ETC_FILES:
            args += ["--ro-bind-try", path, path]
        args += ["--proc", "/proc", "--dev", "/dev",
                 # POSIX shared memory (Python's multiprocessing locks need it), private as /tmp.
                 "--perms", "1777", "--size", str(min(memory_mb, SHM_LIMIT_MB) * 1024 * 1024), "--tmpfs", "/dev/shm",
                 "--perms", "1777", "--size", str(memory_mb * 1024 * 1024), "--tmpfs", "/tmp",
                 "--bind", socket_dir, SOCKET_MOUNT,
                 "--perms", "0444", "--ro-bind-data", str(proxy_fd), f"{PROXY_MOUNT}/{proxy_name}",
                 # The sandbox's root and /dev are tmpfs folders bwrap made for its mount points:
                 # read-only once those exist, so the action writes only to /tmp and /dev/shm.
                 "--remount-ro", "/dev", "--remount-ro", "/",
                 "--chdir", "/tmp", "--",
                 self.prlimit, f"--nproc={PROCESS_LIMIT}", f"--fsize={FILE_SIZE_LIMIT_MB * 1024 * 1024}", "--core=0"]
        if cgroup is None:
            args.append(f"--data={memory_mb * 1024 * 1024}")
        args += ["--", *program]
        if self.setpriv is not None:
            args = [self.setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}", "--clear-groups", "--", *args]
        if cgroup is not None:
            args = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup.procs_file), *args]
        return args


def find_sandbox(config: RuntimeConfig, *, uid: int | None = None) -> Sandbox | None:
    """The sandbox the process runtime uses (None: unsandboxed, allowed only as asked), or a
    ConfigError that says what to install or set."""
    uid = os.getuid() if uid is None else uid
    if config.sandbox is SandboxChoice.NONE:
        if uid == 0 and not config.allow_unsandboxed_root:
            raise ConfigError(
                "TRIGGERHUB_SANDBOX=none: the hub runs as root, so its actions would run as root with full "
                "access to this machine; refused. Use the bubblewrap sandbox (apt-get install bubblewrap, "
                "TRIGGERHUB_SANDBOX=bwrap), run the hub as an unprivileged user, or accept the risk with "
                "TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT=true (triggerhub up --allow-unsandboxed-root)")
        logger.warning("TRIGGERHUB_SANDBOX=none: actions run as local processes, NOT isolated from this machine")
        return None
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ConfigError(
            f"the process runtime runs actions in a bubblewrap sandbox, but `bwrap` is not on PATH; {INSTALL_HINT} "
            "(or start a Docker engine for the Docker runtime, or set TRIGGERHUB_SANDBOX=none to run actions "
            "unsandboxed, which as root also needs TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT=true)")
    tools = {name: shutil.which(name) for name in ("setpriv", "prlimit")}
    missing = sorted(name for name, path in tools.items() if path is None)
    if missing:
        raise ConfigError(f"the bubblewrap sandbox needs {', '.join(missing)} (util-linux); "
                          "install it with `apt-get install util-linux`")
    sandbox = Sandbox(bwrap=bwrap, setpriv=tools["setpriv"] if uid == 0 else None, prlimit=str(tools["prlimit"]),
                      cgroups=MemoryCgroups.find() if uid == 0 else None)
    _probe(sandbox)
    logger.info("process runtime sandbox: bubblewrap as uid %d; memory limited by %s", sandbox.uid,
                f"cgroup v{sandbox.cgroups.version} under {sandbox.cgroups.parent}" if sandbox.cgroups
                else "RLIMIT_DATA (no writable memory cgroup)")
    return sandbox


def _probe(sandbox: Sandbox) -> None:
    """Start one empty sandbox, so that a kernel without user namespaces fails at start-up."""
    with open(os.devnull, "rb") as empty, tempfile.TemporaryDirectory(prefix="triggerhub-probe-") as folder:
        os.chmod(folder, 0o711)  # bwrap runs as the sandbox user and must reach the folder it binds
        command = sandbox.command(["/bin/true"], proxy_fd=empty.fileno(), proxy_name="probe",
                                  socket_dir=folder, memory_mb=16, network=False)
        try:
            done = subprocess.run(command, pass_fds=(empty.fileno(),), env={"PATH": "/usr/bin:/bin"},
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"bubblewrap could not start a sandbox ({exc}); {INSTALL_HINT}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise ConfigError(
            f"bubblewrap cannot create its sandbox on this machine: {reason}; it needs user namespaces "
            "(sysctl user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone=1 where that exists), "
            "or set TRIGGERHUB_SANDBOX=none to run actions unsandboxed")


def _outside_system_dirs(program: str) -> str | None:
    """The installation folder of an interpreter that does not live under /usr (e.g. pyenv's),
    bound read-only; None for /usr/bin/python3 and /usr/bin/node."""
    real = Path(program).resolve()
    if any(real.is_relative_to(folder) for folder in SYSTEM_DIRS):
        return None
    return str(real.parent.parent)
