"""Action code for manifests: runtime kinds, family defaults, inference from file extensions, and
reading `function:` files, directories and zips into an OpenWhisk `exec`.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# reference/openwhisk.md section 2.2 (ansible/files/runtimes.json)
KINDS = ("nodejs:18", "nodejs:20", "python:3.10", "python:3.11", "go:1.20", "java:8", "php:8.1",
         "ruby:2.5", "swift:5.3", "swift:5.7", "dotnet:3.1", "dotnet:6.0", "rust:1.34")
OPENWHISK_DEFAULTS = {"nodejs": "nodejs:20", "python": "python:3.10", "go": "go:1.20", "java": "java:8",
                   "php": "php:8.1", "ruby": "ruby:2.5", "swift": "swift:5.7", "dotnet": "dotnet:6.0",
                   "rust": "rust:1.34"}
EXTENSION_FAMILY = {".py": "python", ".js": "nodejs", ".mjs": "nodejs", ".go": "go", ".java": "java",
                    ".jar": "java", ".php": "php", ".rb": "ruby", ".swift": "swift", ".rs": "rust"}
BINARY_EXTENSIONS = frozenset({".jar", ".zip"})
DOCKER_SKELETON = "openwhisk/dockerskeleton"


@dataclass(frozen=True, slots=True)
class Runtimes:
    """The kinds a platform runs and each family's default kind."""

    kinds: tuple[str, ...]
    defaults: dict[str, str]

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Runtimes:
        """From the `runtimes` map of `GET /`: {"python": [{"kind": "python:3.11", "default": true}]}."""
        kinds: list[str] = []
        defaults: dict[str, str] = {}
        for family, entries in (info.get("runtimes") or {}).items():
            for entry in entries:
                kinds.append(entry["kind"])
                if entry.get("default"):
                    defaults[family] = entry["kind"]
        return cls(tuple(kinds), defaults) if kinds else OPENWHISK


OPENWHISK = Runtimes(KINDS, OPENWHISK_DEFAULTS)


class CodeError(ValueError):
    """The action's code or runtime cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Code:
    text: str
    binary: bool
    extension: str  # "" for inline code and directories


def resolve_kind(runtime: str, runtimes: Runtimes) -> str:
    """`python` / `python:default` -> the family default; a full kind must be one the platform runs."""
    family, _, version = runtime.partition(":")
    if version in ("", "default") and family in runtimes.defaults:
        return runtimes.defaults[family]
    if runtime in runtimes.kinds:
        return runtime
    raise CodeError(f"unknown runtime '{runtime}'; known: {', '.join(runtimes.kinds)} "
                    f"(or a family: {', '.join(runtimes.defaults)})")


def infer_kind(extension: str, runtimes: Runtimes) -> str:
    family = EXTENSION_FAMILY.get(extension)
    if family is None:
        raise CodeError(f"cannot infer the runtime from extension '{extension or '(none)'}'; "
                        f"set 'runtime' (e.g. python:3.11, nodejs:20)")
    if family not in runtimes.defaults:
        raise CodeError(f"'{extension}' files need the {family} runtime, which this platform does not run; "
                        f"known: {', '.join(runtimes.kinds)}")
    return runtimes.defaults[family]


def read_function(path: Path) -> Code:
    """A file's text, or base64 of a zip/jar or of a directory zipped on the fly."""
    if path.is_dir():
        return Code(_zip_directory(path), True, "")
    if not path.is_file():
        raise CodeError(f"file '{path}' does not exist; 'function' is relative to the manifest's folder")
    extension = path.suffix.lower()
    data = path.read_bytes()
    if extension in BINARY_EXTENSIONS:
        return Code(base64.b64encode(data).decode("ascii"), True, extension)
    try:
        return Code(data.decode("utf-8"), False, extension)
    except UnicodeDecodeError as exc:
        raise CodeError(f"file '{path}' is not UTF-8 text; zip it or use a .zip/.jar") from exc


def _zip_directory(folder: Path) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            # a fixed timestamp keeps the zip (and so the plan) stable across deploys
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    return base64.b64encode(buffer.getvalue()).decode("ascii")
