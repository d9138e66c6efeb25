"""Property-based fuzzing of the manifest loader and validator (hypothesis): random text, random
manifest-shaped documents and mutations of the shipped examples either load or raise one
ManifestError whose every problem names file:line:column inside the file. Nothing else escapes.

Bounded: a fixed number of examples per property and a per-example deadline; about 10 s in all.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from triggerhub.errors import ManifestError
from triggerhub.manifests.loader import load_project

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*/manifest.yaml"))
FUZZ = settings(max_examples=150, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KEYS = ["project", "packages", "actions", "sequences", "triggers", "rules", "apis", "name", "function", "runtime",
        "kind", "inputs", "annotations", "limits", "timeout", "memory", "web", "web-export", "feed", "trigger",
        "action", "actions", "main", "code", "docker", "type", "value", "default", "dependencies", "version",
        "namespace", "credential", "topics", "binding", "public", "require-whisk-auth", "include", "exclude"]
NAMES = ["hello", "p", "t", "r", "s", "a-b", "x.y", "", " ", "$HOME", "${NOPE}", "/whisk.system/alarms/alarm",
         "hello.py", "../etc/passwd", "python:3.11", "nodejs:default", "a/b/c", "ünïcode", "*"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NAMES), st.text(max_size=12))


def values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return SCALARS
    inner = values(depth - 1)
    return st.one_of(SCALARS, st.lists(inner, max_size=4),
                     st.dictionaries(st.one_of(st.sampled_from(KEYS), st.sampled_from(NAMES)), inner, max_size=5))


GOOD_NAMES = ["hello", "p", "t", "r", "s", "a-b", "orders", "parse-order", "order-received", "on-order"]


def either(sensible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(sensible, sensible, sensible, values(1))


def entities(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    entity = st.fixed_dictionaries({}, optional={key: either(value) for key, value in fields.items()})
    names = st.one_of(st.sampled_from(GOOD_NAMES), st.sampled_from(GOOD_NAMES), st.sampled_from(NAMES))
    return either(st.dictionaries(names, either(entity), min_size=1, max_size=3))


def manifests() -> st.SearchStrategy[dict[str, Any]]:
    """Documents shaped like manifests (so validation gets past the top level), with any value in any place."""
    name = st.sampled_from(GOOD_NAMES)
    inputs = st.dictionaries(name, st.one_of(SCALARS, st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "float", "boolean", "json", "nope"]), "value": SCALARS})),
        max_size=3)
    package = st.fixed_dictionaries({}, optional={
        "actions": entities({"function": st.sampled_from(["hello.py", "missing.py", "check_temperature.py", ""]),
                             "runtime": st.sampled_from(["python:3.11", "nodejs:20", "python", "cobol:1", ""]),
                             "main": st.sampled_from(["main", ""]), "inputs": inputs,
                             "limits": st.dictionaries(st.sampled_from(["timeout", "memory", "logSize", "nope"]),
                                                       st.integers(-10, 10**6), max_size=3),
                             "web": st.sampled_from([True, False, "raw", "yes"]), "code": st.text(max_size=20),
                             "annotations": st.dictionaries(name, SCALARS, max_size=2)}),
        "sequences": entities({"actions": st.one_of(st.lists(name, max_size=3).map(", ".join),
                                                    st.lists(name, max_size=3))}),
        "triggers": entities({"feed": st.sampled_from(["/whisk.system/alarms/alarm", "/whisk.system/webhook/webhook",
                                                       "alarms/once", "/nope/x/y", ""]), "inputs": inputs}),
        "rules": entities({"trigger": name, "action": name}),
        "inputs": inputs, "namespace": SCALARS, "version": st.sampled_from(["1.0", "0.0.1", "x"]),
        "public": st.booleans()})
    packages = st.dictionaries(st.one_of(name, st.sampled_from(NAMES)), either(package), min_size=1, max_size=2)
    body = st.fixed_dictionaries({"packages": either(packages)}, optional={"name": values(0), "inputs": inputs})
    return st.one_of(st.fixed_dictionaries({"project": either(body)}), st.fixed_dictionaries({"packages": packages}),
                     st.dictionaries(st.sampled_from(KEYS), values(2), max_size=4))


def dump(document: Any) -> str:
    out = io.StringIO()
    YAML().dump(document, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One folder per module: the examples' function files, and the manifest under test."""
    with tempfile.TemporaryDirectory(prefix="manifest-fuzz-") as folder:
        root = Path(folder)
        for example in EXAMPLES:
            for source in example.parent.iterdir():
                if source.name != "manifest.yaml":
                    (root / source.name).write_bytes(source.read_bytes())
        (root / "hello.py").write_text("def main(args):\n    return args\n")
        yield root


