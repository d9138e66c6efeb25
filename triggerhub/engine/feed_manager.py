"""FeedManager: the built-in feed catalogue, the OpenWhisk feed lifecycle, and running feeds.

The hub executes its built-in feed actions in-process by calling `lifecycle()`. Which feeds exist
is not known here: the composition root passes `kinds`, one `FeedKind` per feed action, each
declared by its adapter module (feeds/kind.py). Registrations live in the store (no secret of
the caller is kept: the trigger's namespace is enough to fire in-process), so `start()` brings
every active feed back after a restart. Each feed's events go through `fire(event, cursor)`, the
engine's durable fire: it returns once event and cursor are stored, False for a duplicate event
id. A feed whose event the hub refuses for good (an ApiError, e.g. its trigger was deleted) is
paused with that reason; UNPAUSE starts it again.

Distributed mode shares the feeds among every `triggerhub feeds` process with `FeedLeases`: a
process runs a feed only while it holds the feed's lease. Every `renew_s` it renews its leases,
stops feeds whose lease it lost or whose registration changed (and releases them), gives back
what exceeds its fair share (active feeds / live processes, rounded up) and claims free or expired
leases up to that share. A killed process's leases expire after the lease length, and survivors
take its feeds over, resuming from the stored cursors. A lifecycle change handled by a process
that does not run the feed is stored first; PAUSE and DELETE then wait for the lease to come
free (its holder stops the feed at its next round). Counters go to the store in deltas, so READ
shows the sum over every process, including controllers that took webhook deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import (
    FORBIDDEN, ApiError, BadRequest, Conflict, FeedError, Forbidden, NotFound, TriggerhubError, Unavailable,
)
from triggerhub.feeds.cursor import Cursor, CursorEmit, CursorFeed, CursorLoader, CursorSaver, GaugedFeed
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext
from triggerhub.model import JSON, FullyQualifiedName, Invocation, Trigger, TriggerEvent
from triggerhub.retry import retrying
from triggerhub.store.base import FeedRegistration, Store
from triggerhub.store.leases import FeedCounts

log = logging.getLogger(__name__)

Fire = Callable[[TriggerEvent, tuple[str, str] | None], Awaitable[bool]]
ReadBody = Callable[[int], Awaitable[bytes]]
"""Reads a whole request body of at most the given bytes; raises PayloadTooLarge past it."""

LIFECYCLE_EVENTS = ("CREATE", "READ", "UPDATE", "DELETE", "PAUSE", "UNPAUSE")
RESERVED = ("lifecycleEvent", "triggerName", "authKey")
DATE_KEYS = ("startDate", "date", "stopDate")  # an UPDATE naming one of these must name a future date


@dataclass(frozen=True, slots=True)
class FeedMetrics:
    received: int = 0  # events the source handed us (deliveries, messages, instants)
    fired: int = 0  # stored and fired
    rejected: int = 0  # duplicates, bad signatures, undecodable or failed to store
    gauges: Mapping[str, int] = field(default_factory=dict)  # the running feed's source levels (GaugedFeed)


class FeedLeases(Protocol):
    """Leases and shared counters in the store (store/leases.py): which process runs each feed."""

    owner: str

    async def join(self) -> int: ...

    async def claim(self, trigger: str) -> bool: ...

    async def renew(self) -> set[str]: ...

    async def holder(self, trigger: str) -> str | None: ...

    async def release(self, triggers: Iterable[str]) -> None: ...

    async def leave(self) -> None: ...

    async def add_counts(self, trigger: str, counts: FeedCounts) -> None: ...

    async def counts(self, trigger: str) -> FeedCounts: ...

    async def drop_counts(self, trigger: str) -> None: ...


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    renew_s: float
    lease_s: float


@dataclass(frozen=True, slots=True)
class WebhookAccepted:
    """A webhook delivery that is stored and fired (the API answers 202 with its event id)."""

    id: str


def catalogue(kinds: Mapping[str, FeedKind]) -> list[BuiltinFeed]:
    """The built-in feed actions to install in /whisk.system, one per kind."""
    return [kind.catalogue for kind in kinds.values()]


class FeedManager:
    def __init__(self, store: Store, fire: Fire, *, kinds: Mapping[str, FeedKind], clock: Clock = SYSTEM_CLOCK,
                 instance_id: str = "hub", forget: Callable[[list[Any]], None] = lambda entities: None,
                 leases: FeedLeases | None = None, lease_timing: LeaseTiming | None = None) -> None:
        self._store = store
        self._forget = forget  # drops entities this manager deletes from the engine's read cache
        self._fire = fire
        self._kinds = dict(kinds)
        self._clock = clock
        self._instance_id = instance_id  # distinguishes MQTT client ids of several hub processes
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, CursorFeed] = {}
        self._metrics: dict[str, FeedMetrics] = {}
        self._lock = asyncio.Lock()  # one lifecycle change at a time
        self._leases = leases  # distributed: feeds shared among processes; None: this process runs all
        self._timing = lease_timing or LeaseTiming(renew_s=2.0, lease_s=10.0)
        self._started_ms: dict[str, int] = {}  # the registration's updated_ms each running feed started with
        self._failed: set[tuple[str, int]] = set()  # (trigger, updated_ms) that did not start here: not retried
        self._unflushed: dict[str, FeedMetrics] = {}  # counter deltas not yet added to the store
        self._renewed_s = 0.0  # monotonic time of the last renewal of our leases
        self._closing = False
        self._lease_tasks: list[asyncio.Task[None]] = []

    @property
    def kinds(self) -> Mapping[str, FeedKind]:
        return self._kinds

    # ----------------------------------------------------------------------- running

    async def start(self, tasks: asyncio.TaskGroup) -> None:
        """Start every active stored registration; feed tasks live in `tasks`."""
        self._tasks = tasks
        registrations = await self._store.list_feeds()
        if self._leases is not None:
            await self._leases.join()
            await self._balance()
            self._lease_tasks = [tasks.create_task(self._keep_leases(), name="feed leases"),
                                 tasks.create_task(self._keep_renewing(), name="feed lease renewals")]
        for registration in registrations if self._leases is None else ():
            if registration.status == "active":
                try:
                    await self._start_feed(registration)
                except TriggerhubError as exc:
                    log.warning("feed for trigger %s did not start: %s", registration.trigger, exc)
        for kind in self._kinds.values():  # e.g. report replication slots whose trigger is gone
            configs = [r.config for r in registrations if r.feed == kind.fqn]
            if kind.audit is not None and configs:
                tasks.create_task(kind.audit(configs), name=f"audit {kind.fqn}")

    async def stop(self) -> None:
        self._closing = True  # no lease round claims anything from now on
        for task in self._lease_tasks:
            task.cancel()
        for trigger in list(self._running):
            await self._stop_feed(trigger)
        if self._leases is not None:  # clean shutdown: the others take the feeds over at their next round
            try:
                await self._flush_counts()
                await self._leases.leave()
            except TriggerhubError as exc:
                log.warning("feed leases not released (they expire by themselves): %s", exc)

    async def run(self) -> None:
        """Own a TaskGroup and run the feeds until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            await self.start(tasks)
            try:
                await asyncio.Event().wait()
            finally:
                await self.stop()

    # ----------------------------------------------------------------------- leases (distributed)

    async def _keep_renewing(self) -> None:
        """Renew apart from the rounds, which may wait seconds for a feed to start: a lease must
        never expire while its feed runs here. Renewals failing for almost a lease length stop
        every feed here, before another process may claim them."""
        while True:
            await self._clock.sleep(self._timing.renew_s)
            if self._closing:
                return
            try:
                await self._renew()
            except TriggerhubError as exc:
                log.warning("feed leases not renewed: %s", exc)
                if self._clock.monotonic_s() - self._renewed_s >= self._timing.lease_s - self._timing.renew_s:
                    for trigger in list(self._running):
                        log.warning("feed of trigger %s stopped: its lease may expire unrenewed", trigger)
                        await self._stop_feed(trigger)

    async def _keep_leases(self) -> None:
        while True:
            await self._clock.sleep(self._timing.renew_s)
            try:
                async with self._lock:
                    await self._balance()
                await self._flush_counts()
            except TriggerhubError as exc:  # the store is away: tried again next round
                log.warning("feed lease round failed (feeds not rebalanced, counters kept): %s", exc)

    async def _balance(self) -> None:
        """One renewal round (under the lifecycle lock): see the module docstring."""
        assert self._leases is not None
        if self._closing:
            return
        held = await self._renew()
        live = await self._leases.join()
        registrations = {r.trigger: r for r in await self._store.list_feeds()}
        for trigger in list(self._running):
            registration = registrations.get(trigger)
            if trigger not in held:
                log.warning("lease of the feed of trigger %s was lost (not renewed in time); stopping it", trigger)
            elif registration is None or registration.status != "active":
                log.info("feed of trigger %s was deleted or paused by another process; stopping it", trigger)
            elif registration.updated_ms != self._started_ms.get(trigger):
                log.info("feed of trigger %s was updated by another process; handing it over", trigger)
            else:
                continue
            await self._stop_feed(trigger)
        active = sorted(t for t, r in registrations.items() if r.status == "active")
        share = -(-len(active) // max(live, 1))
        for trigger in sorted(self._running)[share:]:  # more than our share: give the rest back
            log.info("feed of trigger %s handed to another feeds process (share %d of %d feeds)",
                     trigger, share, len(active))
            await self._stop_feed(trigger)
        await self._leases.release(held - set(self._running))
        claimed: list[FeedRegistration] = []
        for trigger in active:
            if len(self._running) + len(claimed) >= share:
                break
            registration = registrations[trigger]
            if trigger in self._running or (trigger, registration.updated_ms) in self._failed:
                continue
            if await self._leases.claim(trigger):
                claimed.append(registration)
        async with asyncio.TaskGroup() as starts:  # together: a Kafka feed's start waits for its group
            for registration in claimed:
                starts.create_task(self._start_claimed(registration), name=f"start feed {registration.trigger}")

    async def _renew(self) -> set[str]:
        assert self._leases is not None
        held = await self._leases.renew()
        self._renewed_s = self._clock.monotonic_s()
        return held

    async def _start_claimed(self, registration: FeedRegistration) -> None:
        assert self._leases is not None
        try:
            await self._start_feed(registration)
        except TriggerhubError as exc:
            self._failed.add((registration.trigger, registration.updated_ms))
            log.warning("feed for trigger %s did not start: %s", registration.trigger, exc)
            await self._leases.release([registration.trigger])
            return
        log.info("feed for trigger %s runs here (%s)", registration.trigger, self._leases.owner)

    async def _take_lease(self, trigger: str) -> None:
        """Wait until the holder of `trigger`'s lease let go of it (it stops the feed at its next
        round, having seen the stored change) or the lease expired, and claim it."""
        assert self._leases is not None
        deadline = self._clock.monotonic_s() + self._timing.lease_s + 2 * self._timing.renew_s
        while not await self._leases.claim(trigger):
            if self._clock.monotonic_s() > deadline:
                raise Unavailable(f"the feed of trigger '{trigger}' is still running in feeds process "
                                  f"{await self._leases.holder(trigger)}; its change is stored and applies "
                                  "at that process's next lease round, or retry")
            await self._clock.sleep(min(0.1, self._timing.renew_s))

    async def _release(self, trigger: str) -> None:
        if self._leases is not None:
            await self._leases.release([trigger])

    async def _flush_counts(self, trigger: str | None = None) -> None:
        if self._leases is None:
            return
        for name in [trigger] if trigger is not None else list(self._unflushed):
            delta = self._unflushed.pop(name, None)
            if delta is None:
                continue
            try:
                await self._leases.add_counts(name, FeedCounts(delta.received, delta.fired, delta.rejected))
            except TriggerhubError:
                self._add_unflushed(name, delta)  # kept for the next round
                raise

    def _add_unflushed(self, trigger: str, delta: FeedMetrics) -> None:
        m = self._unflushed.get(trigger, FeedMetrics())
        self._unflushed[trigger] = FeedMetrics(m.received + delta.received, m.fired + delta.fired,
                                               m.rejected + delta.rejected)

    async def shared_metrics(self, trigger: str) -> FeedMetrics:
        """The counters summed over every process (distributed) or this one's (embedded)."""
        local = self.metrics(trigger)
        if self._leases is None:
            return local
        await self._flush_counts(trigger)
        stored = await self._leases.counts(trigger)
        return replace(local, received=stored.received, fired=stored.fired, rejected=stored.rejected)

    def metrics(self, trigger: str) -> FeedMetrics:
        counted = self._metrics.get(trigger, FeedMetrics())
        feed = self._running.get(trigger)
        return replace(counted, gauges=feed.gauges()) if isinstance(feed, GaugedFeed) else counted

    # ----------------------------------------------------------------------- lifecycle

    async def lifecycle(self, identity_namespace: str, auth_key: str, feed_fqn: str,
                        params: Mapping[str, JSON]) -> dict[str, JSON]:
        """Handle one feed action invocation. `auth_key` is accepted for protocol compatibility
        and never stored or logged: the hub fires in-process in the trigger's namespace."""
        event = params.get("lifecycleEvent")
        if event not in LIFECYCLE_EVENTS:
            raise BadRequest("unsupported lifecycleEvent")
        kind = self._kinds.get(feed_fqn)
        if kind is None:
            raise NotFound(f"feed '{feed_fqn}' is not a built-in feed; known: {', '.join(self._kinds)}")
        trigger = _trigger_name(params.get("triggerName"), identity_namespace)
        user_params = {k: v for k, v in params.items() if k not in RESERVED}
        async with self._lock:
            if event == "CREATE":
                return await self._create(trigger, kind, user_params)
            registration = await self._store.get_feed(trigger)
            if registration is None or registration.feed != feed_fqn:
                raise NotFound(f"trigger '{trigger}' has no {feed_fqn} feed; create it with lifecycleEvent CREATE")
            if event == "READ":
                return await self._read(registration, kind)
            if event == "UPDATE":
                return await self._update(registration, kind, user_params)
            if event == "DELETE":
                return await self._delete(registration, kind)
            return await self._set_paused(registration, paused=event == "PAUSE")

    async def _create(self, trigger: str, kind: FeedKind, params: dict[str, JSON]) -> dict[str, JSON]:
        existing = await self._store.get_feed(trigger)
        if existing is not None:
            raise Conflict(f"trigger '{trigger}' already has a {existing.feed} feed; DELETE it first or send UPDATE")
        config = self._parse(kind, trigger, params, require_future=True)
        stamp = self._clock.now_ms()
        registration = FeedRegistration(trigger=trigger, feed=kind.fqn, namespace=trigger.split("/")[1],
                                        config=config, created_ms=stamp, updated_ms=stamp)
        if self._leases is not None:  # before the registration exists, so no other process claims it
            await self._take_lease(trigger)
            await self._leases.drop_counts(trigger)  # a feed of the same name may have existed before
        await self._store.put_feed(registration)
        await self._stop_feed(trigger)  # one whose registration vanished without a DELETE (store emptied)
        try:
            await self._start_feed(registration)
        except FeedError as exc:  # e.g. the MQTT broker refused: CREATE fails, nothing stays behind
            await self._store.delete_feed(trigger)
            if self._leases is not None:
                await self._leases.release([trigger])
            raise BadRequest(f"feed {kind.fqn} for trigger '{trigger}' could not start: {exc}") from exc
        log.info("feed %s for trigger %s created", kind.fqn, trigger)
        return {"triggerName": trigger, "status": "active", **kind.created(trigger)}

    async def _update(self, registration: FeedRegistration, kind: FeedKind,
                      params: dict[str, JSON]) -> dict[str, JSON]:
        merged = {**registration.config, **params}
        dates_given = any(k in params for k in DATE_KEYS)
        config = self._parse(kind, registration.trigger, merged, require_future=dates_given)
        updated = replace(registration, config=config, updated_ms=self._clock.now_ms())
        await self._stop_feed(registration.trigger)
        await self._store.put_feed(updated)
        if updated.status == "active" and self._leases is None:
            await self._start_feed(updated)
        elif updated.status == "active":  # its holder, if another process, hands it over at its next round
            await self._take_lease(registration.trigger)
            try:
                await self._start_feed(updated)
            except BaseException:
                await self._release(registration.trigger)
                raise
        log.info("feed %s for trigger %s updated", registration.feed, registration.trigger)
        return {"triggerName": registration.trigger, "status": updated.status}

    async def _delete(self, registration: FeedRegistration, kind: FeedKind) -> dict[str, JSON]:
        trigger = registration.trigger
        await self._stop_feed(trigger)
        if self._leases is not None:  # paused first: whichever process runs it stops it and lets go
            if registration.status == "active":
                await self._store.put_feed(replace(registration, status="paused", reason="being deleted",
                                                   updated_ms=self._clock.now_ms()))
            await self._take_lease(trigger)
        if kind.uninstall is not None:
            await kind.uninstall(registration.config, trigger)
        await self._store.delete_feed(trigger)
        self._metrics.pop(trigger, None)
        if self._leases is not None:
            self._unflushed.pop(trigger, None)
            await self._leases.drop_counts(trigger)
            await self._leases.release([trigger])
        log.info("feed %s for trigger %s deleted", kind.fqn, trigger)
        return {"triggerName": trigger, "status": "deleted"}

    async def _set_paused(self, registration: FeedRegistration, *, paused: bool) -> dict[str, JSON]:
        status, reason = ("paused", "paused by PAUSE") if paused else ("active", "")
        updated = replace(registration, status=status, reason=reason, updated_ms=self._clock.now_ms())
        await self._store.put_feed(updated)
        if paused:
            await self._stop_feed(registration.trigger)
            if self._leases is not None:  # returns once no process runs it
                await self._take_lease(registration.trigger)
                await self._leases.release([registration.trigger])
        elif self._leases is None:
            await self._start_feed(updated)
        else:
            await self._take_lease(registration.trigger)
            await self._start_claimed(updated)
        log.info("feed for trigger %s is %s", registration.trigger, status)
        return {"triggerName": registration.trigger, "status": status}

    async def _read(self, registration: FeedRegistration, kind: FeedKind) -> dict[str, JSON]:
        changed = registration.updated_ms
        metrics = await self.shared_metrics(registration.trigger)
        extra = await kind.report(registration.config, self._loader(registration.trigger)) if kind.report else {}
        counters = extra.pop("metrics", None)  # a feed's own durable counters join the metrics
        return {**extra,
            "config": {"name": registration.trigger.split("/")[2], "namespace": registration.namespace,
                       **kind.redacted(registration.config)},
            "status": {"active": registration.status == "active", "dateChanged": changed,
                       "dateChangedISO": datetime.fromtimestamp(changed / 1000, timezone.utc).isoformat(
                           timespec="milliseconds").replace("+00:00", "Z"),
                       "reason": registration.reason},
            "metrics": {"received": metrics.received, "fired": metrics.fired, "rejected": metrics.rejected,
                        **metrics.gauges, **(counters if isinstance(counters, dict) else {})},
        }

    def _parse(self, kind: FeedKind, trigger: str, params: Mapping[str, JSON], *,
               require_future: bool) -> dict[str, JSON]:
        """The config stored for a registration (validated, dates resolved), or BadRequest."""
        return kind.parse(params, ParseContext(trigger=trigger, now_ms=self._clock.now_ms(),
                                               require_future=require_future))

    # ----------------------------------------------------------------------- adapters

    async def _start_feed(self, registration: FeedRegistration) -> None:
        if registration.trigger in self._running:
            return
        if self._tasks is None:
            raise TriggerhubError("FeedManager.start(tasks) must run before feeds can start")
        kind = self._kinds.get(registration.feed)
        if kind is None:
            raise FeedError(f"feed {registration.feed} of trigger {registration.trigger} is not a built-in feed of "
                            f"this hub (known: {', '.join(self._kinds)}); DELETE it")
        feed = kind.build(registration.config, self._context(registration, self._tasks))
        await feed.start(self._emit_for(registration.trigger))
        self._running[registration.trigger] = feed
        self._started_ms[registration.trigger] = registration.updated_ms

    async def _stop_feed(self, trigger: str) -> None:
        feed = self._running.pop(trigger, None)
        self._started_ms.pop(trigger, None)
        if feed is not None:
            await feed.stop()

    def _context(self, registration: FeedRegistration, tasks: asyncio.TaskGroup) -> FeedContext:
        trigger = registration.trigger

        async def on_finished(reason: str) -> None:
            await self._finished(trigger, reason)

        def on_failed(reason: str) -> None:
            tasks.create_task(self._suspend(trigger, reason), name=f"pause feed {trigger}")

        return FeedContext(trigger=trigger, feed=registration.feed, clock=self._clock, tasks=tasks,
                           load_cursor=self._loader(trigger), save_cursor=self._saver(trigger),
                           instance_id=self._instance_id,
                           not_before_ms=registration.updated_ms, on_finished=on_finished, on_failed=on_failed)

    def _emit_for(self, trigger: str) -> CursorEmit:
        async def emit(event: TriggerEvent, cursor: Cursor | None = None) -> bool:
            self._count(trigger, received=1)
            full = (f"{trigger}#{cursor[0]}", cursor[1]) if cursor is not None else None
            try:
                stored = await self._fire(event, full)
            except BaseException:
                self._count(trigger, rejected=1)
                raise
            self._count(trigger, fired=int(stored), rejected=int(not stored))
            return stored
        return emit

    def _loader(self, trigger: str) -> CursorLoader:
        async def load(key: str) -> str | None:
            return await self._store.get_cursor(f"{trigger}#{key}")
        return load

    def _saver(self, trigger: str) -> CursorSaver:
        async def save(key: str, value: str) -> None:
            await self._store.set_cursor(f"{trigger}#{key}", value)
        return save

    def _count(self, trigger: str, *, received: int = 0, fired: int = 0, rejected: int = 0) -> None:
        m = self._metrics.get(trigger, FeedMetrics())
        self._metrics[trigger] = FeedMetrics(m.received + received, m.fired + fired, m.rejected + rejected)
        if self._leases is not None:
            self._add_unflushed(trigger, FeedMetrics(received, fired, rejected))

    async def _suspend(self, trigger: str, reason: str) -> None:
        """The hub refused one of the feed's events for good: stop the feed and pause it with the reason."""
        async with self._lock:
            await self._stop_feed(trigger)
            registration = await retrying(f"reading the feed of trigger {trigger}",
                                          lambda: self._store.get_feed(trigger), clock=self._clock)
            if registration is None or registration.status != "active":
                return
            paused = replace(registration, status="paused", reason=reason, updated_ms=self._clock.now_ms())
            await retrying(f"pausing the feed of trigger {trigger}", lambda: self._store.put_feed(paused),
                           clock=self._clock)
        log.warning("feed for trigger %s paused: %s", trigger, reason)

    async def _finished(self, trigger: str, reason: str) -> None:
        """A schedule ran out: disable the feed, and honour deleteAfterFire for `once` (every step
        is idempotent, so a store outage retries the whole)."""
        self._running.pop(trigger, None)  # its task is ending by itself; do not cancel it
        await retrying(f"finishing the feed of trigger {trigger}", lambda: self._finish(trigger, reason),
                       clock=self._clock)

    async def _finish(self, trigger: str, reason: str) -> None:
        registration = await self._store.get_feed(trigger)
        if registration is None:
            return
        delete = str(registration.config.get("deleteAfterFire", "false"))
        if delete == "false":
            await self._store.put_feed(replace(registration, status="disabled", reason=reason,
                                               updated_ms=self._clock.now_ms()))
            log.info("feed for trigger %s disabled: %s", trigger, reason)
            return
        await self._store.delete_feed(trigger)
        await self._delete_trigger(trigger, with_rules=delete == "rules")

    async def _delete_trigger(self, trigger: str, *, with_rules: bool) -> None:
        namespace, name = trigger.split("/")[1:3]
        entity = await self._store.get_entity(namespace, name)
        if not isinstance(entity, Trigger):
            return
        deletes: list[Any] = [entity]
        if with_rules:
            for rule_fqn in entity.rules:
                path, _, rule_name = rule_fqn.rpartition("/")
                rule = await self._store.get_entity(path, rule_name)
                if rule is not None:
                    deletes.append(rule)
        await self._store.put_entities([], deletes=deletes)
        self._forget(deletes)
        log.info("trigger %s deleted after its once alarm fired (%d rules too)", trigger, len(deletes) - 1)

    async def run_builtin(self, invocation: Invocation) -> dict[str, JSON]:
        """The engine's handler for built-in feed actions (kind `builtin`)."""
        args = invocation.args if isinstance(invocation.args, dict) else {}
        return await self.lifecycle(invocation.namespace, str(args.get("authKey", "")),
                                    "/" + invocation.path_annotation, args)

    # ----------------------------------------------------------------------- webhooks

    async def handle_webhook(self, namespace: str, trigger: str, headers: Mapping[str, str],
                             read_body: ReadBody) -> WebhookAccepted:
        """POST /hooks/{namespace}/{trigger}: accepted once stored; otherwise raises the ApiError to
        answer (400 undecodable, 401 unsigned, 404 no active webhook feed, 409 replay, 413 too large).
        The body is read only once the feed is known, up to its limit."""
        name = f"/{namespace}/{trigger}"
        registration = await self._store.get_feed(name)
        kind = self._kinds.get(registration.feed) if registration is not None else None
        handling = kind.webhook if kind is not None else None
        if registration is None or handling is None:
            raise NotFound(f"trigger '{name}' has no webhook feed; create one with --feed "
                           f"{_webhook_feeds(self._kinds.values())}")
        if registration.status != "active":
            raise NotFound(f"the webhook feed of trigger '{name}' is {registration.status}; UNPAUSE it")
        try:
            raw_body = await read_body(handling.body_limit_bytes(registration.config))
            event = handling.event(registration.config, name, headers, raw_body, self._clock.now_ms())
        except ApiError as exc:
            self._count(name, received=1, rejected=1)
            await self._flush_counts(name)
            log.info("webhook delivery for %s refused (%d): %s", name, exc.status, exc.message)
            raise
        try:
            stored = await self._emit_for(name)(event)
        finally:
            await self._flush_counts(name)  # counted in the store before the caller hears back
        if not stored:
            raise Conflict(handling.replay_message(registration.config, name, headers, event.id))
        return WebhookAccepted(event.id)


def _webhook_feeds(kinds: Iterable[FeedKind]) -> str:
    return " or ".join(kind.fqn for kind in kinds if kind.webhook is not None) or "a webhook feed"


def _trigger_name(value: JSON, identity_namespace: str) -> str:
    """'/ns/name' (or 'ns/name', or 'name' in the caller's namespace), owned by the caller."""
    if not isinstance(value, str) or not value.strip("/"):
        raise BadRequest("feed invocations must include a triggerName parameter like /namespace/trigger")
    text = value if value.startswith("/") else f"/{value}" if "/" in value else f"/{identity_namespace}/{value}"
    try:
        fqn = FullyQualifiedName.parse(text, identity_namespace)
    except ValueError as exc:
        raise BadRequest(f"triggerName '{value}': {exc}") from None
    if fqn.package is not None:
        raise BadRequest(f"triggerName '{value}' must be /namespace/trigger; triggers are not in packages")
    if fqn.namespace != identity_namespace:
        raise Forbidden(FORBIDDEN)
    return str(fqn)
