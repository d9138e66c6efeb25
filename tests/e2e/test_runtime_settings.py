"""The runtime settings the image builder tells users about (TRIGGERHUB_RUNTIMES_DIR,
TRIGGERHUB_NODE_BINARY) are hub settings: `triggerhub up` starts with them and uses them, and a
bad one stops start-up with a message naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.cli import HubProcess, free_port
from triggerhub.config import REPOSITORY_RUNTIMES_DIR

FUTURE_IMPORT = "from __future__ import annotations\n"


@pytest.fixture
def runtimes_copy(tmp_path: Path) -> tuple[Path, str]:
    """A copy of runtimes/ whose Python proxy sets PROXY_COPY=<marker> for the actions it runs."""
    copy = tmp_path / "my-runtimes"
    shutil.copytree(REPOSITORY_RUNTIMES_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    marker = uuid.uuid4().hex
    proxy = copy / "python" / "proxy.py"
    source = proxy.read_text()
    assert FUTURE_IMPORT in source
    proxy.write_text(source.replace(FUTURE_IMPORT, f"{FUTURE_IMPORT}import os as _os\n"
                                                   f"_os.environ['PROXY_COPY'] = {marker!r}\n", 1))
    return copy, marker


@pytest.fixture
def node_elsewhere() -> Iterator[Path]:
    """The host's node under another path (a hard link, or a copy across file systems), in a folder
    every user can reach and outside /tmp: the process runtime's sandbox starts it as an
    unprivileged user, with a /tmp of its own."""
    node = shutil.which("node")
    assert node is not None, "the nodejs runtime needs node on PATH"
    folder = Path(tempfile.mkdtemp(prefix="th-node-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "bin").mkdir(mode=0o755)
    elsewhere = folder / "bin" / "node"
    try:
        os.link(Path(node).resolve(), elsewhere)
    except OSError:
        shutil.copy2(Path(node).resolve(), elsewhere)
    yield elsewhere
    shutil.rmtree(folder)


def test_up_starts_with_the_runtime_settings_and_runs_actions_with_them(
        tmp_path: Path, runtimes_copy: tuple[Path, str], node_elsewhere: Path) -> None:
    (runtimes, proxy_marker), node = runtimes_copy, node_elsewhere
    hub = HubProcess(tmp_path / "home", free_port(),
                     extra_env={"TRIGGERHUB_RUNTIMES_DIR": str(runtimes), "TRIGGERHUB_NODE_BINARY": str(node)})
    hub.home.mkdir()
    hub.start()
    try:
        python_source = tmp_path / "which_proxy.py"
        python_source.write_text("import os\n\ndef main(args):\n    return {'proxy': os.environ.get('PROXY_COPY', 'original')}\n")
        node_source = tmp_path / "which_node.js"
        node_source.write_text("function main() { return {node: process.execPath}; }\n")
        hub.cli("action", "create", "which-proxy", str(python_source))
        hub.cli("action", "create", "which-node", str(node_source))
        assert hub.cli("action", "invoke", "which-proxy", "--result").stdout.strip() == f'{{"proxy": "{proxy_marker}"}}'
        assert hub.cli("action", "invoke", "which-node", "--result").stdout.strip() == f'{{"node": "{node}"}}'
    finally:
        hub.stop()


def up_exits(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    hub = HubProcess(tmp_path / "home", free_port(), extra_env=env)
    return subprocess.run([sys.executable, "-m", "triggerhub.cli", "up", "--port", str(hub.port), "--home",
                           str(hub.home), "--runtime", "process", "--no-examples"],
                          capture_output=True, text=True, env=hub.env(), timeout=60)


def test_a_runtimes_dir_without_proxies_stops_start_up_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = up_exits(tmp_path, {"TRIGGERHUB_RUNTIMES_DIR": str(empty)})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "Error: invalid configuration:",
        f"  TRIGGERHUB_RUNTIMES_DIR='{empty}': no python/proxy.py in {empty}; point it at the runtimes/ folder "
        f"of a triggerhub checkout (this one's is {REPOSITORY_RUNTIMES_DIR})",
    ]


def test_an_unknown_setting_still_stops_start_up_naming_it(tmp_path: Path) -> None:
    result = up_exits(tmp_path, {"TRIGGERHUB_RUNTIMES_DIRECTORY": "/x"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2] == "Error: invalid configuration:"
    assert result.stderr.splitlines()[-1].startswith("  TRIGGERHUB_RUNTIMES_DIRECTORY: unknown setting; known: ")
    assert "TRIGGERHUB_RUNTIMES_DIR," in result.stderr and "TRIGGERHUB_NODE_BINARY," in result.stderr
