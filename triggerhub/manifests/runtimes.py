"""Action code for manifests: runtime kinds, family defaults, inference from file extensions, and
reading `function:` files, directories and zips (with `include:` and `exclude:`) into an `exec`.

A runtime the platform does not run (`nodejs:10`, `python:2`, `nodejs@10`) falls back, as in
wskdeploy, to the default kind for the file's extension (else for the runtime's family), with a
note the caller reports as a warning; only when no fallback exists is it an error.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triggerhub.model import HUB_DEFAULT_KINDS, HUB_KINDS

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
        return cls.in_name_order(kinds, defaults) if kinds else HUB

    @classmethod
    def in_name_order(cls, kinds: Iterable[str], defaults: Mapping[str, str]) -> Runtimes:
        """In name order, so messages read the same whichever table they came from."""
        return cls(tuple(sorted(str(kind) for kind in kinds)),
                   {family: str(kind) for family, kind in sorted(defaults.items())})

    def describe(self) -> str:
        return f"{', '.join(self.kinds)} (or a family: {', '.join(self.defaults)})"


HUB = Runtimes.in_name_order(HUB_KINDS, HUB_DEFAULT_KINDS)  # what `validate` checks against: this hub's kinds
_FAMILY_RE = re.compile(r"[:@]")


class CodeError(ValueError):
    """The action's code or runtime cannot be used; the message says what to change, `key` which
    manifest key it is about (None: the runtime, or the code when there is none)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Code:
    text: str
    binary: bool
    extension: str  # "" for inline code and directories


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    note: str | None = None  # set when the declared runtime was replaced by a fallback


def resolve_kind(runtime: str, extension: str, runtimes: Runtimes) -> Kind:
    """`python` / `python:default` -> the family default; a full kind the platform runs as is;
    anything else -> the default for the file's extension, else for the runtime's family."""
    family, _, version = runtime.partition(":")
    if version in ("", "default") and family in runtimes.defaults:
        return Kind(runtimes.defaults[family])
    if runtime in runtimes.kinds:
        return Kind(runtime)
    by_extension = runtimes.defaults.get(EXTENSION_FAMILY.get(extension, ""))
    by_family = runtimes.defaults.get(_FAMILY_RE.split(runtime, maxsplit=1)[0])
    fallback = by_extension or by_family
    if fallback is None:
        raise CodeError(f"unknown runtime '{runtime}'; this hub runs: {runtimes.describe()}")
    why = f"the default for '{extension}' files" if by_extension else "its family's default"
    return Kind(fallback, f"runtime '{runtime}' is not one this hub runs (it runs: {', '.join(runtimes.kinds)}); "
                          f"using {fallback}, {why}")


def infer_kind(extension: str, runtimes: Runtimes) -> str:
    family = EXTENSION_FAMILY.get(extension)
    if family is None:
        raise CodeError(f"cannot infer the runtime from extension '{extension or '(none)'}'; "
                        f"set 'runtime' to one this hub runs: {', '.join(runtimes.kinds)}")
    if family not in runtimes.defaults:
        raise CodeError(f"'{extension}' files need the {family} runtime, which this hub does not run; "
                        f"it runs: {runtimes.describe()}")
    return runtimes.defaults[family]


def read_function(path: Path) -> Code:
    """A file's text, or base64 of a zip/jar or of a directory zipped on the fly."""
    if path.is_dir():
        return Code(_zip_directory(path), binary=True, extension="")
    if not path.is_file():
        raise CodeError(f"file '{path}' does not exist; 'function' is relative to the manifest's folder")
    extension = path.suffix.lower()
    data = path.read_bytes()
    if extension in BINARY_EXTENSIONS:
        return Code(base64.b64encode(data).decode("ascii"), binary=True, extension=extension)
    try:
        return Code(data.decode("utf-8"), binary=False, extension=extension)
    except UnicodeDecodeError as exc:
        raise CodeError(f"file '{path}' is not UTF-8 text; zip it or use a .zip/.jar") from exc


def _zip_directory(folder: Path) -> str:
    return _zip_files((file.relative_to(folder).as_posix(), file) for file in _files_under(folder))


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _zip_files(members: Iterable[tuple[str, Path]]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, file in sorted(dict(members).items()):
            # a fixed timestamp keeps the zip (and so the plan) stable across deploys
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True, slots=True)
class Packing:
    """`include: [[src, dest]]` (dest defaults to src; src may be a folder or a glob) and
    `exclude: [glob]`, both relative to the manifest's folder (wskdeploy's meaning)."""

    include: tuple[tuple[str, str], ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, include: Any, exclude: Any) -> Packing:
        pairs: list[tuple[str, str]] = []
        for index, item in enumerate(include or []):
            entry = [item] if isinstance(item, str) else item
            if not isinstance(entry, list) or not 1 <= len(entry) <= 2 or not all(isinstance(e, str) and e
                                                                                  for e in entry):
                raise CodeError(f"include[{index}] must be [source] or [source, destination], e.g. "
                                f"[actions/common/utils.js, lib/utils.js]", key="include")
            pairs.append((entry[0], entry[-1]))
        globs = [g for g in (exclude or []) if isinstance(g, str)]
        if len(globs) != len(exclude or []):
            raise CodeError("exclude must be a list of path globs, e.g. [tests/*, '*.md']", key="exclude")
        return cls(tuple(pairs), tuple(globs))

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)


def read_packed(function: Path, base_dir: Path, packing: Packing) -> Code:
    """The action's zip built from `function` (a folder, a file, or a `.zip` to build from the
    folder of the same name) plus `include`d files, minus `exclude`d ones."""
    members: dict[str, Path] = {}
    folder = function.with_suffix("") if function.suffix.lower() == ".zip" else function
    extension = ""
    if folder.is_dir():
        members.update((f.relative_to(folder).as_posix(), f) for f in _files_under(folder))
    elif function.is_file() and function.suffix.lower() != ".zip":
        members[function.name] = function
        extension = function.suffix.lower()
    for source, destination in packing.include:
        matched = sorted(base_dir.glob(source)) if any(c in source for c in "*?[") else [base_dir / source]
        if not any(m.exists() for m in matched):
            raise CodeError(f"include '{source}' matches nothing in {base_dir}; include paths are relative to the "
                            f"manifest's folder", key="include")
        for match in matched:
            dest = destination if len(matched) == 1 else (Path(destination) / match.name).as_posix()
            if match.is_dir():
                members.update(((Path(dest) / f.relative_to(match)).as_posix(), f) for f in _files_under(match))
            else:
                members[dest] = match
    members = {_normal(name): file for name, file in members.items()
               if not any(fnmatch.fnmatch(_normal(name), glob) or fnmatch.fnmatch(_relative(file, base_dir), glob)
                          for glob in packing.exclude)}
    if not members:
        raise CodeError(f"'{function.name}' with include/exclude leaves no files to zip", key="exclude")
    return Code(_zip_files(members.items()), binary=True, extension=extension)


def _normal(name: str) -> str:
    return Path(name).as_posix().removeprefix("./")


def _relative(file: Path, base_dir: Path) -> str:
    try:
        return file.relative_to(base_dir).as_posix()
    except ValueError:
        return file.as_posix()
