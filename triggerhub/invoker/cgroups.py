"""Memory cgroups for sandboxed action processes: one cgroup per process, made by the hub.

cgroup v2 (`memory.max`, `memory.swap.max`, `pids.max`, `memory.events`) when the unified
hierarchy has the memory controller, else cgroup v1 (`memory.limit_in_bytes`,
`memory.memsw.limit_in_bytes`, `memory.oom_control`) under the hub's own memory cgroup.
`MemoryCgroups.find()` returns None when neither can be written (not root, read-only
/sys/fs/cgroup): the sandbox then limits memory with RLIMIT_DATA only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "triggerhub-sandbox"
_REMOVE_TRIES = 50
_REMOVE_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One process's cgroup; its first process joins by writing its pid to `procs_file`."""

    path: Path
    version: int

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this cgroup for exceeding its memory."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    async def remove(self) -> None:
        """rmdir once the kernel has let go of its (killed) processes; a cgroup still busy after
        a second is left for `MemoryCgroups.remove_orphans` of a later hub."""
        for _ in range(_REMOVE_TRIES):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY while the killed processes are being reaped
                await asyncio.sleep(_REMOVE_INTERVAL_S)
        logger.warning("cgroup %s is still busy; left for the next start-up to remove", self.path)


@dataclass(frozen=True, slots=True)
class MemoryCgroups:
    """The folder under which the hub makes one cgroup per sandboxed process."""

    parent: Path
    version: int

    @classmethod
    def find(cls) -> MemoryCgroups | None:
        for candidate in (_v2_parent, _v1_parent):
            found = candidate()
            if found is not None:
                return found
        return None

    def create(self, name: str, *, memory_mb: int, process_limit: int) -> Cgroup:
        path = self.parent / name
        path.mkdir()
        limit = str(memory_mb * 1024 * 1024)
        if self.version == 2:
            _write(path / "memory.max", limit)
            _write_if_present(path / "memory.swap.max", "0")
            _write_if_present(path / "pids.max", str(process_limit))
        else:
            _write(path / "memory.limit_in_bytes", limit)
            _write_if_present(path / "memory.memsw.limit_in_bytes", limit)  # after the memory limit
        return Cgroup(path, self.version)

    def remove_orphans(self, prefix: str, orphaned: Callable[[str], bool]) -> int:
        """Remove the empty cgroups named `prefix*` for which `orphaned(name)` holds."""
        removed = 0
        for path in self.parent.glob(prefix + "*"):
            if not orphaned(path.name):
                continue
            with contextlib.suppress(OSError):
                path.rmdir()
                removed += 1
        return removed


def _v2_parent() -> MemoryCgroups | None:
    root = CGROUP_ROOT
    try:
        if "memory" not in (root / "cgroup.controllers").read_text().split():
            return None
        parent = root / PARENT_NAME
        parent.mkdir(exist_ok=True)
        wanted = [c for c in ("memory", "pids") if c in (root / "cgroup.controllers").read_text().split()]
        for folder in (root, parent):
            enabled = (folder / "cgroup.subtree_control").read_text().split()
            missing = " ".join(f"+{c}" for c in wanted if c not in enabled)
            if missing:
                _write(folder / "cgroup.subtree_control", missing)
    except OSError as exc:
        logger.debug("no cgroup v2 memory controller for the sandbox: %s", exc)
        return None
    return MemoryCgroups(parent, 2)


def _v1_parent() -> MemoryCgroups | None:
    own = _own_v1_memory_cgroup()
    if own is None:
        return None
    parent = CGROUP_ROOT / "memory" / own.lstrip("/") / PARENT_NAME
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError as exc:
        logger.debug("no cgroup v1 memory controller for the sandbox: %s", exc)
        return None
    return MemoryCgroups(parent, 1)


def _own_v1_memory_cgroup() -> str | None:
    """The hub's own memory cgroup: sandboxes nest under it, so a limit set on the hub holds."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return None


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        _write(path, value)
