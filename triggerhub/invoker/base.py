"""The Runtime seam: one warm process or container speaking the OpenWhisk action protocol.

A runtime serves `/init` once and `/run` many times, one activation at a time. The pool above
(`pool.py`) decides which runtime runs which invocation; runtimes know nothing of the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from triggerhub.model import JSON, Activation, Invocation

LOG_SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    """What `/init` or `/run` answered (status 0 = connection failed / process died)."""

    status: int
    body: JSON
    raw: bytes = b""
    timed_out: bool = False
    oom: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    kind: str  # resolved kind: python:3.11, nodejs:20, blackbox
    memory_mb: int
    image: str | None = None  # blackbox image
    network: bool = False
    labels: dict[str, str] = field(default_factory=dict)


class Runtime(Protocol):
    spec: RuntimeSpec

    async def init(self, value: dict[str, JSON], timeout_ms: int) -> ProxyResponse: ...
    async def run(self, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse: ...
    async def logs(self, limit_bytes: int) -> list[str]:
        """Formatted log lines written since the last call, up to both sentinels."""

    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def destroy(self) -> None: ...


class RuntimeFactory(Protocol):
    async def create(self, spec: RuntimeSpec) -> Runtime: ...
    async def cleanup_orphans(self) -> int:
        """Remove runtimes left by a crashed hub; returns how many."""


class Invoker(Protocol):
    async def invoke(self, invocation: Invocation) -> Activation:
        """Run one primitive (non-sequence) invocation to a finished activation record.
        Never raises for action failures: they become statusCode 1-3 in the record."""
