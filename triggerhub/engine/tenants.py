"""Tenant administration on the store directly, as OpenWhisk's `wskadmin` works on its database:
subjects (one uuid:key credential per namespace), blocking, key rotation, per-namespace limits.

New keys are returned once to the caller and stored only as salted digests. Running hubs see each
change within their auth cache time (TRIGGERHUB_AUTH_CACHE_S). Limits are kept on every subject
of a namespace (the engine reads them from the caller's identity) and are kept equal across them.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from triggerhub.engine.auth import SYSTEM_NAMESPACES, hash_key
from triggerhub.engine.bootstrap import read_credentials, write_credentials
from triggerhub.errors import AdminError, BadRequest
from triggerhub.model import JSON, Identity, Subject, is_valid_name, new_credentials
from triggerhub.rules.retry_policy import NAMESPACE_KEYS, namespace_policy, on_names
from triggerhub.store.base import Store

LIMIT_KEYS = ("invocationsPerMinute", "concurrentInvocations", "firesPerMinute", *NAMESPACE_KEYS)
"""The throttles, and the namespace's default retry policy (issue 14: rules without `retry`)."""
_KEY_RE = re.compile(r"\A[A-Za-z0-9]{64}\Z")


def _check_name(what: str, value: str) -> None:
    if value == "_" or not is_valid_name(value):
        raise AdminError(f"{what} '{value}' is not a valid name: use letters, digits, '_', '@', '.', '&', '-' "
                         "and inner spaces, up to 256 characters, and not '_' alone")


def parse_auth_key(auth_key: str) -> tuple[str, str]:
    """Check a caller-chosen `uuid:key` has OpenWhisk's shape: a UUID and 64 alphanumerics."""
    uuid, _, key = auth_key.partition(":")
    try:
        uuidlib.UUID(uuid)
    except ValueError:
        raise AdminError(f"auth key '{uuid}:…' does not start with a UUID; give uuid:key, "
                         "or leave it out to have one made") from None
    if not _KEY_RE.match(key):
        raise AdminError(f"the key of auth key '{uuid}:…' is not 64 letters and digits; "
                         "leave it out to have one made")
    return uuid, key


async def create_user(store: Store, subject: str, namespace: str, *, auth_key: str | None = None) -> Identity:
    """A new credential for `subject` in `namespace` (created by this if new); it inherits the
    namespace's limits."""
    _check_name("subject", subject)
    _check_name("namespace", namespace)
    existing = await store.list_subjects()
    for other in existing:
        if other.subject == subject and other.namespace == namespace:
            raise AdminError(f"subject '{subject}' already has namespace '{namespace}' (uuid {other.uuid}); "
                             f"for a new key run `triggerhub admin user rotate {subject} -ns {namespace}`")
    uuid, key = parse_auth_key(auth_key) if auth_key else new_credentials()
    if any(other.uuid == uuid for other in existing):
        raise AdminError(f"uuid {uuid} is already in use; give another auth key or leave it out")
    limits = next((dict(other.limits) for other in existing if other.namespace == namespace), {})
    await store.put_subject(Subject(subject, namespace, uuid, hash_key(key), limits))
    return Identity(subject, namespace, uuid, key, limits)


async def list_users(store: Store, namespace: str | None = None) -> list[Subject]:
    return [s for s in await store.list_subjects() if namespace is None or s.namespace == namespace]


async def _matching(store: Store, subjects: Iterable[str], namespace: str | None) -> list[Subject]:
    wanted = list(subjects)
    found = [s for s in await store.list_subjects()
             if s.subject in wanted and (namespace is None or s.namespace == namespace)]
    missing = sorted(set(wanted) - {s.subject for s in found})
    if missing:
        where = f" in namespace '{namespace}'" if namespace else ""
        raise AdminError(f"no subject {', '.join(repr(m) for m in missing)}{where}; "
                         "see `triggerhub admin user list`")
    return found


