"""The engine: accepts invokes and fires durably, runs them, and records exactly one activation each.

Accepting (store.accept) happens before any 202 is answered; running happens in tasks owned by
the engine's TaskGroup; finishing is store.complete(), which refuses a second record for an id.
After a crash, `__aenter__` re-runs every accepted invocation that has no record yet.

Its collaborators are given to the constructor: entity access, and the dispatcher (embedded or
distributed: the mode is the dispatcher's business, behind its seam). One is not: the handler of
built-in actions is the FeedManager's, which fires through this engine (see `builtin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.config import HubConfig
from triggerhub.errors import FORBIDDEN, NOT_FOUND, ApiError, BadRequest, Forbidden, NotFound
from triggerhub.model import (
    JSON, Action, Activation, ActivationResponse, Delivery, FullyQualifiedName, Identity, Invocation, Kind, Package,
    Parameter, Parameters, StatusCode, Trigger, TriggerEvent, annotation, new_activation_id, now_ms,
    params_to_dict,
)
from triggerhub.engine.apis import ApiGateway
from triggerhub.engine.auth import Authenticator
from triggerhub.engine.deliveries import Deliveries, PumpSettings
from triggerhub.engine.derive import IDLE_S, Deriver
from triggerhub.engine.dispatch import Dispatcher, DispatcherStatistics
from triggerhub.engine.entities import Entities
from triggerhub.engine.ordering import partition_key
from triggerhub.engine.explain import explain as explain_rule
from triggerhub.engine.lineage import event_lineage
from triggerhub.engine.replay import replay_rule
from triggerhub.engine.resolve import Resolved, bound_parameters, check_final, check_read, merge_arguments, package_readable
from triggerhub.engine.sequences import run_sequence
from triggerhub.engine.routing import Router
from triggerhub.engine.throttle import ConcurrencyThrottler, FeedAdmission, RateThrottler
from triggerhub.invoker.base import Invoker
from triggerhub.observe import lineage, metrics, otel
from triggerhub.rules import match as rules
from triggerhub.store.base import (
    Acceptance, ActivationQuery, DeriveNotices, DeriveStep, RedriveClaim, ReplayClaim, Store,
)

log = logging.getLogger(__name__)

API_FIRE_TYPE = "org.openwhisk.trigger.fire"
"""The event type of fires through the API: they keep OpenWhisk's limits; every other type came from a feed."""

RouteDerive = Callable[[Sequence[DeriveStep], list[Awaitable[None]] | None], Awaitable[None]]
"""Publishes derived triggers' steps for an event to where their state lives (confirmations: as for submit)."""

BuiltinHandler = Callable[[Invocation], Awaitable[Any]]
"""Runs a hub-internal action (kind `builtin`, e.g. a feed provider) and returns its result."""


