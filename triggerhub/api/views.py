"""Entity and activation records rendered as OpenWhisk's REST JSON (reference 2)."""

from __future__ import annotations

from typing import Any

from triggerhub.model import (
    Action, Activation, Entity, Package, Rule, RuleCounts, RuleStatus, Trigger, params_to_json,
)


def _base(entity: Entity) -> dict[str, Any]:
    return {"namespace": entity.namespace, "name": entity.name, "version": entity.version,
            "publish": entity.publish}


def action_json(action: Action, *, include_code: bool = True) -> dict[str, Any]:
    return {**_base(action), "exec": action.exec.to_json(include_code=include_code),
            "parameters": params_to_json(action.parameters), "limits": action.limits.to_json(),
            "annotations": params_to_json(action.annotations), "updated": action.updated_ms}


def action_summary(action: Action) -> dict[str, Any]:
    return {**_base(action), "annotations": params_to_json(action.annotations), "updated": action.updated_ms,
            "limits": action.limits.to_json(), "exec": {"binary": action.exec.binary}}


def trigger_json(trigger: Trigger) -> dict[str, Any]:
    rules = {key: {"action": {"name": link.action.name, "path": link.action.path}, "status": link.status.value}
             for key, link in trigger.rules.items()}
    out = {**_base(trigger), "parameters": params_to_json(trigger.parameters), "limits": {},
           "annotations": params_to_json(trigger.annotations), "updated": trigger.updated_ms}
    if rules:
        out["rules"] = rules
    if trigger.derive is not None:
        out["derive"] = trigger.derive
    return out


def trigger_summary(trigger: Trigger) -> dict[str, Any]:
    return {**_base(trigger), "annotations": params_to_json(trigger.annotations), "updated": trigger.updated_ms}


def rule_json(rule: Rule, status: RuleStatus, counts: RuleCounts | None = None) -> dict[str, Any]:
    """OpenWhisk's rule; `filter`, `transform`, `shadow` and `counts` only on rules that have them
    (`counts`: given for filtered and shadow rules)."""
    out = {**_base(rule), "status": status.value,
           "trigger": {"path": rule.trigger.path, "name": rule.trigger.name},
           "action": {"path": rule.action.path, "name": rule.action.name},
           "annotations": params_to_json(rule.annotations), "updated": rule.updated_ms}
    if rule.filter is not None:
        out["filter"] = rule.filter
    if counts is not None:
        out["counts"] = {"matched": counts.matched, "filtered": counts.filtered}
    if rule.transform is not None:
        out["transform"] = rule.transform
    if rule.retry is not None:
        out["retry"] = rule.retry
    if rule.dead_letter is not None:
        out["deadLetter"] = rule.dead_letter
    if rule.shadow:
        out["shadow"] = True
    return out


def package_json(package: Package, members: list[Action], parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    binding: dict[str, Any] = {}
    if package.binding is not None:
        binding = {"namespace": package.binding.namespace, "name": package.binding.name}
    actions: list[dict[str, Any]] = []
    feeds: list[dict[str, Any]] = []
    for action in members:
        item = {"name": action.name, "version": action.version, "annotations": params_to_json(action.annotations)}
        is_feed = any(a.key == "feed" and a.value for a in action.annotations)
        (feeds if is_feed else actions).append(item)
    return {**_base(package), "binding": binding,
            "parameters": parameters if parameters is not None else params_to_json(package.parameters),
            "annotations": params_to_json(package.annotations), "actions": actions, "feeds": feeds,
            "updated": package.updated_ms}


def package_summary(package: Package) -> dict[str, Any]:
    binding: Any = False
    if package.binding is not None:
        binding = {"namespace": package.binding.namespace, "name": package.binding.name}
    return {**_base(package), "annotations": params_to_json(package.annotations), "updated": package.updated_ms,
            "binding": binding}


def _timing(activation: Activation) -> dict[str, Any]:
    """`end` and `duration` only when the activation has an end (trigger records have none)."""
    out: dict[str, Any] = {}
    if activation.end_ms:
        out["end"] = activation.end_ms
        out["duration"] = activation.duration
    if activation.cause:
        out["cause"] = activation.cause
    return out


def activation_json(activation: Activation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": activation.namespace, "name": activation.name, "subject": activation.subject,
        "activationId": activation.activation_id, "start": activation.start_ms, **_timing(activation),
    }
    out.update({"response": activation.response.to_json(), "logs": list(activation.logs),
                "annotations": params_to_json(activation.annotations), "version": activation.version,
                "publish": activation.publish})
    return out


def activation_summary(activation: Activation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": activation.namespace, "name": activation.name, "version": activation.version,
        "publish": activation.publish, "annotations": params_to_json(activation.annotations),
        "activationId": activation.activation_id, "start": activation.start_ms, **_timing(activation),
    }
    out["statusCode"] = int(activation.response.status_code)
    return out


def result_json(activation: Activation) -> dict[str, Any]:
    return activation.response.to_json()
