"""The official `openwhisk` npm client against a running hub (installed by scripts/test)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def test_openwhisk_npm_client_drives_the_api(hub_process):
    if not (NODE_DIR / "node_modules" / "openwhisk").is_dir():
        message = f"the openwhisk npm package is not installed: run `npm ci` in {NODE_DIR}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "__OW_API_HOST": hub_process.apihost, "__OW_API_KEY": hub_process.auth}
    result = subprocess.run(["node", str(NODE_DIR / "drive.js")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True, "steps": 32}