class Engine:
    def __init__(self, *, config: HubConfig, store: Store, invoker: Invoker, entities: Entities,
                 dispatcher: Dispatcher, builtin: BuiltinHandler | None = None,
                 clock: Clock = SYSTEM_CLOCK, derive_loop: bool = False, derive_idle_s: float = IDLE_S,
                 derive_notices: DeriveNotices | None = None, route_derive: RouteDerive | None = None) -> None:
        """`builtin` runs the hub-internal actions (the feed providers) in a process that runs
        feeds; `clock` times the throttles (rates per minute, feed admission waits) and derived
        triggers' deadlines; `derive_loop` runs the loop that derives events (engine/derive.py)
        in this process (the embedded hub and distributed workers), looking at the store at least
        every `derive_idle_s` (every IDLE_S while `derive_notices` tell it of other processes'
        changes); `route_derive`, when given, takes derived triggers' source events
        instead of the store (distributed mode's Faust tables: engine/derive_table.py)."""
        self.config = config
        self.store = store
        self.invoker = invoker
        self.entities = entities
        self.dispatcher = dispatcher
        self.builtin = builtin
        # what the entity cache revalidates against, credentials do too (embedded mode)
        self.auth = Authenticator(store, cache_ttl_s=config.api.auth_cache_s,
                                  generation=entities.revalidating_generation)
        self.apis = ApiGateway(store, self.resolve)
        self._rates = RateThrottler(clock.now_ms)
        self._fire_rates = RateThrottler(clock.now_ms, limit="fires_per_minute")
        self._concurrency = ConcurrencyThrottler()
        self._feed_admission = FeedAdmission(clock.now_ms, clock.sleep)
        self._feed_held: set[str] = set()  # activation ids holding a feed admission slot
        self._unslotted: set[str] = set()  # feed-fired activation ids that took no direct concurrency slot
        self.router = Router()
        self.deliveries = Deliveries(store=store, entities=entities, submit=self._resubmit, fire=self._fire_event,
                                     limits_of=self._limits_of, clock=clock,
                                     settings=PumpSettings(poll_ms=config.limits.retry_poll_ms,
                                                           lease_ms=config.limits.retry_lease_ms))
        self.deriver = Deriver(store, entities, clock=clock, idle_s=derive_idle_s, notices=derive_notices)
        self._derive_loop = derive_loop
        self._route_derive = route_derive
        self._running = contextlib.AsyncExitStack()

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Engine:
        await self._running.enter_async_context(self.dispatcher.running(execute=self.execute, finished=self._finished))
        if self._derive_loop:
            await self._running.enter_async_context(self.deriver.running(self._deliver_derived))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._running.__aexit__(*exc_info)

    def statistics(self) -> DispatcherStatistics:
        return self.dispatcher.statistics()

    async def replay(self, identity: Identity, fqn: FullyQualifiedName, body: Any) -> dict[str, JSON]:
        """Run stored events of rule `fqn`'s trigger through the rule as it is now (engine/replay.py)."""
        return await replay_rule(self.entities, self.store, identity, fqn, body,
                                 max_events=self.config.events.replay_max_events, resolve=self.resolve,
                                 submit=self._submit_replayed)

    async def _submit_replayed(self, identity: Identity, resolved: Resolved, found: rules.Match, event: TriggerEvent,
                               trigger_params: dict[str, Any], claim: ReplayClaim) -> bool:
        """A replayed run goes the way of a feed's rule activation: it waits for room under the
        feed limits instead of meeting the per-minute limits of direct calls. It is a delivery
        like a live run's (the rule's retry policy and dead letters apply when its attempt is
        settled) and carries the same lineage annotations, under the stored event's trace."""
        delivery, annotations = self.deliveries.replayed(found, event)
        if self.config.observe.lineage:
            annotations += lineage.activation_annotations(lineage.event_traceparent(event), event.id, claim.activation_id,
                                                          found.rule, annotations)
        invocation = replace(self._invocation(identity, resolved, [trigger_params, found.params],
                                              activation_id=claim.activation_id),
                             extra_annotations=annotations, delivery=delivery)
        self._unslotted.add(invocation.activation_id)
        await self._admit_from_feed(identity.namespace, [invocation])
        return await self._submit(Acceptance(invocations=[invocation], replay=claim), [invocation])

    async def explain(self, identity: Identity, fqn: FullyQualifiedName, body: Any) -> dict[str, JSON]:
        """Why rule `fqn` would run for the event in `body`, or did not run for a stored one."""
        return await explain_rule(self.entities, self.store, identity, fqn, body)

    async def lineage(self, identity: Identity, event_id: str) -> dict[str, JSON]:
        """The chain of a trigger event (observe/lineage.py): NotFound unless it is the caller's."""
        return await event_lineage(self.store, identity, event_id, api_type=API_FIRE_TYPE)

    # ------------------------------------------------------------------ activation records
    async def find_activation(self, namespace: str, activation_id: str) -> Activation | None:
        return await self.store.get_activation(namespace, activation_id)

    async def activations(self, query: ActivationQuery) -> list[Activation]:
        return await self.store.list_activations(query)

    async def count_activations(self, query: ActivationQuery) -> int:
        return await self.store.count_activations(query)

    def _finished(self, invocation: Invocation) -> None:
        if invocation.activation_id in self._feed_held:
            self._feed_held.discard(invocation.activation_id)
            self._feed_admission.release(invocation.namespace)
        if invocation.activation_id in self._unslotted:
            self._unslotted.discard(invocation.activation_id)
        else:
            self._concurrency.release(invocation.namespace)

    # ------------------------------------------------------------------ resolution
    async def resolve(self, identity: Identity, fqn: FullyQualifiedName) -> Resolved:
        """Find the action behind `fqn`, through a package binding if need be."""
        package: Package | None = None
        binding: Package | None = None
        target = fqn
        if fqn.package is not None:
            entity = await self.entities.lookup(fqn.namespace, fqn.package)
            check_read(identity, fqn, entity if isinstance(entity, Package) else None)
            if not isinstance(entity, Package):
                raise NotFound(NOT_FOUND)
            package = entity
            if entity.binding is not None:
                binding = entity
                bound = await self.entities.lookup(entity.binding.namespace, entity.binding.name)
                if not package_readable(identity, entity, bound if isinstance(bound, Package) else None):
                    raise Forbidden(FORBIDDEN)  # the bound package was unpublished, or never shared
                if not isinstance(bound, Package):
                    raise NotFound(NOT_FOUND)
                package = bound
                target = FullyQualifiedName(bound.namespace, fqn.name, bound.name)
        else:
            check_read(identity, fqn, None)
        action = await self.entities.find(target, Action)
        if action is None:
            raise NotFound(NOT_FOUND)
        if package is None and action.exec.kind != Kind.SEQUENCE and _distinct_keys(action.parameters):
            # nothing to merge (every fire's rule and most invokes): the cached action as it is
            return Resolved(action, f"{target.path}/{target.name}", None, {})
        inherited = bound_parameters(package, binding)
        merged = {**inherited, **params_to_dict(action.parameters)}
        if action.exec.kind == Kind.SEQUENCE:
            action = replace(action, parameters=()) if action.parameters else action
        elif inherited or len(merged) != len(action.parameters):  # else the merge gives its own parameters back
            init_keys = {p.key for p in action.parameters if p.init}
            action = replace(action, parameters=tuple(Parameter(k, v, k in init_keys) for k, v in merged.items()))
        return Resolved(action, f"{target.path}/{target.name}",
                        f"{binding.namespace}/{binding.name}" if binding else None, inherited)

    def _invocation(self, identity: Identity, resolved: Resolved, layers: list[dict[str, Any]], *,
                    activation_id: str | None = None, blocking: bool = False, cause: str | None = None,
                    transaction_id: str = "", traced: bool = False, annotations: Parameters = (),
                    delivery: Delivery | None = None, received_ms: int = 0) -> Invocation:
        """`traced`: a root of its own trace (a direct invoke, a redrive); a rule activation gets its
        event's lineage annotations (in `annotations`) instead, so building a trace here would be
        wasted. `delivery`, `received_ms`: a rule activation's (model.Invocation)."""
        activation_id = activation_id or new_activation_id()
        return Invocation(
            activation_id=activation_id, action=resolved.action,
            args=merge_arguments([params_to_dict(resolved.action.parameters), *layers]),
            namespace=identity.namespace, subject=identity.subject, accepted_ms=now_ms(), cause=cause,
            blocking=blocking, path_annotation=resolved.path, binding=resolved.binding,
            transaction_id=transaction_id, init_env=_api_key_env(identity, resolved.action),
            extra_annotations=(lineage.invoke_annotations(activation_id)
                               if traced and self.config.observe.lineage else annotations),
            delivery=delivery, received_ms=received_ms,
        )

    def _admit(self, identity: Identity) -> None:
        limits = self.config.limits
        self._rates.check(identity.namespace, identity.limits.get("invocationsPerMinute", limits.invocations_per_minute))
        self._concurrency.acquire(identity.namespace, identity.limits.get("concurrentInvocations", limits.concurrent_invocations))

    def _admit_tenant(self, identity: Identity) -> bool:
        """A feed-fired rule meets only the limits an operator set for its namespace (OpenWhisk's
        defaults are for direct calls); True when it took a concurrency slot."""
        if "invocationsPerMinute" in identity.limits:
            self._rates.check(identity.namespace, identity.limits["invocationsPerMinute"])
        if "concurrentInvocations" not in identity.limits:
            return False
        self._concurrency.acquire(identity.namespace, identity.limits["concurrentInvocations"])
        return True

    # ------------------------------------------------------------------ invoke
    async def invoke(self, identity: Identity, fqn: FullyQualifiedName, payload: dict[str, Any], *,
                     blocking: bool, wait_ms: int, transaction_id: str = "") -> Activation | str:
        """Returns the finished record (blocking, in time) or the activation id (accepted)."""
        resolved = await self.resolve(identity, fqn)
        check_final(resolved.action, resolved.inherited, payload)
        self._admit(identity)
        invocation = self._invocation(identity, resolved, [payload], blocking=blocking, transaction_id=transaction_id,
                                      traced=True)
        if not blocking:
            await self._submit(Acceptance(invocations=[invocation]), [invocation])
            return invocation.activation_id
        record = await self.dispatcher.run_blocking(invocation, wait_ms)
        return invocation.activation_id if record is None else record

    async def _submit(self, acceptance: Acceptance, invocations: list[Invocation], *,
                      confirmations: list[Awaitable[None]] | None = None) -> bool:
        """Hand over to the dispatcher; the concurrency slots taken by _admit are given back
        here when nothing will run, else when each invocation finishes."""
        try:
            accepted = await self.dispatcher.submit(acceptance, invocations, confirmations=confirmations)
        except BaseException:
            for invocation in invocations:
                self._finished(invocation)
            raise
        if not accepted:
            for invocation in invocations:
                self._finished(invocation)
        return accepted

    async def execute(self, invocation: Invocation) -> Activation:
        """Run one invocation to a record without storing it (sequences store their components);
        a rule activation's retry or dead letter is kept before its record is returned."""
        record = await self._execute(invocation)
        return record if invocation.delivery is None else await self.deliveries.settle(invocation, record)

    async def _execute(self, invocation: Invocation) -> Activation:
        kind = invocation.action.exec.kind
        if kind == Kind.SEQUENCE:
            return await run_sequence(invocation, topmost=invocation.cause is None, resolve=self.resolve,
                                      execute=self.execute, store=self.store,
                                      max_length=self.config.limits.sequence_max_length)
        if kind == Kind.BUILTIN:
            return await self._run_builtin(invocation)
        return await self.invoker.invoke(invocation)

    async def _run_builtin(self, invocation: Invocation) -> Activation:
        start = now_ms()
        if self.builtin is None:
            response = ActivationResponse.error(StatusCode.WHISK_ERROR, "built-in actions are not available in this process")
        else:
            try:
                result = await self.builtin(invocation)
                response = ActivationResponse.ok(result)
            except ApiError as exc:
                response = ActivationResponse.error(StatusCode.APPLICATION_ERROR, exc.message)
        action = invocation.action
        return Activation(
            namespace=invocation.namespace, name=action.name, subject=invocation.subject,
            activation_id=invocation.activation_id, start_ms=start, end_ms=now_ms(), response=response,
            annotations=(Parameter("path", invocation.path_annotation), Parameter("kind", Kind.BUILTIN),
                         Parameter("limits", action.limits.to_json()), Parameter("timeout", False),
                         Parameter("waitTime", max(0, start - invocation.accepted_ms)))
            + lineage.inherited(invocation.extra_annotations),
            version=action.version, cause=invocation.cause,
        )

    # ------------------------------------------------------------------ fire
    async def fire(self, identity: Identity, fqn: FullyQualifiedName, payload: dict[str, Any]) -> str | None:
        """Fire through the API: the trigger activation id, or None when no rule is active (204)."""
        trigger = await self.entities.get(identity, fqn, Trigger)
        if not self.router.compiled(trigger).links and not trigger.derived:  # no active rule
            return None
        try:
            self._fire_rates.check(identity.namespace, identity.limits.get("firesPerMinute", self.config.limits.fires_per_minute))
        except ApiError:
            metrics.event_rejected(metrics.API_FEED, str(trigger.fqn), "throttled")
            raise
        event_id = new_activation_id()
        own = lineage.new_event_traceparent(event_id) if self.config.observe.lineage else None
        event = TriggerEvent(id=event_id, source=f"/api/v1/namespaces/{fqn.namespace}/triggers/{fqn.name}",
                             type=API_FIRE_TYPE, trigger=trigger.fqn, data=payload, time_ms=now_ms(),
                             subject=identity.subject, traceparent=own)  # made with its own context: no restamp
        await self.dispatcher.fire(event, lambda: self._match(trigger, event, cursor=None, own=own),
                                   key=partition_key(trigger.annotations, event, in_order=bool(trigger.derived)))
        return rules.trigger_activation_id(event)

    async def emit(self, event: TriggerEvent, cursor: tuple[str, str] | None = None, *,
                   confirmations: list[Awaitable[None]] | None = None) -> bool:
        """Match a fired event against the trigger's rules and accept the result durably.
        Used by feeds and by distributed workers. False when the event id was already accepted.
        `confirmations`: as for `Dispatcher.submit`. The event's cached reads (trigger, tenant,
        actions) revalidate against one read of the entity generation."""
        with self.entities.one_revalidation():
            trigger = await self.entities.find(event.trigger, Trigger)
            if trigger is None:
                raise NotFound(f"trigger {event.trigger} does not exist; delete its feed or recreate the trigger")
            return await self._match(trigger, event, cursor, confirmations=confirmations)

    async def _deliver_derived(self, event: TriggerEvent) -> None:
        """A derived event from the outbox, to its derived trigger's rules (its acceptance drops the row)."""
        trigger = await self.entities.find(event.trigger, Trigger)
        if trigger is None:
            log.info("derived event %s: trigger %s is gone; dropped", event.id, event.trigger)
            await self.store.delete_derived_outbox([event.id])
            return
        await self._match(trigger, event, None, from_outbox=True)

    async def _match(self, trigger: Trigger, event: TriggerEvent, cursor: tuple[str, str] | None, *,
                     confirmations: list[Awaitable[None]] | None = None, from_outbox: bool = False,
                     own: str | None = None) -> bool:
        """Route `event` through the trigger's compiled rules and accept the result in one store
        write. Rules whose filter refuses it are only counted (in that same write): no activation,
        no invocation row. `own`: the event's own traceparent when its maker knows it (an API fire)."""
        namespace = event.trigger.namespace
        feed = metrics.feed_of(event.type, api_type=API_FIRE_TYPE)
        counted = metrics.enabled()
        compiled = self.router.compiled(trigger)
        trigger_name = compiled.name if counted else ""
        metrics.event_received(feed, trigger_name)
        if not self.config.observe.lineage:
            own = None
        elif own is None:
            own = lineage.event_traceparent(event)  # the event's own traceparent
        filed = lineage.event_parameter(event.id) if own is not None else None
        tenant = await self.auth.namespace_state(namespace)
        identity = Identity(event.subject or namespace, namespace, "", "", tenant.limits)
        from_feed = event.type != API_FIRE_TYPE
        if from_feed:
            if await self._feed_admission.wait_event(namespace, self.config.limits.feed_events_per_minute):
                self.entities.renew_revalidation()  # rules and actions as they are after the wait
        routing = rules.route(compiled, event)
        trigger_params = params_to_dict(trigger.parameters)
        invocations: list[Invocation] = []
        outcomes: list[str] = []
        decisions: list[dict[str, JSON]] = []
        verdicts: list[tuple[str, str]] = []  # (rule, decision) for triggerhub_rule_decisions_total

        def decide(found: rules.Match, verdict: str, reason: str | None = None) -> None:
            if counted:
                verdicts.append((found.rule, verdict))
            if own is not None:
                decisions.append(lineage.decision(
                    found.rule, verdict, action=compiled.action_texts[found.rule], reason=reason,
                    activation_id=found.activation_id if verdict == _MATCHED else None))

        for found in routing.matched:
            refusal = _refusal(found, trigger, namespace, blocked=tenant.blocked)
            if refusal is not None:
                outcomes.append(rules.outcome_line(found, error=refusal))
                decide(found, _REFUSED, refusal)
                continue
            if found.shadow and found.error is None:
                outcomes.append(rules.shadow_line(found, trigger_params))
                decide(found, _SHADOW)
                continue
            try:
                if found.error is not None:
                    raise BadRequest(found.error)
                resolved = await self.resolve(identity, found.action)
                if not from_feed:
                    self._admit(identity)
                elif not self._admit_tenant(identity):
                    self._unslotted.add(found.activation_id)
            except ApiError as exc:
                outcomes.append(rules.outcome_line(found, error=exc.message, status_code=3 if exc.status >= 500 else 1))
                decide(found, _REFUSED, exc.message)
                continue
            delivery, annotations = self.deliveries.attach(found, compiled.links[found.rule], event, tenant.limits)
            traces = lineage.activation_annotations(own, filed or event.id, found.activation_id, found.rule,
                                                     annotations) if own is not None else ()
            invocations.append(self._invocation(identity, resolved, [trigger_params, found.params],
                                                activation_id=found.activation_id, annotations=annotations + traces,
                                                delivery=delivery, received_ms=event.time_ms))
            outcomes.append(rules.outcome_line(found))
            decide(found, _MATCHED)
        if from_feed:
            await self._admit_from_feed(namespace, invocations)
        if counted and routing.filtered:
            verdicts.extend((key, _FILTERED) for key in routing.filtered)
        if own is not None:
            for key in routing.filtered:
                decisions.append(lineage.decision(key, _FILTERED, action=compiled.action_texts[key]))
            if event.traceparent != own:  # a feed's event: its own context, and what its source sent in origin
                event = lineage.stamped(event, own, event.decisions)
        records = [rules.trigger_record(trigger, event, identity.subject, outcomes, annotations=(
            lineage.event_annotations(own, filed or event.id) if own is not None
            else ()))] if outcomes else []
        derive = await self.deriver.steps(trigger, event)
        if derive and self._route_derive is not None:  # the keyed state lives in Faust tables
            await self._route_derive(derive, confirmations)
            derive = []
        acceptance = Acceptance(event=event, invocations=invocations, activations=records, cursor=cursor,
                                matched_rules=routing.taken, filtered_rules=routing.filtered,
                                derive=derive, from_outbox=from_outbox,
                                decisions=tuple(decisions) if own is not None else None)
        accepted = await self._submit(acceptance, invocations, confirmations=confirmations)  # counts the filters' verdicts once per event
        self.deriver.accepted(derive)
        if not accepted:
            metrics.event_rejected(feed, trigger_name, "duplicate")
        elif counted:
            metrics.event_fired(feed, trigger_name, verdicts)
        if accepted and own is not None:
            otel.event_accepted(event, decisions=acceptance.decisions)
        if accepted:
            log.debug("trigger %s fired (event %s): %d rule activations, %d rules filtered it out", trigger.fqn,
                     event.id, len(invocations), len(routing.filtered))
        return accepted

    # ------------------------------------------------------------------ retries and dead letters
    async def _resubmit(self, invocations: list[Invocation]) -> None:
        """Run invocations already pending in the store (retries): no new acceptance, no slot."""
        self._unslotted.update(invocation.activation_id for invocation in invocations)
        await self._submit(Acceptance(), invocations)

    async def _fire_event(self, fqn: FullyQualifiedName, event: TriggerEvent) -> None:
        """Fire an event the hub makes itself (a dead letter) on trigger `fqn`, as feeds do."""
        trigger = await self.entities.find(fqn, Trigger)
        if trigger is None:
            log.warning("trigger %s does not exist; event %s not fired", fqn, event.id)
            return
        await self.dispatcher.fire(event, lambda: self._match(trigger, event, cursor=None),
                                   key=partition_key(trigger.annotations, event, in_order=bool(trigger.derived)))

    async def fire_derived(self, event: TriggerEvent) -> None:
        """A derived event made from Faust-table state onto its trigger, as a feed's event; returns
        once the dispatcher took it (Kafka acknowledged it)."""
        await self._fire_event(event.trigger, event)

    async def _limits_of(self, namespace: str) -> dict[str, int]:
        return (await self.auth.namespace_state(namespace)).limits

    async def redrive(self, identity: Identity, fqn: FullyQualifiedName, body: Any) -> dict[str, JSON]:
        """Run the selected dead letters of rule `fqn` again (POST …/deadletters/redrive):
        `{"activationIds": [...], "skipped": [letter ids]}`. Each run is accepted with a claim of
        its letter, refused (skipped) while another redrive of that letter is under way. A letter
        leaves the list when a run of its redrive succeeds (retried under the rule's policy)."""
        rule, letters, action = await self.deliveries.redrive_letters(identity, fqn, body)
        if not letters:
            return {"activationIds": [], "skipped": []}
        resolved = await self.resolve(identity, action)
        invocations = []
        for letter in letters:
            arguments = await self.deliveries.redrive_arguments(letter, rule)
            invocations.append(self.deliveries.redriven(letter, self._invocation(identity, resolved, [arguments],
                                                                                             traced=True)))
        self._unslotted.update(invocation.activation_id for invocation in invocations)
        async with asyncio.TaskGroup() as tasks:
            taken = [tasks.create_task(self._submit(Acceptance(invocations=[invocation], redrive=RedriveClaim(
                letter.id, invocation.activation_id)), [invocation])) for letter, invocation in zip(letters, invocations)]
        run = [i.activation_id for i, task in zip(invocations, taken) if task.result()]
        skipped = [letter.id for letter, task in zip(letters, taken) if not task.result()]
        log.info("rule %s: %d dead letters redriven to %s, %d skipped (being redriven already)", fqn, len(run),
                 action, len(skipped))
        return {"activationIds": run, "skipped": skipped}

    async def _admit_from_feed(self, namespace: str, invocations: list[Invocation]) -> None:
        """Wait for room under the feed limits; the slots are given back as for direct calls."""
        limits = self.config.limits
        await self._feed_admission.wait_activations(namespace, len(invocations),
                                                    per_minute=limits.feed_activations_per_minute,
                                                    concurrent=limits.feed_concurrent_activations)
        self._feed_held.update(invocation.activation_id for invocation in invocations)

