"""An event's lineage read back: the stored event (with its rule decisions) and every record
filed under it, for `GET /api/v1/namespaces/{ns}/events/{id}/lineage` and `triggerhub event trace`.
The document's shape is observe/lineage.py's, documented in api/api_docs.py."""

from __future__ import annotations

from triggerhub.errors import NotFound
from triggerhub.model import ACTIVATION_ID_RE, JSON, Activation, Identity, Kind, TriggerEvent, annotation
from triggerhub.observe import lineage
from triggerhub.rules import match as rules
from triggerhub.store.base import Store

MAX_RECORDS = 1000  # in one lineage document (a sequence of 50, retried 20 times)


def not_found(event_id: str) -> NotFound:
    return NotFound(f"The requested resource does not exist: event '{event_id}' of this namespace; the id is "
                    "the one a fire or webhook answered, or an activation id descending from the event")


async def event_lineage(store: Store, identity: Identity, event_id: str, *, api_type: str) -> dict[str, JSON]:
    """The chain of `event_id` (or of the event an activation id descends from), if the event
    belongs to the caller's namespace; another namespace's event is as absent as a missing one."""
    event = await _event(store, identity, event_id)
    if event is None or event.trigger.namespace != identity.namespace:
        raise not_found(event_id)
    records = await _descendants(store, identity.namespace, event)
    return lineage.lineage_document(event, records, trigger_activation_id=rules.trigger_activation_id(event),
                                    api_type=api_type)


async def _descendants(store: Store, namespace: str, event: TriggerEvent) -> list[Activation]:
    """The records of `event`, found by key: the trigger's record and each matched rule's (ids in
    the stored decisions), then each sequence's components (ids in its logs, as OpenWhisk writes
    them), level by level; and the records the store filed under the event (retries: an `attempt`
    annotation). No index on random keys is written for this on the hot path."""
    found: dict[str, Activation] = {}
    wanted = [rules.trigger_activation_id(event)]
    wanted += [str(d["activationId"]) for d in event.decisions if isinstance(d.get("activationId"), str)]
    while wanted and len(found) < MAX_RECORDS:
        level, wanted = wanted, []
        for activation_id in level:
            if activation_id in found:
                continue
            record = await store.get_activation(namespace, activation_id)
            if record is None:
                continue
            found[activation_id] = record
            if annotation(record.annotations, "kind") == Kind.SEQUENCE:
                wanted += [line for line in record.logs if ACTIVATION_ID_RE.match(line)]
    for record in await store.list_event_activations(namespace, event.id):
        found.setdefault(record.activation_id, record)
    return sorted(found.values(), key=lambda r: (r.start_ms, r.activation_id))


async def _event(store: Store, identity: Identity, event_id: str) -> TriggerEvent | None:
    event = await store.get_event(event_id)
    if event is not None or not ACTIVATION_ID_RE.match(event_id):
        return event
    record = await store.get_activation(identity.namespace, event_id)
    parent = annotation(record.annotations, lineage.EVENT) if record is not None else None
    return await store.get_event(parent) if isinstance(parent, str) else None
