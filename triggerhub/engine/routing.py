"""Compiled rules per trigger version and per-rule routing counts, for the engine's hot path.

A trigger's rules live on the trigger (its `rules` map); any change to them writes the trigger,
which bumps its store revision, so (fqn, version, revision) names one set of compiled rules.
Counts are this process's: in distributed mode each matching process counts its own events.
"""

from __future__ import annotations

from dataclasses import dataclass

from triggerhub.model import Trigger
from triggerhub.rules import match as rules

CACHE_MAX_TRIGGERS = 10_000


@dataclass(frozen=True, slots=True)
class RuleCounts:
    matched: int = 0  # events the rule's filter accepted
    filtered: int = 0  # events the rule's filter refused (no activation, no invocation written)


class Router:
    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str, int], rules.CompiledRules] = {}
        self._counts: dict[str, list[int]] = {}

    def compiled(self, trigger: Trigger) -> rules.CompiledRules:
        key = (str(trigger.fqn), trigger.version, trigger.revision)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= CACHE_MAX_TRIGGERS:
                self._compiled.clear()
            found = self._compiled[key] = rules.compile_rules(trigger)
        return found

    def count(self, routing: rules.Routing) -> None:
        for found in routing.matched:
            self._counts.setdefault(found.rule, [0, 0])[0] += 1
        for rule in routing.filtered:
            self._counts.setdefault(rule, [0, 0])[1] += 1

    def counts(self, rule: str) -> RuleCounts:
        """`rule` is the rule key, `guest/r` or `guest/pkg/r`."""
        matched, filtered = self._counts.get(rule, (0, 0))
        return RuleCounts(matched, filtered)
