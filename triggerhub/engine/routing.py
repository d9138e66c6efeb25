"""Compiled rules per trigger, for the engine's hot path.

One compiled set per trigger, reused while the trigger's `rules` map is unchanged. Neither its
version nor its store revision can say that: a rule change rewrites the trigger without a new
version, and a trigger deleted and created again starts its revisions over. So a hit is checked
against the map itself: by identity when the entity cache hands out the same Trigger (embedded
mode), else by equality (a worker reads the trigger fresh for every event).
"""

from __future__ import annotations

from triggerhub.model import Trigger
from triggerhub.rules import match as rules

CACHE_MAX_TRIGGERS = 10_000


class Router:
    def __init__(self) -> None:
        self._compiled: dict[str, rules.CompiledRules] = {}

    def compiled(self, trigger: Trigger) -> rules.CompiledRules:
        key = str(trigger.fqn)
        found = self._compiled.get(key)
        if found is None or (found.source is not trigger.rules and found.source != trigger.rules):
            if len(self._compiled) >= CACHE_MAX_TRIGGERS:
                self._compiled.clear()
            found = self._compiled[key] = rules.compile_rules(trigger)
        return found