def check_loads_or_locates(folder: Path, text: str, deployment: str | None = None) -> None:
    """Load `text` as manifest.yaml (with `deployment` as deployment.yaml): a Project, or
    ManifestError with every problem located in one of the two files."""
    files = {"manifest.yaml": text, **({"deployment.yaml": deployment} if deployment is not None else {})}
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    try:
        load_project(folder / "manifest.yaml", deployment=folder / "deployment.yaml" if deployment is not None else None,
                     env={"WEBHOOK_TOKEN": "t0k"})
    except ManifestError as caught:
        assert caught.problems, "a ManifestError names at least one problem"
        for problem in caught.problems:
            named = [name for name in files if problem.file.endswith(name)]
            assert named, str(problem)
            line_count = files[named[0]].count("\n") + 2  # a problem may point just past the last line
            assert 1 <= problem.line <= line_count and problem.column >= 1, str(problem)
            assert problem.message.strip(), str(problem)
            assert re.match(r"\A.+:\d+:\d+ ", str(problem)), str(problem)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("abc:-_ \n\t{}[],'\"#&*!|>%@`$?~=0123456789.")), max_size=200))
def test_random_text_never_crashes_the_loader(workdir: Path, text: str) -> None:
    check_loads_or_locates(workdir, text)


@FUZZ
@given(document=manifests())
def test_random_manifest_documents_never_crash_the_loader(workdir: Path, document: dict[str, Any]) -> None:
    check_loads_or_locates(workdir, dump(document))


@FUZZ
@given(overlay=manifests())
def test_random_deployment_overlays_never_crash_the_loader(workdir: Path, overlay: dict[str, Any]) -> None:
    example = EXAMPLES_DIR / "webhook-to-sequence" / "manifest.yaml"
    check_loads_or_locates(workdir, example.read_text(), dump(overlay))


def mutate(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not lines:
            break
        at = data.draw(st.integers(0, len(lines) - 1), label="line")
        action = data.draw(st.sampled_from(["drop", "duplicate", "indent", "dedent", "value", "key", "swap", "cut"]))
        line = lines[at]
        if action == "drop":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, line)
        elif action == "indent":
            lines[at] = "  " + line
        elif action == "dedent":
            lines[at] = line[2:] if line.startswith("  ") else line
        elif action == "value" and ":" in line:
            head, _, _ = line.partition(":")
            replacement = data.draw(st.sampled_from(["", " 5", " [1, {a: b}]", " {x: }", " ~", " true", " -1",
                                                     " 1e999", " \"\\u0000\"", " *anchor", " &a [", " |\n  x"]))
            lines[at] = f"{head}:{replacement}\n"
        elif action == "key" and ":" in line:
            _, _, tail = line.partition(":")
            indent = line[: len(line) - len(line.lstrip())]
            lines[at] = f"{indent}{data.draw(st.sampled_from(KEYS + NAMES))}:{tail}"
        elif action == "swap" and at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], lines[at]
        elif action == "cut":
            lines[at] = line[: data.draw(st.integers(0, len(line)))]
    return "".join(lines)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
@FUZZ
@given(data=st.data())
def test_mutated_examples_never_crash_the_loader(workdir: Path, example: Path, data: st.DataObject) -> None:
    check_loads_or_locates(workdir, mutate(example.read_text(), data))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_the_examples_themselves_load(workdir: Path, example: Path) -> None:
    path = workdir / "manifest.yaml"
    path.write_text(example.read_text())
    project = load_project(path, env={"WEBHOOK_TOKEN": "t0k"})
    assert project.entities, example


def located(folder: Path, text: str) -> list[str]:
    path = folder / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_project(path, env={})
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


def test_null_and_number_keys_are_located_problems_not_a_crash(workdir: Path) -> None:
    """Found by the fuzzer: a `~:` key reached dotted() as None and raised TypeError."""
    assert located(workdir, "packages:\n  p:\n    actions:\n      ~: {function: hello.py}\n") == [
        "4:7 packages.p.actions.: '' is not a valid name; use letters, digits, '_', '@', '.', '&', '-' and inner "
        "spaces, at most 256 characters"]
    assert located(workdir, "packages:\n  p:\n    actions:\n      a: {function: hello.py, 7: x}\n")[0].startswith(
        "4:31 packages.p.actions.a.7: unknown key '7'; allowed: annotations, code,")


def test_a_reused_anchor_is_plain_yaml_not_a_crash(workdir: Path) -> None:
    """Found by the fuzzer: ruamel warns (ReusedAnchorWarning) when an anchor name is defined again."""
    path = workdir / "manifest.yaml"
    path.write_text("packages:\n  p:\n    actions:\n      a: &x {function: hello.py}\n      b: &x {function: hello.py}\n")
    project = load_project(path, env={})
    assert [e.name for e in project.entities] == ["p", "p/a", "p/b"]
