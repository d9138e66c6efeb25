"""Lossless JSON documents for every record the store keeps.

These are storage shapes, not the OpenWhisk REST shapes in model.py: every dataclass field is
kept (revision and updated_ms live in table columns as well) so `decode(encode(x)) == x`.

Documents are written by orjson (every fire writes three or four: about 0.5 µs each where the
standard library's encoder takes 6): the same compact text for JSON values. What orjson refuses
(integers past 64 bits, non-string keys, nesting past its limit, strings with lone surrogates) is
written by the standard library's encoder as before. NaN and infinities are refused on input
(model.loads_json); one made in code is written as `null`, as JavaScript's JSON.stringify does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from triggerhub.errors import StoreError
from triggerhub.model import (
    JSON, Action, ActionLimits, Activation, ActivationResponse, Binding, Collection, DeadLetter, Delivery, Entity, Exec,
    FullyQualifiedName, Invocation, Package, Parameter, Parameters, ReducedRule, Rule, RuleStatus,
    StatusCode, Subject, Trigger, TriggerEvent,
)
from triggerhub.store.base import FeedRegistration

Doc = dict[str, Any]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decode = json.JSONDecoder().decode


# Dataclasses and datetimes are not JSON values: left to the standard library, which refuses them.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps(doc: Doc) -> str:
    try:
        return orjson.dumps(doc, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        pass  # orjson.JSONEncodeError is a TypeError: the standard encoder writes or refuses it
    try:
        return _encoder.encode(doc)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store a record holding a value JSON cannot carry ({exc}); pass plain "
                         "JSON values: dict, list, str, int, finite float, bool, None") from exc


def loads(text: str) -> Doc:
    doc = _decode(text)
    if not isinstance(doc, dict):
        raise ValueError(f"stored document is a {type(doc).__name__}, expected an object")
    return doc


# --------------------------------------------------------------------------- parts


def _params(params: Parameters) -> list[list[JSON]]:
    return [[p.key, p.value, p.init] for p in params]


def _params_from(items: list[list[JSON]]) -> Parameters:
    return tuple(Parameter(key, value, bool(init)) for key, value, init in items)


def _fqn(name: FullyQualifiedName) -> list[str | None]:
    return [name.namespace, name.package, name.name]


def _fqn_from(item: list[str | None]) -> FullyQualifiedName:
    namespace, package, name = item
    return FullyQualifiedName(str(namespace), str(name), package)


def _exec(exe: Exec) -> Doc:
    return {"kind": exe.kind, "code": exe.code, "binary": exe.binary, "main": exe.main,
            "image": exe.image, "components": list(exe.components)}


def _exec_from(doc: Doc) -> Exec:
    return Exec(doc["kind"], doc["code"], doc["binary"], doc["main"], doc["image"], tuple(doc["components"]))


def _limits(limits: ActionLimits) -> Doc:
    return {"timeout_ms": limits.timeout_ms, "memory_mb": limits.memory_mb, "logs_mb": limits.logs_mb,
            "concurrency": limits.concurrency}


def _limits_from(doc: Doc) -> ActionLimits:
    return ActionLimits(doc["timeout_ms"], doc["memory_mb"], doc["logs_mb"], doc["concurrency"])


def _common(entity: Entity) -> Doc:
    return {"namespace": entity.namespace, "name": entity.name, "version": entity.version,
            "publish": entity.publish, "annotations": _params(entity.annotations),
            "updated_ms": entity.updated_ms, "revision": entity.revision}


def _common_from(doc: Doc) -> Doc:
    return {"namespace": doc["namespace"], "name": doc["name"], "version": doc["version"],
            "publish": doc["publish"], "annotations": _params_from(doc["annotations"]),
            "updated_ms": doc["updated_ms"], "revision": doc["revision"]}


# --------------------------------------------------------------------------- entities


def action_to_doc(action: Action) -> Doc:
    return _common(action) | {"exec": _exec(action.exec), "parameters": _params(action.parameters),
                              "limits": _limits(action.limits)}


def action_from_doc(doc: Doc) -> Action:
    return Action(exec=_exec_from(doc["exec"]), parameters=_params_from(doc["parameters"]),
                  limits=_limits_from(doc["limits"]), **_common_from(doc))


def _reduced(link: ReducedRule) -> list[JSON]:
    """[action, status] as before issue 13; [action, status, filter, transform] when either is set;
    [..., retry, deadLetter] when either of those is set (issue 14); [..., retry, deadLetter, true]
    for a shadow rule."""
    short = [_fqn(link.action), link.status.value]
    if link.shadow:
        return [*short, link.filter, link.transform, link.retry, link.dead_letter, True]
    if link.retry is not None or link.dead_letter is not None:
        return [*short, link.filter, link.transform, link.retry, link.dead_letter]
    return short if link.filter is None and link.transform is None else [*short, link.filter, link.transform]


def _reduced_from(item: list[JSON]) -> ReducedRule:
    action, status, *routing = item
    filter_, transform, retry, dead_letter, shadow = [*routing, None, None, None, None, False][:5]
    return ReducedRule(_fqn_from(action), RuleStatus(status), filter_, transform, retry, dead_letter,
                       shadow=bool(shadow))


def trigger_to_doc(trigger: Trigger) -> Doc:
    rules = {key: _reduced(link) for key, link in trigger.rules.items()}
    doc = _common(trigger) | {"parameters": _params(trigger.parameters), "rules": rules}
    if trigger.derive is not None:  # derived triggers (issue 14); absent before
        doc["derive"] = trigger.derive
    if trigger.derived:
        doc["derived"] = list(trigger.derived)
    return doc


def trigger_from_doc(doc: Doc) -> Trigger:
    rules = {key: _reduced_from(item) for key, item in doc["rules"].items()}
    return Trigger(parameters=_params_from(doc["parameters"]), rules=rules, derive=doc.get("derive"),
                   derived=tuple(doc.get("derived", ())), **_common_from(doc))


def rule_to_doc(rule: Rule) -> Doc:
    doc = _common(rule) | {"trigger": _fqn(rule.trigger), "action": _fqn(rule.action)}
    if rule.filter is not None:
        doc["filter"] = rule.filter
    if rule.transform is not None:
        doc["transform"] = rule.transform
    if rule.retry is not None:
        doc["retry"] = rule.retry
    if rule.dead_letter is not None:
        doc["deadLetter"] = rule.dead_letter
    if rule.shadow:
        doc["shadow"] = True
    return doc


def rule_from_doc(doc: Doc) -> Rule:
    """Rules stored before issue 13 have neither `filter` nor `transform`; before 14, no `retry`."""
    return Rule(trigger=_fqn_from(doc["trigger"]), action=_fqn_from(doc["action"]), filter=doc.get("filter"),
                transform=doc.get("transform"), retry=doc.get("retry"), dead_letter=doc.get("deadLetter"),
                shadow=bool(doc.get("shadow", False)), **_common_from(doc))


def package_to_doc(package: Package) -> Doc:
    binding = None if package.binding is None else [package.binding.namespace, package.binding.name]
    return _common(package) | {"parameters": _params(package.parameters), "binding": binding}


def package_from_doc(doc: Doc) -> Package:
    binding = None if doc["binding"] is None else Binding(*doc["binding"])
    return Package(parameters=_params_from(doc["parameters"]), binding=binding, **_common_from(doc))


_ENTITY_TO: dict[type[Entity], Callable[[Any], Doc]] = {
    Action: action_to_doc, Trigger: trigger_to_doc, Rule: rule_to_doc, Package: package_to_doc}
_ENTITY_FROM: dict[Collection, Callable[[Doc], Entity]] = {
    Collection.ACTIONS: action_from_doc, Collection.TRIGGERS: trigger_from_doc,
    Collection.RULES: rule_from_doc, Collection.PACKAGES: package_from_doc,
}


def entity_to_doc(entity: Entity) -> Doc:
    return _ENTITY_TO[type(entity)](entity)


def entity_from_doc(collection: Collection | str, doc: Doc) -> Entity:
    return _ENTITY_FROM[Collection(collection)](doc)


# --------------------------------------------------------------------------- activations and work


def response_to_doc(response: ActivationResponse) -> Doc:
    return {"statusCode": int(response.status_code), "result": response.result, "size": response.size}


def response_from_doc(doc: Doc) -> ActivationResponse:
    return ActivationResponse(StatusCode(doc["statusCode"]), doc["result"], doc["size"])


def activation_to_doc(activation: Activation) -> Doc:
    return {"namespace": activation.namespace, "name": activation.name, "subject": activation.subject,
            "activation_id": activation.activation_id, "start_ms": activation.start_ms,
            "end_ms": activation.end_ms, "response": response_to_doc(activation.response),
            "logs": list(activation.logs), "annotations": _params(activation.annotations),
            "version": activation.version, "publish": activation.publish, "cause": activation.cause,
            "duration_ms": activation.duration_ms}


def activation_from_doc(doc: Doc) -> Activation:
    return Activation(doc["namespace"], doc["name"], doc["subject"], doc["activation_id"], doc["start_ms"],
                      doc["end_ms"], response_from_doc(doc["response"]), tuple(doc["logs"]),
                      _params_from(doc["annotations"]), doc["version"], doc["publish"], doc["cause"],
                      doc["duration_ms"])


SECRET_ENV = frozenset({"__OW_API_KEY"})
"""Never written: an invocation re-run after a crash runs without the caller's key."""


