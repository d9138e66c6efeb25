"""An event's lineage read back: the stored event (with its rule decisions) and every record
filed under it, for `GET /api/v1/namespaces/{ns}/events/{id}/lineage` and `triggerhub event trace`.
The document's shape is observe/lineage.py's, documented in api/api_docs.py."""

from __future__ import annotations

from triggerhub.errors import NotFound
from triggerhub.model import ACTIVATION_ID_RE, JSON, Identity, TriggerEvent, annotation
from triggerhub.observe import lineage
from triggerhub.rules import match as rules
from triggerhub.store.base import Store


def not_found(event_id: str) -> NotFound:
    return NotFound(f"The requested resource does not exist: event '{event_id}' of this namespace; the id is "
                    "the one a fire or webhook answered, or an activation id descending from the event")


async def event_lineage(store: Store, identity: Identity, event_id: str, *, api_type: str) -> dict[str, JSON]:
    """The chain of `event_id` (or of the event an activation id descends from), if the event
    belongs to the caller's namespace; another namespace's event is as absent as a missing one."""
    event = await _event(store, identity, event_id)
    if event is None or event.trigger.namespace != identity.namespace:
        raise not_found(event_id)
    records = await store.list_event_activations(identity.namespace, event.id)
    return lineage.lineage_document(event, records, trigger_activation_id=rules.trigger_activation_id(event),
                                    api_type=api_type)


async def _event(store: Store, identity: Identity, event_id: str) -> TriggerEvent | None:
    event = await store.get_event(event_id)
    if event is not None or not ACTIVATION_ID_RE.match(event_id):
        return event
    record = await store.get_activation(identity.namespace, event_id)
    parent = annotation(record.annotations, lineage.EVENT) if record is not None else None
    return await store.get_event(parent) if isinstance(parent, str) else None