# The decisions as plain strings: an enum member's `.value` is a Python call per use.
_MATCHED, _FILTERED, _REFUSED, _SHADOW = (verdict.value for verdict in (
    lineage.Decision.MATCHED, lineage.Decision.FILTERED, lineage.Decision.REFUSED, lineage.Decision.SHADOW))


def _distinct_keys(parameters: Parameters) -> bool:
    return len({parameter.key for parameter in parameters}) == len(parameters)


def _refusal(found: rules.Match, trigger: Trigger, namespace: str, *, blocked: bool) -> str | None:
    """Why a matched rule must not run at all, or None."""
    if blocked:
        return f"namespace {namespace} is blocked"
    if found.rule.partition("/")[0] != namespace:
        # Only written by hubs before rules were authorised (a rule naming another
        # namespace's trigger): never run another tenant's code on this trigger's events.
        log.warning("trigger %s: rule %s is in another namespace; not run, delete it", trigger.fqn, found.rule)
        return f"rule {found.rule} is not in namespace {namespace} of the trigger and is not run"
    return None


def _api_key_env(identity: Identity, action: Action) -> dict[str, str]:
    """Actions annotated provide-api-key get the caller's key (reference 2.2); others never see it."""
    if identity.key and annotation(action.annotations, "provide-api-key", False) is True:
        return {"__OW_API_KEY": identity.auth_key}
    return {}


def ensure_object(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise BadRequest("The request content was malformed: expected a JSON object.")
    return payload


__all__ = ["Engine", "Resolved", "ensure_object"]
