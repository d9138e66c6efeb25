"""Retries, dead letters and redrive of rule activations (issue 14): what follows each attempt.

- `attach` (fire path): every rule activation carries its Delivery (rule, event, attempt 1); when a
  retry policy or a dead-letter target applies, its record is annotated `rule`, `event`, `attempt`.
- `settle` (an attempt ran; before its record is stored): a failure the policy retries becomes a
  waiting retry row, due after the backoff; one it gives up on becomes a dead letter and fires the
  rule's `deadLetter` trigger; a redriven run that succeeds clears its letter. Every write is keyed
  by (rule, event[, attempt]), so an attempt run again after a crash writes nothing twice. Live,
  redriven (the policy's whole budget again) and replayed runs (`replayed`) are all settled so.
- `pump`: claims due retry rows under a lease and hands each next attempt to the dispatcher; the
  row is dropped only after the hand-over, so a process killed on the way leaves it to a later
  claim, which finds the attempt pending or recorded and does not start it twice. The due retry
  of a rule that is inactive now is cancelled into a dead letter, of a deleted rule dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.engine.bodies import parse_entity_ref
from triggerhub.engine.entities import Entities
from triggerhub.engine.resolve import merge_arguments
from triggerhub.errors import ApiError, BadRequest, BusError, NotFound, PatternError, StoreError
from triggerhub.model import (
    JSON, Activation, DeadLetter, Delivery, FullyQualifiedName, Identity, Invocation, Parameter, Parameters,
    ReducedRule, Rule, RuleStatus, Trigger, TriggerEvent, annotation, params_to_dict,
)
from triggerhub.retry import retrying
from triggerhub.rules.events import event_document
from triggerhub.rules.match import Match, event_payload
from triggerhub.rules.retry_policy import (
    NO_RETRY, GiveUp, Outcome, Retry, RetryPolicy, decide, namespace_policy, outcome_of, parse_retry,
)
from triggerhub.rules.transform import compile_transform
from triggerhub.store.base import Store

log = logging.getLogger(__name__)

DEAD_LETTER_TYPE = "triggerhub.rule.deadletter"
MAX_REDRIVE = 10_000  # letters per redrive request
_IDS = uuid.UUID("5d0c1f8e-3a4b-4c2d-9e7f-1a2b3c4d5e6f")

Submit = Callable[[list[Invocation]], Awaitable[None]]
"""Hand pending invocations to the dispatcher (the engine's, without taking a concurrency slot)."""
FireEvent = Callable[[FullyQualifiedName, TriggerEvent], Awaitable[None]]
LimitsOf = Callable[[str], Awaitable[Mapping[str, int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpSettings:
    poll_ms: int = 200  # the longest wait between looks for due retries (other processes' rows)
    lease_ms: int = 5_000  # how long a claim keeps others off a row (a killed claimer's rows wait this long)
    batch: int = 200  # rows claimed at once


def retry_activation_id(delivery: Delivery) -> str:
    """Per (rule, event, attempt), and the replayed run's own when it is a replay's attempt."""
    replay = "" if delivery.replay is None else f"/replay/{delivery.replay}"
    return uuid.uuid5(_IDS, f"retry/{delivery.rule}/{delivery.event_id}/{delivery.attempt}{replay}").hex


def dead_letter_id(rule: str, event_id: str) -> str:
    return uuid.uuid5(_IDS, f"deadletter/{rule}/{event_id}").hex


def attempt_annotations(existing: Parameters, delivery: Delivery) -> Parameters:
    """`rule`, `event` (unless routing put them there already) and `attempt`, after `existing`."""
    kept = tuple(p for p in existing if p.key not in ("attempt", "redrive"))
    added = [Parameter(k, v) for k, v in (("rule", delivery.rule), ("event", delivery.event_id))
             if all(p.key != k for p in kept)]
    added.append(Parameter("attempt", delivery.attempt))
    if delivery.redrive is not None:
        added.append(Parameter("redrive", delivery.redrive))
    return kept + tuple(added)


def has_policy(link: ReducedRule, limits: Mapping[str, int]) -> bool:
    return link.retry is not None or link.dead_letter is not None or "retryMaxAttempts" in limits


def rule_policy(rule: Rule, limits: Mapping[str, int]) -> RetryPolicy | None:
    """The rule's own policy, else its namespace's default, else one attempt when it names a
    dead-letter target, else None (OpenWhisk's behaviour: a failure is only a record)."""
    if rule.retry is not None:
        return parse_retry(rule.retry)
    default = namespace_policy(limits)
    if default is not None:
        return default
    return NO_RETRY if rule.dead_letter is not None else None


class Deliveries:
    def __init__(self, *, store: Store, entities: Entities, submit: Submit, fire: FireEvent, limits_of: LimitsOf,
                 clock: Clock = SYSTEM_CLOCK, settings: PumpSettings = PumpSettings()) -> None:
        self._store = store
        self._entities = entities
        self._submit = submit
        self._fire = fire
        self._limits_of = limits_of
        self._clock = clock
        self._settings = settings
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ fire path
    def attach(self, found: Match, link: ReducedRule, event: TriggerEvent, limits: Mapping[str, int]) -> tuple[Delivery, Parameters]:
        """The delivery of a matched rule's first attempt, and its record's annotations."""
        delivery = Delivery(found.rule, event.id, 1, event.time_ms or self._clock.now_ms())
        if not has_policy(link, limits):
            return delivery, found.annotations
        return delivery, attempt_annotations(found.annotations, delivery)

    def replayed(self, found: Match, event: TriggerEvent) -> tuple[Delivery, Parameters]:
        """The delivery of a replayed run's first attempt (its own keys and retry ids; its age
        counted from now) and its record's annotations: every replayed record carries `attempt`,
        so lineage files it under its event whatever the rule's policy."""
        delivery = Delivery(found.rule, event.id, 1, self._clock.now_ms(), replay=found.activation_id)
        return delivery, attempt_annotations(found.annotations, delivery)

    # ------------------------------------------------------------------ after each attempt
    async def settle(self, invocation: Invocation, record: Activation) -> Activation:
        """Keep what must follow attempt `record` of `invocation` (retry row, dead letter)."""
        delivery = invocation.delivery
        if delivery is None:
            return record
        outcome = outcome_of(record.response.status_code, timed_out=annotation(record.annotations, "timeout", False) is True)
        if outcome is Outcome.SUCCESS:
            if delivery.redrive is not None:
                await retrying(f"clearing dead letter {delivery.redrive}",
                               lambda: self._store.delete_dead_letter(str(delivery.redrive)))
                log.info("dead letter %s of rule %s cleared by activation %s", delivery.redrive, delivery.rule,
                         record.activation_id)
            return record
        found = await self._rule(invocation.namespace, delivery.rule)
        if found is None:
            return record
        rule, policy = found
        if policy is None:
            if delivery.redrive is None:
                return record
            policy = NO_RETRY  # a redrive always ends in a success or its letter again
        now = self._clock.now_ms()
        # A redrive runs under the policy afresh: its attempts count from its first one.
        decision = decide(policy, attempt=delivery.run_attempt, outcome=outcome, event_time_ms=delivery.event_time_ms,
                          now_ms=now)
        if isinstance(decision, GiveUp) and delivery.redrive is not None:
            decision = GiveUp(f"{decision.reason} on redrive (attempts {delivery.first_attempt}-{delivery.attempt})")
        if isinstance(decision, Retry):
            await self._keep_retry(invocation, delivery, now + decision.delay_ms)
        elif isinstance(decision, GiveUp):
            await self._give_up(rule, invocation, delivery, record, decision.reason)
        return record

    async def _rule(self, namespace: str, key: str) -> tuple[Rule, RetryPolicy | None] | None:
        """The rule as it is now, with its policy (None: it has none); None when it is gone."""
        path, _, name = key.rpartition("/")
        rule = await retrying(f"reading rule {key}",
                              lambda: self._entities.find(FullyQualifiedName.from_path(path, name), Rule))
        if rule is None:
            log.info("rule %s is gone: no retry and no dead letter for its failed activation", key)
            return None
        limits = await retrying(f"reading the limits of namespace {namespace}", lambda: self._limits_of(namespace))
        try:
            policy = rule_policy(rule, limits)
        except BadRequest as exc:  # a namespace default set by hand in the store
            log.warning("rule %s: retry policy ignored: %s", key, exc.message)
            policy = None
        return rule, policy

    async def _keep_retry(self, invocation: Invocation, delivery: Delivery, due_ms: int) -> None:
        following = replace(delivery, attempt=delivery.attempt + 1, failed_activation_id=invocation.activation_id)
        retry = replace(invocation, activation_id=retry_activation_id(following), accepted_ms=due_ms,
                        delivery=following, extra_annotations=attempt_annotations(invocation.extra_annotations, following))
        await retrying(f"keeping retry {retry.activation_id} of rule {delivery.rule}",
                       lambda: self._store.put_retry(retry, rule=delivery.rule, due_ms=due_ms))
        log.info("activation %s of rule %s failed (attempt %d); attempt %d (%s) due in %d ms", invocation.activation_id,
                 delivery.rule, delivery.attempt, following.attempt, retry.activation_id, due_ms - self._clock.now_ms())
        self._wake.set()

    async def _give_up(self, rule: Rule, invocation: Invocation, delivery: Delivery, record: Activation,
                       reason: str) -> None:
        await self._keep_letter(rule, invocation, delivery, delivery.attempt, record.activation_id, reason)

    async def _keep_letter(self, rule: Rule, invocation: Invocation, delivery: Delivery, attempts: int,
                           activation_id: str, reason: str) -> None:
        """`invocation`'s event as a dead letter (replacing the one of its (rule, event), which ends
        any redrive of it), and the rule's `deadLetter` trigger fired."""
        letter = DeadLetter(dead_letter_id(delivery.rule, delivery.event_id), delivery.rule, delivery.event_id,
                            activation_id, reason, attempts, self._clock.now_ms(), invocation)
        await retrying(f"keeping dead letter {letter.id} of rule {letter.rule}", lambda: self._store.put_dead_letter(letter))
        log.warning("rule %s gave up on event %s: %s; dead letter %s", letter.rule, letter.event_id, reason, letter.id)
        if rule.dead_letter is None:
            return
        target = FullyQualifiedName.parse(str(rule.dead_letter["trigger"]), rule.namespace)
        if target.namespace != rule.namespace.partition("/")[0]:
            log.warning("rule %s: dead-letter trigger %s is in another namespace; not fired", letter.rule, target)
            return
        event = TriggerEvent(
            id=f"deadletter:{activation_id}", source=f"/api/v1/namespaces/{rule.namespace}/rules/{rule.name}",
            type=DEAD_LETTER_TYPE, trigger=target, data=letter.to_json(), time_ms=letter.created_ms)
        try:
            await retrying(f"firing dead-letter trigger {target}", lambda: self._fire(target, event))
        except ApiError as exc:  # the letter is kept; the attempt's record must still be stored
            log.warning("rule %s: dead-letter trigger %s not fired for event %s: %s", letter.rule, target,
                        letter.event_id, exc.message)

    # ------------------------------------------------------------------ the pump
    async def pump(self, stop: asyncio.Event) -> None:
        """Start due retries until `stop` is set (seen within `poll_ms`)."""
        while not stop.is_set():
            try:
                started = await self.start_due()
                if started >= self._settings.batch:
                    continue
                next_due = await self._store.next_retry_due_ms()
            except (StoreError, BusError) as exc:
                log.warning("starting due retries failed (%s); trying again", exc)
                next_due = None
            wait_ms = self._settings.poll_ms
            if next_due is not None:
                wait_ms = max(0, min(wait_ms, next_due - self._clock.now_ms()))
            self._wake.clear()  # a retry kept in this process meanwhile wakes the pump early
            try:
                async with asyncio.timeout(wait_ms / 1000):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def start_due(self) -> int:
        """Claim due retries and hand each over; returns how many were claimed."""
        claimed = await self._store.claim_retries(now_ms=self._clock.now_ms(), owner=self._owner,
                                                  lease_ms=self._settings.lease_ms, limit=self._settings.batch)
        if claimed:
            async with asyncio.TaskGroup() as tasks:
                for invocation in claimed:
                    tasks.create_task(self._start(invocation))
        return len(claimed)

    async def _start(self, invocation: Invocation) -> None:
        """A failure leaves the row leased: it is started again when the lease ends. The retry of
        a rule that is inactive now, or gone, is not run (`_cancel`)."""
        try:
            if not await self._cancel(invocation) and await self._store.prepare_retry(invocation):
                await self._submit([invocation])
            await self._store.delete_retry(invocation.activation_id, owner=self._owner)
        except (StoreError, BusError) as exc:
            log.warning("retry %s not started (%s); it is tried again in %d ms", invocation.activation_id, exc,
                        self._settings.lease_ms)

    async def _cancel(self, invocation: Invocation) -> bool:
        """True when the due retry must not run: its rule was deleted (its letters went with it:
        the retry ends here), or is inactive (the event becomes a dead letter, so enabling the
        rule and redriving runs it: the disabled rule invokes nothing meanwhile)."""
        delivery = invocation.delivery
        if delivery is None:
            return False
        path, _, name = delivery.rule.rpartition("/")
        rule = await self._entities.find(FullyQualifiedName.from_path(path, name), Rule)
        if rule is None:
            log.info("retry %s not run: rule %s was deleted", invocation.activation_id, delivery.rule)
            return True
        if await self._entities.rule_status(rule) is RuleStatus.ACTIVE:
            return False
        reason = f"rule {delivery.rule} was disabled: attempt {delivery.attempt} was cancelled, not run"
        await self._keep_letter(rule, invocation, delivery, delivery.attempt - 1,
                                delivery.failed_activation_id or invocation.activation_id, reason)
        return True

    # ------------------------------------------------------------------ API
    async def dead_letters(self, identity: Identity, fqn: FullyQualifiedName, *, skip: int, limit: int) -> list[DeadLetter]:
        await self._entities.get(identity, fqn, Rule)
        return await self._store.list_dead_letters(f"{fqn.path}/{fqn.name}", skip=skip, limit=limit)

    async def count_dead_letters(self, identity: Identity, fqn: FullyQualifiedName) -> int:
        await self._entities.get(identity, fqn, Rule)
        return await self._store.count_dead_letters(f"{fqn.path}/{fqn.name}")

    async def redrive_letters(self, identity: Identity, fqn: FullyQualifiedName,
                              body: Any) -> tuple[Rule, list[DeadLetter], FullyQualifiedName]:
        """The letters a redrive request selects (`ids`, else all) and the action to run them with
        (`action`, else the rule's action as it is now)."""
        rule = await self._entities.get(identity, fqn, Rule)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest("The request content was malformed: expected a JSON object like {\"ids\": [...], \"action\": \"name\"}.")
        unknown = sorted(set(body) - {"ids", "action"})
        if unknown:
            raise BadRequest(f"redrive: unknown key {', '.join(repr(k) for k in unknown)}; allowed: 'ids', 'action'")
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
                                or not 0 < len(ids) <= MAX_REDRIVE):
            raise BadRequest(f"redrive: ids must be an array of 1 to {MAX_REDRIVE} dead-letter ids (strings); "
                             f"list them with GET .../rules/{fqn.name}/deadletters")
        action = rule.action if body.get("action") is None else parse_entity_ref(body["action"], identity.namespace)
        key = f"{fqn.path}/{fqn.name}"
        letters = await self._store.list_dead_letters(key, ids=ids, limit=MAX_REDRIVE)
        if ids is not None:
            missing = sorted(set(ids) - {letter.id for letter in letters})
            if missing:
                raise NotFound(f"rule {fqn.name} has no dead letter {', '.join(missing[:5])}"
                               f"{' …' if len(missing) > 5 else ''}; list them with GET .../rules/{fqn.name}/deadletters")
        return rule, letters, action

    async def redrive_arguments(self, letter: DeadLetter, rule: Rule) -> dict[str, Any]:
        """What the redriven run gets: the stored event through the rule's trigger parameters and
        transform as they are now (its filter took the event once and is not asked again); the
        last attempt's arguments when the event is no longer stored."""
        event = await self._store.get_event(letter.event_id)
        trigger = await self._entities.find(rule.trigger, Trigger)
        if event is None or trigger is None:
            return letter.invocation.args if isinstance(letter.invocation.args, dict) else {}
        try:
            params = event_payload(event) if rule.transform is None else compile_transform(rule.transform).apply(
                event_document(event))
        except PatternError as exc:
            raise BadRequest(f"rule {rule.name}: its transform fails on event {event.id}: {exc.message}; "
                             "fix the transform or redrive to another action") from exc
        return merge_arguments([params_to_dict(trigger.parameters), params])

    def redriven(self, letter: DeadLetter, fresh: Invocation) -> Invocation:
        """`fresh` (the action to run, resolved now) as the redrive of `letter`: its next attempt,
        the first of a run under the rule's policy, its event's age counted from now."""
        base = letter.invocation.delivery or Delivery(letter.rule, letter.event_id)
        attempt = letter.attempts + 1
        delivery = replace(base, attempt=attempt, redrive=letter.id, first_attempt=attempt,
                           event_time_ms=self._clock.now_ms(), failed_activation_id=None)
        return replace(fresh, delivery=delivery, extra_annotations=attempt_annotations(fresh.extra_annotations, delivery))


def letters_json(letters: Sequence[DeadLetter]) -> list[JSON]:
    return [letter.to_json() for letter in letters]
