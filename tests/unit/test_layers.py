"""The import layers of STYLE.md hold: siblings never import each other; only cli picks adapters;
inside `triggerhub.api` no module cycle, no import hidden in a function, no `type: ignore`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "triggerhub" / "api"


def test_import_linter_contracts_are_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    result = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout
    assert any(c["type"] == "acyclic_siblings" and c["ancestors"] == ["triggerhub.engine"] for c in contracts)
    assert re.search(r"engine modules form no import cycle.*KEPT", " ".join(result.stdout.split()))
    assert {"acyclic_siblings", "layers"} <= {c["type"] for c in contracts if c["name"].startswith("api:")}


def function_local_imports(source: str) -> list[str]:
    """`name:line` of every import inside a function body (a cycle dodged at run time)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"{node.name}:{inner.lineno}" for inner in ast.walk(node)
                      if isinstance(inner, (ast.Import, ast.ImportFrom))]
    return found


def test_the_function_local_import_check_sees_one():
    assert function_local_imports("import os\n\ndef f():\n    import json\n    return json\n") == ["f:4"]


def test_api_has_no_function_local_import_and_no_type_ignore():
    modules = sorted(API.glob("*.py"))
    assert len(modules) >= 10
    assert {m.name: function_local_imports(m.read_text()) for m in modules if function_local_imports(m.read_text())} == {}
    assert [m.name for m in modules if "type: ignore" in m.read_text()] == []
