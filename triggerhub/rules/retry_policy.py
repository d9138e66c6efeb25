"""A rule's retry policy and dead-letter target, pure: parsing with clear errors, which outcomes
retry, the backoff (exponential, with jitter) and the decision after a failed attempt. No I/O.

The rule body key `retry` ({"maxAttempts", "initialDelayMs", "maxDelayMs", "maxEventAgeS", "on"})
and `deadLetter` ({"trigger": "/ns/name"}) are validated here for the API, the CLI and manifests.
A rule without `retry` uses its namespace's default (limits `retryMaxAttempts`, ...) or none.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from triggerhub.errors import BadRequest
from triggerhub.model import FullyQualifiedName, StatusCode


class Outcome(StrEnum):
    """How an attempt ended, in the words the policy's `on` list uses."""

    SUCCESS = "success"
    APPLICATION_ERROR = "application error"
    DEVELOPER_ERROR = "developer error"
    INTERNAL_ERROR = "internal error"
    TIMEOUT = "timeout"


FAILURES = (Outcome.APPLICATION_ERROR, Outcome.DEVELOPER_ERROR, Outcome.INTERNAL_ERROR, Outcome.TIMEOUT)
DEFAULT_ON = (Outcome.APPLICATION_ERROR, Outcome.INTERNAL_ERROR, Outcome.TIMEOUT)
"""A developer error (no `main`, a result that is not an object, a crash at import) repeats on
every attempt, so it does not retry unless `on` names it."""

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_DELAY_MS = 200
DEFAULT_MAX_DELAY_MS = 60_000
DEFAULT_MAX_EVENT_AGE_S = 86_400
MAX_ATTEMPTS_LIMIT = 100
MAX_DELAY_LIMIT_MS = 86_400_000  # one day
MAX_EVENT_AGE_LIMIT_S = 7 * 86_400

NAMESPACE_KEYS = {"retryMaxAttempts": "maxAttempts", "retryInitialDelayMs": "initialDelayMs",
                  "retryMaxDelayMs": "maxDelayMs", "retryMaxEventAgeS": "maxEventAgeS", "retryOn": "on"}
"""A namespace's default policy, as `triggerhub admin limits set NS --retryMaxAttempts 3 ...`.
Limits are whole numbers, so `retryOn` is kept as a set of bits (ON_BITS); `on_mask` makes it
from outcome names and `on_names` reads it back."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # the first attempt included
    initial_delay_ms: int = DEFAULT_INITIAL_DELAY_MS
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    max_event_age_s: int = DEFAULT_MAX_EVENT_AGE_S
    on: tuple[Outcome, ...] = DEFAULT_ON

    def to_json(self) -> dict[str, Any]:
        return {"maxAttempts": self.max_attempts, "initialDelayMs": self.initial_delay_ms,
                "maxDelayMs": self.max_delay_ms, "maxEventAgeS": self.max_event_age_s,
                "on": [o.value for o in self.on]}


ON_BITS = {Outcome.APPLICATION_ERROR: 1, Outcome.DEVELOPER_ERROR: 2, Outcome.INTERNAL_ERROR: 4, Outcome.TIMEOUT: 8}


def on_mask(names: Any, *, where: str = "retryOn") -> int:
    """The `retryOn` limit for outcome names (a list, or one comma-separated string); BadRequest
    naming an unknown one."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    return sum(ON_BITS[outcome] for outcome in _parse_on(names, where))


def on_names(mask: int) -> list[str]:
    return [outcome.value for outcome, bit in ON_BITS.items() if mask & bit]


NO_RETRY = RetryPolicy(max_attempts=1)
"""What a rule with a dead-letter target but no retry policy gets: one attempt, then a letter."""


_FIELDS: dict[str, tuple[str, int, int]] = {  # key: (dataclass field, lowest, highest)
    "maxAttempts": ("max_attempts", 1, MAX_ATTEMPTS_LIMIT),
    "initialDelayMs": ("initial_delay_ms", 0, MAX_DELAY_LIMIT_MS),
    "maxDelayMs": ("max_delay_ms", 0, MAX_DELAY_LIMIT_MS),
    "maxEventAgeS": ("max_event_age_s", 1, MAX_EVENT_AGE_LIMIT_S),
}


def parse_retry(value: Any, *, where: str = "retry") -> RetryPolicy:
    """A `retry` object as a policy; BadRequest naming the bad key and value otherwise. Keys left
    out take the defaults above."""
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object like {{\"maxAttempts\": 3, \"initialDelayMs\": 200}}; "
                         f"got {_shown(value)}")
    unknown = sorted(set(value) - {*_FIELDS, "on"})
    if unknown:
        raise BadRequest(f"{where}: unknown key {', '.join(repr(k) for k in unknown)}; "
                         f"allowed: {', '.join([*_FIELDS, 'on'])}")
    chosen: dict[str, Any] = {}
    for key, (name, lowest, highest) in _FIELDS.items():
        if key not in value:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int) or not lowest <= number <= highest:
            raise BadRequest(f"{where}.{key} is {_shown(number)}; give a whole number from {lowest} to {highest}")
        chosen[name] = number
    if "on" in value:
        chosen["on"] = _parse_on(value["on"], f"{where}.on")
    policy = RetryPolicy(**chosen)
    if policy.max_delay_ms < policy.initial_delay_ms:
        raise BadRequest(f"{where}.maxDelayMs ({policy.max_delay_ms}) is below initialDelayMs "
                         f"({policy.initial_delay_ms}); raise maxDelayMs or lower initialDelayMs")
    return policy


