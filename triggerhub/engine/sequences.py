"""Sequences (reference 3.3): components run one after another, each result feeding the next.

Component activation ids are derived from the sequence's id and position, so a sequence that is
re-run after a crash reuses the records of components that already finished. Components' records
are looked up only until the first one without a record (records are written in order, so none
after it has one); the component actions are resolved when the sequence starts, each name once;
a component's record is written while the next component runs, and the sequence's own record is
returned only after every component's record is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from triggerhub.engine.resolve import Resolved, merge_arguments
from triggerhub.errors import ApiError
from triggerhub.model import (
    Activation, ActivationResponse, FullyQualifiedName, Identity, Invocation, Kind, Parameter, StatusCode, now_ms,
    params_to_dict,
)
from triggerhub.observe import lineage, metrics, otel
from triggerhub.store.base import Store

_COMPONENT_IDS = uuid.UUID("6f1d3c1e-64a4-4c1b-9a4c-2f7f0c9d7e11")
MISSING_COMPONENT = "Sequence component does not exist."


def component_id(sequence_id: str, index: int) -> str:
    return uuid.uuid5(_COMPONENT_IDS, f"{sequence_id}/{index}").hex


Resolve = Callable[[Identity, FullyQualifiedName], Awaitable[Resolved]]
Execute = Callable[[Invocation], Awaitable[Activation]]


async def run_sequence(invocation: Invocation, *, topmost: bool, resolve: Resolve, execute: Execute, store: Store,
                       max_length: int) -> Activation:
    """Run the components in order, each stored as it ends; the sequence's own record is returned
    unstored, once the components' are stored. At most `max_length` components run."""
    try:
        async with asyncio.TaskGroup() as writes:
            return await _run_components(invocation, topmost=topmost, resolve=resolve, execute=execute, store=store,
                                         max_length=max_length, writes=writes)
    except ExceptionGroup as group:  # a component's record could not be stored: as when it was awaited inline
        raise group.exceptions[0] from None


async def _run_components(invocation: Invocation, *, topmost: bool, resolve: Resolve, execute: Execute,
                          store: Store, max_length: int, writes: asyncio.TaskGroup) -> Activation:
    start = now_ms()
    action = invocation.action
    identity = Identity(invocation.subject, invocation.namespace, "", "")
    names = action.exec.components[:max_length]
    first_record, resolved_by_name = await _first_record_and_resolved(
        invocation, names, identity=identity, resolve=resolve, store=store)
    current: Any = invocation.args
    ids: list[str] = []
    total_ms = 0
    max_memory_mb = action.limits.memory_mb
    response = ActivationResponse.ok({})
    recorded_before = True  # until a component has no record: a re-run after a crash reuses those
    for index, name in enumerate(action.exec.components):
        if index >= max_length:
            response = ActivationResponse.error(StatusCode.APPLICATION_ERROR, "Too many actions in the sequence.")
            break
        child_id = component_id(invocation.activation_id, index)
        record = None
        if recorded_before:
            record = first_record if index == 0 else await store.get_activation(invocation.namespace, child_id)
        if record is None:
            recorded_before = False
            resolved = resolved_by_name[name]
            if resolved is None:
                response = ActivationResponse.error(StatusCode.APPLICATION_ERROR, MISSING_COMPONENT)
                break
            max_memory_mb = max(max_memory_mb, resolved.action.limits.memory_mb)
            args = current if isinstance(current, list) else merge_arguments(
                [params_to_dict(resolved.action.parameters), current])
            child = Invocation(
                activation_id=child_id, action=resolved.action, args=args, namespace=invocation.namespace,
                subject=invocation.subject, accepted_ms=now_ms(), cause=invocation.activation_id,
                path_annotation=resolved.path, binding=resolved.binding,
                transaction_id=invocation.transaction_id,
                extra_annotations=(Parameter("causedBy", "sequence"),)
                + lineage.child_annotations(invocation.extra_annotations, child_id),
            )
            record = await execute(child)
            writes.create_task(_stored(store, record))
        ids.append(child_id)
        total_ms += record.duration or 0
        response = record.response
        result = response.result
        if isinstance(result, dict) and "error" in result:
            break
        current = result if isinstance(result, (dict, list)) else {}
    annotations: tuple[Parameter, ...] = (
        Parameter("topmost", topmost), Parameter("path", invocation.path_annotation),
        Parameter("kind", Kind.SEQUENCE), Parameter("waitTime", max(0, start - invocation.accepted_ms)),
        Parameter("limits", {**action.limits.to_json(), "memory": max_memory_mb}),
    )
    if invocation.binding:
        annotations += (Parameter("binding", invocation.binding),)
    if not topmost:
        annotations += (Parameter("causedBy", "sequence"),)
    annotations += lineage.inherited(invocation.extra_annotations)
    return Activation(
        namespace=invocation.namespace, name=action.name, subject=invocation.subject,
        activation_id=invocation.activation_id, start_ms=start, end_ms=max(now_ms(), start + total_ms),
        response=response, logs=tuple(ids), annotations=annotations, version=action.version,
        cause=invocation.cause if not topmost else None, duration_ms=total_ms,
    )


async def _first_record_and_resolved(
        invocation: Invocation, names: tuple[str, ...], *, identity: Identity, resolve: Resolve, store: Store,
) -> tuple[Activation | None, dict[str, Resolved | None]]:
    """The first component's record (None: none stored, or no components), and each distinct
    component name resolved (None: it does not exist or may not be read)."""
    first_id = component_id(invocation.activation_id, 0)
    first = await store.get_activation(invocation.namespace, first_id) if names else None
    resolved: dict[str, Resolved | None] = {}
    for name in dict.fromkeys(names):
        try:
            resolved[name] = await resolve(identity, FullyQualifiedName.parse(name, invocation.namespace))
        except (ApiError, ValueError):
            resolved[name] = None
    return first, resolved


async def _stored(store: Store, record: Activation) -> None:
    """Store a component's record; a newly stored one is counted (metrics) and exported (otel) once."""
    if await store.complete(record):
        metrics.activation_stored(record.response.status_code.name.lower(), start_ms=record.start_ms,
                                  end_ms=record.end_ms, received_ms=None, stored_ms=now_ms())
        otel.activation_stored(record)
