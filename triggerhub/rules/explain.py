"""Explain, pure: a rule's verdict on one event as JSON (each clause, the value found at its path,
matched or not; the parameters its transform would give), and what a stored outcome line says."""

from __future__ import annotations

import json
from typing import Any

from triggerhub.errors import PatternError
from triggerhub.model import JSON, TriggerEvent
from triggerhub.rules.events import event_document
from triggerhub.rules.match import event_payload
from triggerhub.rules.pattern import Clause, compile_filter
from triggerhub.rules.transform import compile_transform


def verdict(filter_: JSON, transform: JSON, event: TriggerEvent, trigger_params: dict[str, Any]) -> dict[str, JSON]:
    """{"matched", "clauses": [{"path", "value", "present", "matched", "test"}], "params"}. `params`
    is what the action would get from the rule and trigger (the trigger's parameters under the
    transform's result, or under the event data without a transform), whether or not it matched."""
    document = event_document(event)
    out: dict[str, JSON] = {"matched": True, "clauses": []}
    if filter_ is not None:
        explanation = compile_filter(filter_).explain(document)
        out = {"matched": explanation.matched, "clauses": [clause_json(c) for c in explanation.clauses]}
    if transform is None:
        out["params"] = {**trigger_params, **event_payload(event)}
        return out
    try:
        out["params"] = {**trigger_params, **compile_transform(transform).apply(document)}
    except PatternError as exc:
        out["params"] = None
        out["error"] = exc.message
    return out


def clause_json(clause: Clause) -> dict[str, JSON]:
    """`group` (the `$or` alternative a clause belongs to) only inside `$or`."""
    out: dict[str, JSON] = {"path": clause.path, "value": clause.value, "present": clause.present,
                            "matched": clause.matched, "test": clause.test}
    if clause.group:
        out["group"] = clause.group
    return out


def recorded_outcomes(logs: tuple[str, ...]) -> dict[str, dict[str, JSON]]:
    """The trigger record's outcome lines (rules.match.outcome_line), by rule key."""
    found: dict[str, dict[str, JSON]] = {}
    for line in logs:
        try:
            outcome = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(outcome, dict) and isinstance(outcome.get("rule"), str):
            found[outcome["rule"]] = outcome
    return found
