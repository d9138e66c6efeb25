"""Compiled rules per trigger version, for the engine's hot path.

A trigger's rules live on the trigger (its `rules` map); any change to them writes the trigger,
which bumps its store revision, so (fqn, version, revision) names one set of compiled rules.
"""

from __future__ import annotations

from triggerhub.model import Trigger
from triggerhub.rules import match as rules

CACHE_MAX_TRIGGERS = 10_000


class Router:
    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str, int], rules.CompiledRules] = {}

    def compiled(self, trigger: Trigger) -> rules.CompiledRules:
        key = (str(trigger.fqn), trigger.version, trigger.revision)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= CACHE_MAX_TRIGGERS:
                self._compiled.clear()
            found = self._compiled[key] = rules.compile_rules(trigger)
        return found
