"""Memory cgroup files of the sandbox, written and read in a plain folder standing in for
/sys/fs/cgroup (the real v1 hierarchy is exercised by tests/integration/test_sandbox.py)."""

from __future__ import annotations

from pathlib import Path

from triggerhub.invoker.cgroups import MemoryCgroups


def test_v2_limits_and_oom_kills(tmp_path: Path) -> None:
    cgroups = MemoryCgroups(tmp_path, 2)
    cgroup = cgroups.create("triggerhub-proc-1-a", memory_mb=128, process_limit=256)
    assert (cgroup.path / "memory.max").read_text() == str(128 << 20)
    assert not (cgroup.path / "pids.max").exists()  # written only where the controller offers it
    assert cgroup.oom_kills() == 0  # no memory.events yet
    (cgroup.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert cgroup.oom_kills() == 1
    assert cgroup.procs_file == tmp_path / "triggerhub-proc-1-a" / "cgroup.procs"


def test_v1_limits_and_oom_kills(tmp_path: Path) -> None:
    cgroup = MemoryCgroups(tmp_path, 1).create("triggerhub-proc-1-b", memory_mb=256, process_limit=256)
    assert (cgroup.path / "memory.limit_in_bytes").read_text() == str(256 << 20)
    (cgroup.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroup.oom_kills() == 2


def test_only_cgroups_of_dead_owners_are_swept(tmp_path: Path) -> None:
    for name in ("triggerhub-proc-1-dead", "triggerhub-proc-2-alive", "other"):
        (tmp_path / name).mkdir()
    removed = MemoryCgroups(tmp_path, 2).remove_orphans("triggerhub-proc-", lambda name: "-dead" in name)
    assert removed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "triggerhub-proc-2-alive"]
