"""Which fires of one trigger keep their order: the partition key of a fired event on the bus.

By default a fire's key is its event id, so one busy trigger's events spread over every partition
and every worker, matched concurrently with no order among them. A trigger annotated
`ordering-key: "<field path>"` (a dotted path into the fired payload, e.g. `device` or
`reading.sensor`) keys its events by the trigger and that field's value: events with equal values
share a partition and a worker matches them one after another, in the order the controller
accepted them; events without the field share one key of their own. A trigger that feeds derived
triggers (correlations) keeps all its events in order unless it names an ordering key, as their
state steps may depend on the order. Pure functions, no I/O.
"""

from __future__ import annotations

import json

from triggerhub.errors import BadRequest
from triggerhub.model import JSON, Parameters, TriggerEvent, annotation

ORDERING_ANNOTATION = "ordering-key"
MAX_PATH_DEPTH = 16


def check_ordering_key(annotations: Parameters) -> None:
    """Refuse an `ordering-key` annotation that is not a dotted field path (400)."""
    path = annotation(annotations, ORDERING_ANNOTATION)
    if path is None:
        return
    if not isinstance(path, str) or not _fields(path):
        raise BadRequest(f"annotation {ORDERING_ANNOTATION!r} is {json.dumps(path)}; give a dotted path of a field "
                         f"in the fired payload, such as \"device\" or \"reading.sensor\" (at most {MAX_PATH_DEPTH} "
                         "names), or remove it to let the trigger's events run in any order")


def partition_key(annotations: Parameters, event: TriggerEvent, *, in_order: bool = False) -> str:
    """The bus key of `event` fired on a trigger with `annotations` (see the module docstring);
    `in_order`: without an ordering key, all of the trigger's events share one key."""
    path = annotation(annotations, ORDERING_ANNOTATION)
    fields = _fields(path) if isinstance(path, str) else None
    if not fields:
        return str(event.trigger) if in_order else event.id
    value: JSON = event.data
    for name in fields:
        if not isinstance(value, dict) or name not in value:
            return f"{event.trigger}#"
        value = value[name]
    return f"{event.trigger}#{json.dumps(value, sort_keys=True, separators=(',', ':'))}"


def _fields(path: str) -> list[str] | None:
    names = path.removeprefix("$.").split(".")
    if not path or len(names) > MAX_PATH_DEPTH or any(not name for name in names):
        return None
    return names