def _parse_on(value: Any, label: str) -> tuple[Outcome, ...]:
    allowed = ", ".join(f"'{o.value}'" for o in FAILURES)
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{label} must be a non-empty array of outcomes from {allowed}; got {_shown(value)}")
    outcomes: list[Outcome] = []
    for item in value:
        if not isinstance(item, str) or item not in {o.value for o in FAILURES}:
            raise BadRequest(f"{label}: unknown outcome {_shown(item)}; allowed: {allowed}")
        if Outcome(item) not in outcomes:
            outcomes.append(Outcome(item))
    return tuple(outcomes)


def parse_dead_letter(value: Any, namespace: str, *, where: str = "deadLetter") -> FullyQualifiedName:
    """A `deadLetter` object's trigger (`/ns/name`, `name` or `_/name` in the rule's namespace)."""
    if not isinstance(value, dict) or set(value) != {"trigger"} or not isinstance(value["trigger"], str):
        raise BadRequest(f"{where} must be an object {{\"trigger\": \"/namespace/name\"}}; got {_shown(value)}")
    try:
        return FullyQualifiedName.parse(value["trigger"], namespace)
    except ValueError as exc:
        raise BadRequest(f"{where}.trigger {_shown(value['trigger'])} is not a trigger name: {exc}") from exc


def namespace_policy(limits: Mapping[str, int]) -> RetryPolicy | None:
    """The default policy a namespace's operator set (None: rules without `retry` never retry)."""
    if "retryMaxAttempts" not in limits:
        return None
    chosen: dict[str, Any] = {key: limits[name] for name, key in NAMESPACE_KEYS.items() if name in limits}
    if "on" in chosen:
        mask = chosen["on"]
        if isinstance(mask, bool) or not isinstance(mask, int) or not 0 < mask < 2 ** len(ON_BITS):
            raise BadRequest(f"namespace retry default: retryOn is {_shown(mask)}, not a set of outcomes; "
                             f"set it again with --retryOn from {', '.join(repr(o.value) for o in FAILURES)}")
        chosen["on"] = on_names(mask)
    return parse_retry(chosen, where="namespace retry default")


def outcome_of(status_code: StatusCode, *, timed_out: bool) -> Outcome:
    if status_code is StatusCode.SUCCESS:
        return Outcome.SUCCESS
    if timed_out:
        return Outcome.TIMEOUT
    return {StatusCode.APPLICATION_ERROR: Outcome.APPLICATION_ERROR, StatusCode.DEVELOPER_ERROR: Outcome.DEVELOPER_ERROR,
            StatusCode.WHISK_ERROR: Outcome.INTERNAL_ERROR}[status_code]


def backoff_ms(policy: RetryPolicy, failed_attempt: int, random_fraction: Callable[[], float] = random.random) -> int:
    """The pause after attempt `failed_attempt` (1 = the first): the exponential step
    initialDelayMs·2^(n-1), capped at maxDelayMs, then "equal jitter": a uniform pick in
    [step/2, step], so retries of many events spread out and never come sooner than half the step."""
    step = min(policy.max_delay_ms, policy.initial_delay_ms * int(2 ** min(failed_attempt - 1, 62)))
    return step // 2 + round((step - step // 2) * random_fraction())


@dataclass(frozen=True, slots=True)
class Retry:
    delay_ms: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str  # why the event goes to the dead letters


Decision = Retry | GiveUp | None
"""After an attempt: retry after a pause, give up (dead letter), or nothing to do (success, or an
outcome the policy does not cover: ... also given up, with the reason)."""


def decide(policy: RetryPolicy, *, attempt: int, outcome: Outcome, event_time_ms: int, now_ms: int,
           random_fraction: Callable[[], float] = random.random) -> Decision:
    """What follows attempt number `attempt` (1-based) that ended in `outcome`."""
    if outcome is Outcome.SUCCESS:
        return None
    if outcome not in policy.on:
        return GiveUp(f"{outcome.value} (retry.on does not include it) after {attempt} attempt(s)")
    if attempt >= policy.max_attempts:
        return GiveUp(f"{outcome.value} after {attempt} attempt(s) (retry.maxAttempts is {policy.max_attempts})")
    delay_ms = backoff_ms(policy, attempt, random_fraction)
    age_s = (now_ms + delay_ms - event_time_ms) / 1000
    if age_s > policy.max_event_age_s:
        return GiveUp(f"{outcome.value} after {attempt} attempt(s); the event would be {age_s:.0f} s old at the "
                      f"next attempt (retry.maxEventAgeS is {policy.max_event_age_s})")
    return Retry(delay_ms)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
