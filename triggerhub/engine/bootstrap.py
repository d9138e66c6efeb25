"""First-start setup: the `guest` and `whisk.system` subjects and the system packages.

Clear-text keys exist only in `$TRIGGERHUB_HOME/credentials.json` (mode 0600), for `triggerhub auth`;
the store keeps salted hashes. System packages are (re)written at every start so upgrades land.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from triggerhub.engine.auth import SYSTEM_NAMESPACES, create_subject, hash_key, split_auth_key
from triggerhub.engine.entities import Entities
from triggerhub.feeds.kind import BuiltinFeed
from triggerhub.model import Identity, Subject
from triggerhub.store.base import Store

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"

UTILS_ACTIONS = {
    "echo": ("nodejs:20", "function main(params) { return params || {}; }\n", "Returns the input arguments, unchanged"),
    "sort": ("nodejs:20",
             "function main(params) {\n  var lines = params.lines || [];\n  var sorted = lines.slice().sort();\n"
             "  return { lines: sorted, length: sorted.length };\n}\n",
             "Sorts an array of lines"),
}


def credentials_path(home: Path) -> Path:
    return home / CREDENTIALS_FILE


def read_credentials(home: Path) -> dict[str, str]:
    path = credentials_path(home)
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


async def ensure_subjects(store: Store, home: Path) -> dict[str, str]:
    """Make sure each system namespace has a working credential; returns namespace -> uuid:key."""
    credentials = read_credentials(home)
    changed = False
    for namespace in SYSTEM_NAMESPACES:
        auth_key = credentials.get(namespace)
        if auth_key:
            uuid, key = split_auth_key(auth_key)
            if await store.get_subject(uuid) is None:
                await store.put_subject(Subject(namespace, namespace, uuid, hash_key(key)))
            continue
        identity = await create_subject(store, namespace)
        credentials[namespace] = identity.auth_key
        changed = True
        log.info("created subject for namespace %s", namespace)
    if changed:
        write_credentials(home, credentials)
    return credentials


def write_credentials(home: Path, credentials: dict[str, str]) -> None:
    """Write namespace -> uuid:key, readable and writable by this user only (also when the file
    existed with wider permissions)."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials_path(home), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(credentials, out, indent=2)


def system_identity() -> Identity:
    return Identity("whisk.system", "whisk.system", "", "")


async def ensure_system_packages(entities: Entities, feeds: Iterable[BuiltinFeed]) -> None:
    from triggerhub.model import FullyQualifiedName

    system = system_identity()
    await entities.put_package(system, FullyQualifiedName("whisk.system", "utils"),
                               {"publish": True, "annotations": [{"key": "description", "value": "Building blocks"}]},
                               overwrite=True)
    for name, (kind, code, description) in UTILS_ACTIONS.items():
        await entities.put_action(system, FullyQualifiedName("whisk.system", name, "utils"), {
            "exec": {"kind": kind, "code": code},
            "annotations": [{"key": "description", "value": description}],
        }, overwrite=True)
    packages: dict[str, dict[str, Any]] = {}
    feed_list = list(feeds)
    for feed in feed_list:
        packages.setdefault(feed.package, {}).update(feed.package_parameters)
    for package, params in packages.items():
        await entities.put_package(system, FullyQualifiedName("whisk.system", package), {
            "publish": True, "parameters": [{"key": k, "value": v} for k, v in params.items()],
        }, overwrite=True)
    for feed in feed_list:
        await entities.put_builtin(system, FullyQualifiedName("whisk.system", feed.name, feed.package), {
            "annotations": [{"key": "feed", "value": True}, {"key": "description", "value": feed.description},
                            {"key": "parameters", "value": [{"name": p} for p in feed.parameters]}],
        })
