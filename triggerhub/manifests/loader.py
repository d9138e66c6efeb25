"""Load a wskdeploy manifest (+ deployment overlay + --param values) into a validated Project.

Pure apart from reading the manifest, the deployment file and `function:` files. Every problem
found is collected and raised together as one ManifestError; nothing is half-loaded. Warnings
(what wskdeploy tolerates: inputs for undeclared entities, retired runtimes, values not of their
declared type, deprecated keys) are problems too under `strict`, as with `wskdeploy --strict`.
Precedence of input values: --param > deployment file > manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from triggerhub.config import environment_with
from triggerhub.errors import ManifestError, Problem
from triggerhub.manifests.entities import EntityBuilder, Overrides, RoutingCheck
from triggerhub.manifests.project import Project
from triggerhub.manifests.runtimes import HUB, Runtimes
from triggerhub.manifests.schema import DEPLOYMENT, MANIFEST, check_shape, shape_errors
from triggerhub.manifests.source import Source, YamlPath, parse_source, read_source

DEFAULT_MANIFESTS = ("manifest.yaml", "manifest.yml")
DEFAULT_DEPLOYMENTS = ("deployment.yaml", "deployment.yml")


def display_name(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def find_manifest(folder: Path) -> Path:
    for name in DEFAULT_MANIFESTS:
        if (folder / name).is_file():
            return folder / name
    raise ManifestError([Problem(display_name(folder), 1, 1, "<root>",
                                 "no manifest.yaml or manifest.yml here; pass -m <manifest>")])


def load_project(manifest: Path, *, deployment: Path | None = None,
                 params: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                 namespace: str = "_", managed: bool | None = None,
                 runtimes: Runtimes = HUB, strict: bool = False, check_routing: RoutingCheck | None = None) -> Project:
    """Validate everything and return the Project, or raise ManifestError listing every problem."""
    env = environment_with({}) if env is None else dict(env)
    name = display_name(manifest)
    source = read_source(manifest, name, env)
    project_inputs = source.get(("project", "inputs"))
    if isinstance(project_inputs, dict) and project_inputs:
        # project inputs are usable as $NAME; the real environment wins over them
        env = {**{k: str(v) for k, v in project_inputs.items() if not isinstance(v, dict)}, **env}
        source = parse_source(source.text, name, env)
    shape = shape_errors(source, MANIFEST)
    problems = [problem for _, problem in shape]
    overrides = Overrides()
    warnings: list[Problem] = []
    deployment_name: str | None = None
    if deployment is not None:
        overlay = read_source(deployment, display_name(deployment), env)
        overlay_shape = check_shape(overlay, DEPLOYMENT)
        problems += overlay_shape
        if not overlay_shape:
            deployment_name = _overlay(source, overlay, overrides, warnings)
    project_name = _project_name(source, deployment_name, problems, overlay_file=deployment)
    is_managed = project_name is not None if managed is None else managed
    if is_managed and project_name is None:
        problems.append(source.problem((), "a managed deployment needs a project name; add 'project: name:'"))
    builder = EntityBuilder(
        source=source, namespace=namespace, base_dir=manifest.parent, overrides=overrides,
        cli_params=dict(params or {}), runtimes=runtimes, check_routing=check_routing,
        managed=_managed_annotation(project_name, source, name) if is_managed else None,
        broken={_entity_of(path) for path, _ in shape})
    builder.build()
    problems += builder.problems
    warnings += builder.warnings
    if strict:
        problems += warnings
    if problems:
        # document order, the manifest's own problems first
        ordered = sorted(_unique(problems), key=lambda p: (p.file != name, p.file, p.line, p.column))
        raise ManifestError(ordered)
    return Project(file=name, namespace=namespace, name=project_name, managed=is_managed,
                   entities=tuple(builder.entities), warnings=tuple(str(w) for w in warnings),
                   routes=tuple(builder.routes))


def _entity_of(path: YamlPath) -> YamlPath:
    """The entity (`packages.p.actions.a`) a shape problem is inside, or the path itself if above one."""
    depth = 5 if path[:1] == ("project",) else 4
    return path[:depth]


def _project_name(source: Source, from_deployment: str | None, problems: list[Problem],
                  overlay_file: Path | None) -> str | None:
    declared = source.get(("project", "name"))
    if declared and from_deployment and declared != from_deployment:
        problems.append(source.problem(("project", "name"),
                                       f"project '{declared}' does not match '{from_deployment}' in "
                                       f"{display_name(overlay_file) if overlay_file else 'the deployment'}"))
    return declared or from_deployment or None


def _managed_annotation(project_name: str | None, source: Source, file: str) -> dict[str, Any]:
    content = source.text.encode("utf-8")
    digest = hashlib.sha1(b"OpenWhisk " + str(len(content)).encode() + b"\0" + content).hexdigest()
    return {"projectName": project_name, "projectHash": digest, "projectDeps": [], "file": file}


def _overlay(manifest: Source, overlay: Source, overrides: Overrides, warnings: list[Problem]) -> str | None:
    """Record the deployment file's input values; entries for names the manifest does not declare
    are ignored with a warning, as wskdeploy ignores them."""
    declared = _packages(manifest)
    for root in (("project", "packages"), ("packages",)):
        for pkg, pkg_raw in (overlay.get(root) or {}).items():
            pkg_path: YamlPath = root + (pkg,)
            if pkg not in declared:
                warnings.append(overlay.problem(pkg_path, f"package '{pkg}' is not in the manifest, its inputs are "
                                                          f"ignored; known: {', '.join(sorted(declared)) or '(none)'}"))
                continue
            pkg_raw = pkg_raw or {}
            for key, value in (pkg_raw.get("inputs") or {}).items():
                overrides.add((pkg, "package", pkg), key, value, overlay, pkg_path + ("inputs", key))
            for kind in ("actions", "sequences", "triggers", "rules", "dependencies"):
                _overlay_entities(declared[pkg], pkg, kind, pkg_raw, pkg_path, overlay, overrides, warnings)
    name = overlay.get(("project", "name"))
    return name if isinstance(name, str) and name else None


def _overlay_entities(pkg_raw: Any, pkg: str, kind: str, overlay_pkg: dict[str, Any], pkg_path: YamlPath,
                      overlay: Source, overrides: Overrides, warnings: list[Problem]) -> None:
    known = (pkg_raw or {}).get(kind) or {}
    for entity, entity_raw in (overlay_pkg.get(kind) or {}).items():
        entity_path = pkg_path + (kind, entity)
        if entity not in known:
            word = kind.rstrip("s").replace("dependencie", "dependency")
            warnings.append(overlay.problem(entity_path, f"{word} '{entity}' is not in package '{pkg}' of the "
                                                         f"manifest, its inputs are ignored; known: "
                                                         f"{', '.join(sorted(known)) or '(none)'}"))
            continue
        for key, value in ((entity_raw or {}).get("inputs") or {}).items():
            overrides.add((pkg, kind, entity), key, value, overlay, entity_path + ("inputs", key))


def _packages(source: Source) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for root in (("project", "packages"), ("packages",)):
        packages = source.get(root)
        if isinstance(packages, dict):
            out.update(packages)
    return out


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            out.append(problem)
    return out
