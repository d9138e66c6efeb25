"""The Node.js binary the nodejs base image copies: TRIGGERHUB_NODE_BINARY names it (on PATH or
by path), and build-rootfs.sh is handed its absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.images import host_node


def test_a_node_on_path_is_resolved_to_its_absolute_path() -> None:
    on_path = shutil.which("node")
    assert on_path is not None, "the nodejs runtime needs node on PATH"
    path, version = host_node("node")
    assert path == on_path and Path(path).is_absolute()
    assert version.startswith("v")
    assert host_node(on_path) == (on_path, version)


def test_a_missing_node_binary_says_what_to_set(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-node")
    with pytest.raises(ActionRuntimeError) as caught:
        host_node(missing)
    assert str(caught.value) == (
        f"the nodejs:20 base needs a Node.js 20 binary on the host; '{missing} --version' failed "
        f"({missing!r} is not an executable on PATH or a path to one); install Node.js 20 or set TRIGGERHUB_NODE_BINARY")