async def delete_user(store: Store, subject: str, namespace: str | None = None) -> list[Subject]:
    """Remove the subject's credentials (in `namespace` only, if given). Entities stay."""
    found = await _matching(store, [subject], namespace)
    for one in found:
        if one.subject in SYSTEM_NAMESPACES and one.namespace == one.subject:
            raise AdminError(f"subject '{one.subject}' is made by the hub at every start and cannot be deleted; "
                             f"block it with `triggerhub admin user block {one.subject}` or rotate its key")
    for one in found:
        await store.delete_subject(one.uuid)
    return found


async def set_blocked(store: Store, subjects: Iterable[str], namespace: str | None = None, *,
                      blocked: bool) -> list[Subject]:
    changed = [replace(one, blocked=blocked) for one in await _matching(store, subjects, namespace)]
    for one in changed:
        await store.put_subject(one)
    return changed


async def rotate_key(store: Store, subject: str, namespace: str | None = None, *,
                     home: Path | None = None) -> list[Identity]:
    """A new key for each credential of `subject` (same uuid); the old key stops working. The
    hub's own keys in `home`/credentials.json are rewritten there too."""
    found = await _matching(store, [subject], namespace)
    credentials = read_credentials(home) if home is not None else {}
    rotated: list[Identity] = []
    for one in found:
        _, key = new_credentials()
        await store.put_subject(replace(one, key_hash=hash_key(key)))
        rotated.append(Identity(one.subject, one.namespace, one.uuid, key, dict(one.limits)))
        if credentials.get(one.namespace, "").partition(":")[0] == one.uuid:
            credentials[one.namespace] = f"{one.uuid}:{key}"
    if home is not None and credentials != read_credentials(home):
        write_credentials(home, credentials)
    return rotated


async def _namespace_subjects(store: Store, namespace: str) -> list[Subject]:
    found = await list_users(store, namespace)
    if not found:
        raise AdminError(f"namespace '{namespace}' has no subject; create one with "
                         f"`triggerhub admin user create SUBJECT -ns {namespace}`")
    return found


async def set_limits(store: Store, namespace: str, limits: Mapping[str, int]) -> dict[str, int]:
    """Merge `limits` into the namespace's limits; returns them all."""
    unknown = sorted(set(limits) - set(LIMIT_KEYS))
    if unknown:
        raise AdminError(f"unknown limit {', '.join(unknown)}; known: {', '.join(LIMIT_KEYS)}")
    bad = {k: v for k, v in limits.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
    if bad:
        raise AdminError(f"limits must be whole numbers ≥ 0; got {bad}")
    found = await _namespace_subjects(store, namespace)
    merged = {**found[0].limits, **limits}
    try:
        namespace_policy(merged)
    except BadRequest as exc:
        raise AdminError(f"{exc.message} (--retryMaxAttempts sets the namespace default; the other --retry* "
                         "options need it)") from None
    if any(key in merged for key in NAMESPACE_KEYS) and "retryMaxAttempts" not in merged:
        raise AdminError("the namespace retry default needs --retryMaxAttempts (1 or more); the other --retry* "
                         "options only shape it")
    for one in found:
        await store.put_subject(replace(one, limits=merged))
    return merged


def shown_limits(limits: Mapping[str, int]) -> dict[str, JSON]:
    """Limits as the CLI prints them: `retryOn` as its outcome names."""
    return {key: on_names(value) if key == "retryOn" else value for key, value in limits.items()}


async def get_limits(store: Store, namespace: str) -> dict[str, int]:
    """The limits set for the namespace; keys not set use the hub's TRIGGERHUB_* defaults."""
    return dict((await _namespace_subjects(store, namespace))[0].limits)


async def delete_limits(store: Store, namespace: str) -> None:
    for one in await _namespace_subjects(store, namespace):
        await store.put_subject(replace(one, limits={}))
