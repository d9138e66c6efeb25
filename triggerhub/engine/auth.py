"""Subjects and credentials: `uuid:key` pairs whose keys are stored only as salted hashes.

Keys are 64 random alphanumerics, so a salted SHA-256 is enough (no slow KDF on the hot path);
comparison is constant-time. Verified credentials are cached in memory for the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from triggerhub.errors import AUTH_INVALID, Unauthorized
from triggerhub.model import Identity, Subject, new_credentials
from triggerhub.store.base import Store

SYSTEM_NAMESPACES = ("guest", "whisk.system")


def hash_key(key: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
    return f"sha256${salt}${digest}"


def key_matches(key: str, key_hash: str) -> bool:
    try:
        algorithm, salt, _ = key_hash.split("$")
    except ValueError:
        return False
    if algorithm != "sha256":
        return False
    return hmac.compare_digest(hash_key(key, salt), key_hash)


def split_auth_key(auth_key: str) -> tuple[str, str]:
    uuid, sep, key = auth_key.partition(":")
    if not sep or not uuid or not key:
        raise Unauthorized(AUTH_INVALID)
    return uuid, key


class Authenticator:
    """Checks Basic credentials against the store; caches positive answers by full key."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, Identity] = {}

    async def identify(self, auth_key: str) -> Identity:
        cached = self._cache.get(auth_key)
        if cached is not None:
            return cached
        uuid, key = split_auth_key(auth_key)
        subject = await self._store.get_subject(uuid)
        if subject is None or not key_matches(key, subject.key_hash):
            raise Unauthorized(AUTH_INVALID)
        identity = Identity(subject.subject, subject.namespace, uuid, key, dict(subject.limits))
        self._cache[auth_key] = identity
        return identity

    def forget(self) -> None:
        self._cache.clear()


async def create_subject(store: Store, namespace: str, subject: str | None = None) -> Identity:
    uuid, key = new_credentials()
    await store.put_subject(Subject(subject or namespace, namespace, uuid, hash_key(key)))
    return Identity(subject or namespace, namespace, uuid, key)
