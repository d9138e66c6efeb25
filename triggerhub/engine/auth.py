"""Subjects and credentials: `uuid:key` pairs whose keys are stored only as salted hashes.

Keys are 64 random alphanumerics, so a salted SHA-256 is enough (no slow KDF on the hot path);
comparison is constant-time. A verified credential is cached in memory for `cache_ttl_s`
(TRIGGERHUB_AUTH_CACHE_S), so what `triggerhub admin` changes in the store (a blocked or deleted
subject, a new key, new limits) reaches every running hub process within that time. Given the
store's entity generation (embedded mode), the cache is also dropped whenever it moved: every
subject write raises it, so such a change is seen by the next request after its commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from triggerhub.engine.shared_loads import SharedLoads
from triggerhub.errors import AUTH_INVALID, Unauthorized
from triggerhub.model import Identity, Subject, new_credentials
from triggerhub.store.base import Store

SYSTEM_NAMESPACES = ("guest", "whisk.system")
DEFAULT_CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000


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


@dataclass(frozen=True, slots=True)
class NamespaceState:
    """What `triggerhub admin` set for a namespace: limits (kept equal on all its subjects), and
    blocked when every subject of it is."""

    limits: dict[str, int]
    blocked: bool


class Authenticator:
    """Checks Basic credentials against the store; caches positive answers per uuid for
    `cache_ttl_s` seconds (0 disables the cache). The key of a cached answer is still compared
    in constant time."""

    def __init__(self, store: Store, *, cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic,
                 generation: Callable[[], Awaitable[int]] | None = None) -> None:
        """`generation` reads the store's entity generation (one primary-key read): with it, every
        `identify` first drops the cache when the generation moved since its last call."""
        self._store = store
        self._generation = generation
        self._seen_generation: int | None = None
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[Identity, float]] = {}  # uuid -> (identity, expires at)
        self._namespaces: tuple[dict[str, NamespaceState], float] | None = None  # states, expires at
        self._namespace_loads: SharedLoads[str, dict[str, NamespaceState]] = SharedLoads()

    async def identify(self, auth_key: str) -> Identity:
        uuid, key = split_auth_key(auth_key)
        await self._revalidate()
        now = self._clock()
        hit = self._cache.get(uuid)
        if hit is not None and hit[1] > now and hmac.compare_digest(hit[0].key.encode(), key.encode()):
            return hit[0]
        subject = await self._store.get_subject(uuid)
        if subject is None or subject.blocked or not key_matches(key, subject.key_hash):
            raise Unauthorized(AUTH_INVALID)
        identity = Identity(subject.subject, subject.namespace, uuid, key, dict(subject.limits))
        if self._cache_ttl_s > 0:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[uuid] = (identity, now + self._cache_ttl_s)
        return identity

    async def namespace_state(self, namespace: str) -> NamespaceState:
        """Limits and blocking of `namespace`, for work no caller's key came with (feed fires and
        their rule activations); read from the store at most once per `cache_ttl_s`."""
        await self._revalidate()
        now = self._clock()
        if self._namespaces is not None and self._namespaces[1] > now:
            states = self._namespaces[0]
        else:  # one read for all the events that find the states expired together

            def keep(read: dict[str, NamespaceState]) -> None:
                self._namespaces = (read, now + self._cache_ttl_s)

            states = await self._namespace_loads.load("all", self._read_namespace_states, keep)
        return states.get(namespace, NamespaceState({}, blocked=False))

    async def _read_namespace_states(self) -> dict[str, NamespaceState]:
        subjects: dict[str, list[Subject]] = {}
        for subject in await self._store.list_subjects():
            subjects.setdefault(subject.namespace, []).append(subject)
        return {ns: NamespaceState(dict(members[0].limits), blocked=all(m.blocked for m in members))
                for ns, members in subjects.items()}

    async def _revalidate(self) -> None:
        """Drop both caches when the store's entity generation moved (with `generation` only)."""
        if self._generation is None:
            return
        generation = await self._generation()
        if generation != self._seen_generation:
            self.forget()
            self._seen_generation = generation

    def forget(self) -> None:
        self._cache.clear()
        self._namespaces = None
        self._namespace_loads.drop()


async def create_subject(store: Store, namespace: str, subject: str | None = None) -> Identity:
    uuid, key = new_credentials()
    await store.put_subject(Subject(subject or namespace, namespace, uuid, hash_key(key)))
    return Identity(subject or namespace, namespace, uuid, key)
