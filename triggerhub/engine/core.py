"""The engine: accepts invokes and fires durably, runs them, and records exactly one activation each.

Accepting (store.accept) happens before any 202 is answered; running happens in tasks owned by
the engine's TaskGroup; finishing is store.complete(), which refuses a second record for an id.
After a crash, `__aenter__` re-runs every accepted invocation that has no record yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from triggerhub.config import HubConfig
from triggerhub.errors import NOT_FOUND, ApiError, BadRequest, Forbidden, NotFound, TriggerhubError
from triggerhub.model import (
    Action, Activation, ActivationResponse, Collection, FullyQualifiedName, Identity, Invocation,
    Package, Parameter, RuleStatus, StatusCode, Trigger, TriggerEvent, annotation,
    new_activation_id, now_ms, params_to_dict,
)
from triggerhub.engine import kinds
from triggerhub.engine.auth import Authenticator
from triggerhub.engine.entities import Entities
from triggerhub.engine.resolve import bound_parameters, check_final, check_read
from triggerhub.engine.sequences import run_sequence
from triggerhub.engine.throttle import ConcurrencyThrottler, RateThrottler
from triggerhub.invoker.base import Invoker
from triggerhub.store.base import Acceptance, Store

log = logging.getLogger(__name__)

BuiltinHandler = Callable[[Invocation], Awaitable[Any]]
"""Runs a hub-internal action (kind `builtin`, e.g. a feed provider) and returns its result."""


@dataclass(frozen=True, slots=True)
class Resolved:
    action: Action  # parameters: package < binding < action, already merged
    path: str  # the `path` annotation: ns[/pkg]/name of the action itself
    binding: str | None
    inherited: dict[str, Any]  # package and binding parameters (for `final`)


class Engine:
    def __init__(self, config: HubConfig, store: Store, invoker: Invoker) -> None:
        self.config = config
        self.store = store
        self.invoker = invoker
        self.entities = Entities(store, config.limits)
        self.auth = Authenticator(store)
        self.builtin: BuiltinHandler | None = None
        self._rates = RateThrottler(now_ms)
        self._fire_rates = RateThrottler(now_ms)
        self._concurrency = ConcurrencyThrottler()
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, asyncio.Task[Activation | None]] = {}

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Engine:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        recovered = await self.store.list_pending()
        for invocation in recovered:
            self._concurrency.force_acquire(invocation.namespace)
            self._start(invocation)
        if recovered:
            log.info("recovered %d accepted activations without a record", len(recovered))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None
        for task in list(self._running.values()):
            task.cancel()
        await self._tasks.__aexit__(*exc_info)
        self._tasks = None

    def statistics(self) -> dict[str, int]:
        return {"running": len(self._running)}

    # ------------------------------------------------------------------ resolution
    async def resolve(self, identity: Identity, fqn: FullyQualifiedName) -> Resolved:
        """Find the action behind `fqn`, through a package binding if need be."""
        package: Package | None = None
        binding: Package | None = None
        target = fqn
        if fqn.package is not None:
            entity = await self.store.get_entity(fqn.namespace, fqn.package)
            check_read(identity, fqn, entity if isinstance(entity, Package) else None)
            if not isinstance(entity, Package):
                raise NotFound(NOT_FOUND)
            package = entity
            if entity.binding is not None:
                binding = entity
                bound = await self.store.get_entity(entity.binding.namespace, entity.binding.name)
                if not isinstance(bound, Package):
                    raise NotFound(NOT_FOUND)
                package = bound
                target = FullyQualifiedName(bound.namespace, fqn.name, bound.name)
        else:
            check_read(identity, fqn, None)
        action = await self.entities.find(target, Collection.ACTIONS)
        if not isinstance(action, Action):
            raise NotFound(NOT_FOUND)
        inherited = bound_parameters(package, binding)
        merged = {**inherited, **params_to_dict(action.parameters)}
        init_keys = {p.key for p in action.parameters if p.init}
        parameters = tuple(Parameter(k, v, k in init_keys) for k, v in merged.items())
        if action.exec.kind == kinds.SEQUENCE:
            parameters = ()
        return Resolved(replace(action, parameters=parameters), f"{target.path}/{target.name}",
                        f"{binding.namespace}/{binding.name}" if binding else None, inherited)

    def _invocation(self, identity: Identity, resolved: Resolved, layers: list[dict[str, Any]], *,
                    activation_id: str | None = None, blocking: bool = False, cause: str | None = None,
                    transaction_id: str = "") -> Invocation:
        args: dict[str, Any] = dict(params_to_dict(resolved.action.parameters))
        for layer in layers:
            args.update(layer)
        return Invocation(
            activation_id=activation_id or new_activation_id(), action=resolved.action, args=args,
            namespace=identity.namespace, subject=identity.subject, accepted_ms=now_ms(), cause=cause,
            blocking=blocking, path_annotation=resolved.path, binding=resolved.binding,
            transaction_id=transaction_id, init_env=_api_key_env(identity, resolved.action),
        )

    def _admit(self, identity: Identity) -> None:
        limits = self.config.limits
        self._rates.check(identity.namespace, identity.limits.get("invocationsPerMinute", limits.invocations_per_minute))
        self._concurrency.acquire(identity.namespace, identity.limits.get("concurrentInvocations", limits.concurrent_invocations))

    # ------------------------------------------------------------------ invoke
    async def invoke(self, identity: Identity, fqn: FullyQualifiedName, payload: dict[str, Any], *,
                     blocking: bool, wait_ms: int, transaction_id: str = "") -> Activation | str:
        """Returns the finished record (blocking, in time) or the activation id (accepted)."""
        resolved = await self.resolve(identity, fqn)
        check_final(resolved.action, resolved.inherited, payload)
        self._admit(identity)
        invocation = self._invocation(identity, resolved, [payload], blocking=blocking, transaction_id=transaction_id)
        if not blocking:
            await self._accept(Acceptance(invocations=[invocation]), [invocation])
            return invocation.activation_id
        task = self._start(invocation)
        try:
            async with asyncio.timeout(wait_ms / 1000):
                record = await asyncio.shield(task)
        except TimeoutError:
            # The caller now holds an id it was promised: make it durable before answering.
            await self.store.accept(Acceptance(invocations=[invocation]))
            return invocation.activation_id
        if record is None:
            return invocation.activation_id
        return record

    async def _accept(self, acceptance: Acceptance, to_run: list[Invocation]) -> bool:
        try:
            accepted = await self.store.accept(acceptance)
        except BaseException:
            for invocation in to_run:
                self._concurrency.release(invocation.namespace)
            raise
        if not accepted:
            for invocation in to_run:
                self._concurrency.release(invocation.namespace)
            return False
        for invocation in to_run:
            self._start(invocation)
        return True

    def _start(self, invocation: Invocation) -> asyncio.Task[Activation | None]:
        if self._tasks is None:
            raise TriggerhubError("the engine is not running; use `async with engine:`")
        existing = self._running.get(invocation.activation_id)
        if existing is not None:
            return existing
        task = self._tasks.create_task(self._run(invocation))
        self._running[invocation.activation_id] = task
        return task

    async def _run(self, invocation: Invocation) -> Activation | None:
        try:
            record = await self.execute(invocation)
            stored = await self.store.complete(record)
            if stored:
                log.info("activation %s of %s ended: %s", record.activation_id, invocation.path_annotation,
                         record.response.status_code.text)
            return record
        except asyncio.CancelledError:
            raise
        except Exception:  # a task failure must not tear down the TaskGroup; the pending row stays
            log.exception("activation %s of %s failed to complete; it stays pending",
                          invocation.activation_id, invocation.path_annotation)
            return None
        finally:
            self._concurrency.release(invocation.namespace)
            self._running.pop(invocation.activation_id, None)

    async def execute(self, invocation: Invocation) -> Activation:
        """Run one invocation to a record without storing it (sequences store their components)."""
        kind = invocation.action.exec.kind
        if kind == kinds.SEQUENCE:
            return await run_sequence(self, invocation, topmost=invocation.cause is None)
        if kind == kinds.BUILTIN:
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
            annotations=(Parameter("path", invocation.path_annotation), Parameter("kind", kinds.BUILTIN),
                         Parameter("limits", action.limits.to_json()), Parameter("timeout", False),
                         Parameter("waitTime", max(0, start - invocation.accepted_ms))),
            version=action.version, cause=invocation.cause,
        )

    # ------------------------------------------------------------------ fire
    async def fire(self, identity: Identity, fqn: FullyQualifiedName, payload: dict[str, Any]) -> str | None:
        """Fire through the API: the trigger activation id, or None when no rule is active (204)."""
        trigger = await self.entities.get(identity, fqn, Collection.TRIGGERS)
        assert isinstance(trigger, Trigger)
        if not _active_rules(trigger):
            return None
        self._fire_rates.check(identity.namespace, identity.limits.get("firesPerMinute", self.config.limits.fires_per_minute))
        activation_id = new_activation_id()
        event = TriggerEvent(id=activation_id, source=f"/api/v1/namespaces/{fqn.namespace}/triggers/{fqn.name}",
                             type="org.openwhisk.trigger.fire", trigger=fqn, data=payload, time_ms=now_ms())
        await self._fire(identity, trigger, event, activation_id, cursor=None)
        return activation_id

    async def emit(self, event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        """Fire from a feed. Durable on return; False when the event id was already accepted."""
        trigger = await self.entities.find(event.trigger, Collection.TRIGGERS)
        if not isinstance(trigger, Trigger):
            raise NotFound(f"trigger {event.trigger} does not exist; delete its feed or recreate the trigger")
        identity = Identity(event.trigger.namespace, event.trigger.namespace, "", "")
        return await self._fire(identity, trigger, event, new_activation_id(), cursor)

    async def _fire(self, identity: Identity, trigger: Trigger, event: TriggerEvent, activation_id: str,
                    cursor: tuple[str, str] | None) -> bool:
        payload = event.data if isinstance(event.data, dict) else ({} if event.data is None else {"payload": event.data})
        trigger_params = params_to_dict(trigger.parameters)
        invocations: list[Invocation] = []
        outcomes: list[str] = []
        for rule_key, link in _active_rules(trigger).items():
            outcome: dict[str, Any] = {"rule": rule_key, "action": f"{link.action.path}/{link.action.name}"}
            try:
                resolved = await self.resolve(identity, link.action)
                self._admit(identity)
            except ApiError as exc:
                outcome.update({"statusCode": 3 if exc.status >= 500 else 1, "success": False, "error": exc.message})
            else:
                invocation = self._invocation(identity, resolved, [trigger_params, payload])
                invocations.append(invocation)
                outcome.update({"statusCode": 0, "success": True, "activationId": invocation.activation_id})
            outcomes.append(json.dumps(outcome, separators=(",", ":")))
        records = []
        if outcomes:
            records.append(Activation(
                namespace=identity.namespace, name=trigger.name, subject=identity.subject,
                activation_id=activation_id, start_ms=event.time_ms or now_ms(), end_ms=0,
                response=ActivationResponse.ok(payload), logs=tuple(outcomes), version=trigger.version,
            ))
        accepted = await self._accept(Acceptance(event=event, invocations=invocations, activations=records, cursor=cursor),
                                      invocations)
        if accepted:
            log.info("trigger %s fired (activation %s): %d rule activations", trigger.fqn, activation_id, len(invocations))
        return accepted


def _api_key_env(identity: Identity, action: Action) -> dict[str, str]:
    """Actions annotated provide-api-key get the caller's key (reference 2.2); others never see it."""
    if identity.key and annotation(action.annotations, "provide-api-key", False) is True:
        return {"__OW_API_KEY": identity.auth_key}
    return {}


def _active_rules(trigger: Trigger) -> dict[str, Any]:
    return {k: v for k, v in trigger.rules.items() if v.status is RuleStatus.ACTIVE}


def ensure_object(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise BadRequest("The request content was malformed: expected a JSON object.")
    return payload


__all__ = ["Engine", "Resolved", "ensure_object", "Forbidden", "annotation"]