def invocation_to_doc(invocation: Invocation) -> Doc:
    return {"activation_id": invocation.activation_id, "action": action_to_doc(invocation.action),
            "args": invocation.args, "namespace": invocation.namespace, "subject": invocation.subject,
            "accepted_ms": invocation.accepted_ms, "cause": invocation.cause, "blocking": invocation.blocking,
            "path_annotation": invocation.path_annotation, "binding": invocation.binding,
            "init_env": {k: v for k, v in invocation.init_env.items() if k not in SECRET_ENV},
            "transaction_id": invocation.transaction_id,
            "extra_annotations": _params(invocation.extra_annotations), "received_ms": invocation.received_ms,
            "delivery": None if invocation.delivery is None else invocation.delivery.to_json()}


def invocation_from_doc(doc: Doc) -> Invocation:
    """Invocations stored before issue 14 have no `delivery`."""
    delivery = doc.get("delivery")
    return Invocation(doc["activation_id"], action_from_doc(doc["action"]), doc["args"], doc["namespace"],
                      doc["subject"], doc["accepted_ms"], doc["cause"], doc["blocking"], doc["path_annotation"],
                      doc["binding"], doc["init_env"], doc["transaction_id"], _params_from(doc["extra_annotations"]),
                      doc.get("received_ms", 0), None if delivery is None else Delivery.from_json(delivery))


