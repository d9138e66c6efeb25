"""`POST .../rules/{name}/explain`: why a rule would run (or did not run) for an event. Nothing runs.

Body: `{"eventId": "<id>"}` names a stored trigger event (for an API fire, the activation id the
fire answered); otherwise the body is an event: a CloudEvent-like object whose `data` is the
payload and whose `id`, `source`, `type`, `subject`, `time` are optional.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from triggerhub.errors import NOT_FOUND, BadRequest, NotFound
from triggerhub.model import (
    JSON, Action, FullyQualifiedName, Identity, ReducedRule, Rule, RuleStatus, Trigger, TriggerEvent, new_activation_id,
    now_ms, params_to_dict,
)
from triggerhub.rules.explain import recorded_outcomes, verdict
from triggerhub.rules.match import trigger_activation_id
from triggerhub.engine.entities import Entities
from triggerhub.engine.throttle import THROTTLED_PREFIXES
from triggerhub.store.base import Store

EXPLAIN_EVENT_TYPE = "triggerhub.explain"
EVENT_KEYS = ("data", "id", "source", "type", "subject", "time", "datacontenttype", "specversion")


async def explain(entities: Entities, store: Store, identity: Identity, fqn: FullyQualifiedName,
                  body: Any) -> dict[str, JSON]:
    rule = await entities.get(identity, fqn, Rule)
    if not isinstance(body, dict):
        raise BadRequest(_USAGE)
    if "eventId" in body:
        out = await _stored(entities, store, identity, rule, body["eventId"])
    else:
        trigger = await entities.find(rule.trigger, Trigger)
        params = params_to_dict(trigger.parameters) if trigger is not None else {}
        out = verdict(rule.filter, rule.transform, event_from_body(body, rule.trigger), params)
    if rule.shadow:
        out["shadow"] = True  # it would match as shown, and run nothing
    return out


_USAGE = ('explain needs a JSON object: {"eventId": "<stored event id>"} or an event '
          '{"data": {...}, "source"?, "type"?, "subject"?, "id"?, "time"?}')


def event_from_body(body: dict[str, Any], trigger: FullyQualifiedName) -> TriggerEvent:
    """The event an explain body describes (BadRequest naming what is wrong); see the module docstring."""
    unknown = sorted(set(body) - set(EVENT_KEYS))
    if "data" not in body or unknown:
        detail = "no 'data' key" if "data" not in body else f"unknown keys {', '.join(unknown)}"
        raise BadRequest(f"the explain body has {detail}; {_USAGE}")
    for key in ("id", "source", "type", "subject", "time", "datacontenttype"):
        if key in body and not isinstance(body[key], str):
            raise BadRequest(f"event attribute '{key}' is {body[key]!r}; it must be a string")
    time_ms = now_ms()
    if "time" in body:
        try:
            time_ms = int(datetime.fromisoformat(body["time"].replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError as exc:
            raise BadRequest(f"event time '{body['time']}' is not an RFC 3339 time like 2026-12-05T08:00:00Z") from exc
    return TriggerEvent(id=body.get("id", new_activation_id()), source=body.get("source", "explain"),
                        type=body.get("type", EXPLAIN_EVENT_TYPE), trigger=trigger, data=body["data"],
                        subject=body.get("subject"), time_ms=time_ms,
                        datacontenttype=body.get("datacontenttype", "application/json"))


async def _stored(entities: Entities, store: Store, identity: Identity, rule: Rule, event_id: Any) -> dict[str, JSON]:
    if not isinstance(event_id, str) or not event_id:
        raise BadRequest(f"eventId {event_id!r} must be the id of a stored event, a non-empty string")
    event = await store.get_event(event_id)
    if event is None or event.trigger.namespace != identity.namespace:  # another namespace's event: not yours
        raise NotFound(f"event '{event_id}' is not stored in namespace {identity.namespace}; "
                       "use the id of an event fired on one of your triggers")
    trigger = await entities.find(event.trigger, Trigger)
    params = params_to_dict(trigger.parameters) if trigger else {}
    out = verdict(rule.filter, rule.transform, event, params)
    out["event"] = {**event.to_cloudevent(), "trigger": str(event.trigger)}
    record = await store.get_activation(identity.namespace, trigger_activation_id(event))
    recorded = recorded_outcomes(record.logs) if record else {}
    if trigger is None:
        out["rules"] = []
        out["reason"] = f"trigger {event.trigger} no longer exists"
        return out
    out["rules"] = [await _rule_outcome(entities, key, link, event, params, recorded.get(key))
                    for key, link in trigger.rules.items()]
    if not trigger.rules:
        out["reason"] = f"trigger {event.trigger} has no rules"
    return out


async def _rule_outcome(entities: Entities, key: str, link: ReducedRule, event: TriggerEvent,
                        params: dict[str, Any], recorded: dict[str, JSON] | None) -> dict[str, JSON]:
    out: dict[str, JSON] = {"rule": key, "action": str(link.action), "status": link.status.value,
                            **verdict(link.filter, link.transform, event, params)}
    if link.shadow:
        out["shadow"] = True
    if recorded is not None and recorded.get("shadow"):
        out["outcome"] = "shadowed"  # matched and recorded what it would run; nothing ran
        out["wouldRun"] = recorded.get("params")
    elif recorded is not None and recorded.get("success"):
        out["outcome"] = "activated"
        out["activationId"] = recorded.get("activationId")
    elif recorded is not None:
        error = str(recorded.get("error"))
        out["outcome"] = ("throttled" if error.startswith(THROTTLED_PREFIXES)
                          else "action missing" if error == NOT_FOUND else "failed")
        out["error"] = error
    elif link.status is not RuleStatus.ACTIVE:
        out["outcome"] = "inactive"
    elif not out["matched"]:
        out["outcome"] = "filtered"
    elif await entities.find(link.action, Action) is None:
        out["outcome"] = "action missing"
    else:
        out["outcome"] = "not run"
        out["error"] = "the rule matches this event now but did not run for it: it was created, enabled or changed after the event"
    return out