def dead_letter_to_doc(letter: DeadLetter) -> Doc:
    return {**letter.to_json(), "invocation": invocation_to_doc(letter.invocation)}


def dead_letter_from_doc(doc: Doc) -> DeadLetter:
    return DeadLetter(doc["id"], doc["rule"], doc["eventId"], doc["activationId"], doc["reason"], doc["attempts"],
                      doc["time"], invocation_from_doc(doc["invocation"]), doc.get("redrivenBy"))


def event_to_doc(event: TriggerEvent) -> Doc:
    return {"id": event.id, "source": event.source, "type": event.type, "trigger": _fqn(event.trigger),
            "data": event.data, "subject": event.subject, "time_ms": event.time_ms,
            "datacontenttype": event.datacontenttype, "traceparent": event.traceparent, "origin": event.origin,
            "decisions": list(event.decisions)}


def event_from_doc(doc: Doc) -> TriggerEvent:
    # events stored before lineage existed have no traceparent, origin or decisions
    return TriggerEvent(doc["id"], doc["source"], doc["type"], _fqn_from(doc["trigger"]), doc["data"],
                        doc["subject"], doc["time_ms"], doc["datacontenttype"], doc.get("traceparent"),
                        doc.get("origin"), tuple(doc.get("decisions") or ()))


# --------------------------------------------------------------------------- identity and feeds


def subject_to_doc(subject: Subject) -> Doc:
    return {"subject": subject.subject, "namespace": subject.namespace, "uuid": subject.uuid,
            "key_hash": subject.key_hash, "limits": subject.limits, "blocked": subject.blocked}


def subject_from_doc(doc: Doc) -> Subject:
    return Subject(doc["subject"], doc["namespace"], doc["uuid"], doc["key_hash"], doc["limits"],
                   bool(doc.get("blocked", False)))  # documents written before blocking existed


def feed_to_doc(feed: FeedRegistration) -> Doc:
    return {"trigger": feed.trigger, "feed": feed.feed, "namespace": feed.namespace, "config": feed.config,
            "status": feed.status, "reason": feed.reason, "created_ms": feed.created_ms,
            "updated_ms": feed.updated_ms}


def feed_from_doc(doc: Doc) -> FeedRegistration:
    return FeedRegistration(doc["trigger"], doc["feed"], doc["namespace"], doc["config"], doc["status"],
                            doc["reason"], doc["created_ms"], doc["updated_ms"])
