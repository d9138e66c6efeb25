"""FeedManager: the built-in feed catalogue, the OpenWhisk feed lifecycle, and running feeds.

The hub executes its built-in feed actions in-process by calling `lifecycle()`. Registrations
live in the store (no secret of the caller is kept: the trigger's namespace is enough to fire
in-process), so `start()` brings every active feed back after a restart. Each feed's events go
through `fire(event, cursor)`, the engine's durable fire: it returns once event and cursor are
stored, False for a duplicate event id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from triggerhub.engine.bootstrap import BuiltinFeed
from triggerhub.errors import (
    FORBIDDEN, ApiError, BadRequest, Conflict, FeedError, Forbidden, NotFound, TriggerhubError,
)
from triggerhub.feeds import alarms, files, mqtt, postgres, webhook
from triggerhub.feeds.clock import Clock, SystemClock, now_ms
from triggerhub.feeds.cursor import Cursor, CursorEmit, CursorFeed, CursorLoader
from triggerhub.model import JSON, FullyQualifiedName, Invocation, Trigger, TriggerEvent
from triggerhub.store.base import FeedRegistration, Store

log = logging.getLogger(__name__)

Fire = Callable[[TriggerEvent, tuple[str, str] | None], Awaitable[bool]]
ReadBody = Callable[[int], Awaitable[bytes]]
"""Reads a whole request body of at most the given bytes; raises PayloadTooLarge past it."""

ALARM, INTERVAL, ONCE = "/whisk.system/alarms/alarm", "/whisk.system/alarms/interval", "/whisk.system/alarms/once"
MQTT, WEBHOOK, FILES = "/whisk.system/mqtt/subscribe", "/whisk.system/webhook/webhook", "/whisk.system/files/watch"
POSTGRES = "/whisk.system/postgres/changes"
LIFECYCLE_EVENTS = ("CREATE", "READ", "UPDATE", "DELETE", "PAUSE", "UNPAUSE")
RESERVED = ("lifecycleEvent", "triggerName", "authKey")
SECRET_KEYS = ("secret", "password")

BUILTIN_FEEDS: dict[str, BuiltinFeed] = {
    ALARM: BuiltinFeed("alarms", "alarm", "Fire a trigger on a cron schedule (IANA timezone, DST-safe)",
                       ("cron", "timezone", "startDate", "stopDate", "strict", "trigger_payload", "catchUp",
                        "catchUpMax"), {"trigger_payload": ""}),
    INTERVAL: BuiltinFeed("alarms", "interval", "Fire a trigger every N minutes",
                          ("minutes", "startDate", "stopDate", "trigger_payload", "catchUp", "catchUpMax"),
                          {"trigger_payload": ""}),
    ONCE: BuiltinFeed("alarms", "once", "Fire a trigger once at a date",
                      ("date", "deleteAfterFire", "trigger_payload"), {"trigger_payload": ""}),
    MQTT: BuiltinFeed("mqtt", "subscribe", "Fire a trigger for every MQTT message on the given topic filters",
                      ("url", "topics", "qos", "username", "password", "clientId", "shareGroup", "retained",
                       "payloadEncoding", "protocol", "caFile", "certFile", "keyFile", "insecure")),
    WEBHOOK: BuiltinFeed("webhook", "webhook",
                         "Fire a trigger for every verified POST to /hooks/{namespace}/{trigger}",
                         ("verify", "secret", "header", "algorithm", "encoding", "prefix", "idHeader",
                          "toleranceS", "maxBodyBytes")),
    FILES: BuiltinFeed("files", "watch", "Fire a trigger when files in a directory are created, modified, "
                       "deleted or moved", ("directory", "patterns", "kinds", "debounceMs", "recursive")),
    POSTGRES: BuiltinFeed("postgres", "changes", "Fire a trigger for every committed INSERT, UPDATE or DELETE "
                          "of a PostgreSQL table", ("dsn", "table", "operations", "columns")),
}
_ALARM_KINDS = {ALARM: alarms.AlarmKind.ALARM, INTERVAL: alarms.AlarmKind.INTERVAL, ONCE: alarms.AlarmKind.ONCE}


@dataclass(frozen=True, slots=True)
class FeedMetrics:
    received: int = 0  # events the source handed us (deliveries, messages, instants)
    fired: int = 0  # stored and fired
    rejected: int = 0  # duplicates, bad signatures, undecodable or failed to store


class FeedManager:
    def __init__(self, store: Store, fire: Fire, clock: Clock | None = None, *, instance_id: str = "hub",
                 forget: Callable[[list[Any]], None] = lambda entities: None) -> None:
        self._store = store
        self._forget = forget  # drops entities this manager deletes from the engine's read cache
        self._fire = fire
        self._clock: Clock = clock or SystemClock()
        self._instance_id = instance_id  # distinguishes MQTT client ids of several hub processes
        self._tasks: asyncio.TaskGroup | None = None
        self._running: dict[str, CursorFeed] = {}
        self._metrics: dict[str, FeedMetrics] = {}
        self._lock = asyncio.Lock()  # one lifecycle change at a time

    # ----------------------------------------------------------------------- running

    async def start(self, tasks: asyncio.TaskGroup) -> None:
        """Start every active stored registration; feed tasks live in `tasks`."""
        self._tasks = tasks
        for registration in await self._store.list_feeds():
            if registration.status == "active":
                try:
                    await self._start_feed(registration)
                except TriggerhubError as exc:
                    log.warning("feed for trigger %s did not start: %s", registration.trigger, exc)

    async def stop(self) -> None:
        for trigger in list(self._running):
            await self._stop_feed(trigger)

    async def run(self) -> None:
        """Own a TaskGroup and run the feeds until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            await self.start(tasks)
            try:
                await asyncio.Event().wait()
            finally:
                await self.stop()

    def metrics(self, trigger: str) -> FeedMetrics:
        return self._metrics.get(trigger, FeedMetrics())

    # ----------------------------------------------------------------------- lifecycle

    async def lifecycle(self, identity_namespace: str, auth_key: str, feed_fqn: str,
                        params: Mapping[str, JSON]) -> dict[str, JSON]:
        """Handle one feed action invocation. `auth_key` is accepted for protocol compatibility
        and never stored or logged: the hub fires in-process in the trigger's namespace."""
        event = params.get("lifecycleEvent")
        if event not in LIFECYCLE_EVENTS:
            raise BadRequest("unsupported lifecycleEvent")
        if feed_fqn not in BUILTIN_FEEDS:
            raise NotFound(f"feed '{feed_fqn}' is not a built-in feed; known: {', '.join(BUILTIN_FEEDS)}")
        trigger = _trigger_name(params.get("triggerName"), identity_namespace)
        user_params = {k: v for k, v in params.items() if k not in RESERVED}
        async with self._lock:
            if event == "CREATE":
                return await self._create(trigger, feed_fqn, user_params)
            registration = await self._store.get_feed(trigger)
            if registration is None or registration.feed != feed_fqn:
                raise NotFound(f"trigger '{trigger}' has no {feed_fqn} feed; create it with lifecycleEvent CREATE")
            if event == "READ":
                return self._read(registration)
            if event == "UPDATE":
                return await self._update(registration, user_params)
            if event == "DELETE":
                await self._stop_feed(trigger)
                if feed_fqn == POSTGRES:
                    await _uninstall_postgres(registration)
                await self._store.delete_feed(trigger)
                self._metrics.pop(trigger, None)
                log.info("feed %s for trigger %s deleted", feed_fqn, trigger)
                return {"triggerName": trigger, "status": "deleted"}
            return await self._set_paused(registration, paused=event == "PAUSE")

    async def _create(self, trigger: str, feed_fqn: str, params: dict[str, JSON]) -> dict[str, JSON]:
        existing = await self._store.get_feed(trigger)
        if existing is not None:
            raise Conflict(f"trigger '{trigger}' already has a {existing.feed} feed; DELETE it first or send UPDATE")
        config = self._validate(feed_fqn, trigger, params, require_future=True)
        stamp = now_ms(self._clock)
        registration = FeedRegistration(trigger=trigger, feed=feed_fqn, namespace=trigger.split("/")[1],
                                        config=config, created_ms=stamp, updated_ms=stamp)
        await self._store.put_feed(registration)
        try:
            await self._start_feed(registration)
        except FeedError as exc:  # e.g. the MQTT broker refused: CREATE fails, nothing stays behind
            await self._store.delete_feed(trigger)
            raise BadRequest(f"feed {feed_fqn} for trigger '{trigger}' could not start: {exc}") from exc
        log.info("feed %s for trigger %s created", feed_fqn, trigger)
        out: dict[str, JSON] = {"triggerName": trigger, "status": "active"}
        if feed_fqn == WEBHOOK:
            out["url"] = f"/hooks{trigger}"
        return out

    async def _update(self, registration: FeedRegistration, params: dict[str, JSON]) -> dict[str, JSON]:
        merged = {**registration.config, **params}
        dates_given = any(k in params for k in ("startDate", "date", "stopDate"))
        config = self._validate(registration.feed, registration.trigger, merged, require_future=dates_given)
        updated = replace(registration, config=config, updated_ms=now_ms(self._clock))
        await self._stop_feed(registration.trigger)
        await self._store.put_feed(updated)
        if updated.status == "active":
            await self._start_feed(updated)
        log.info("feed %s for trigger %s updated", registration.feed, registration.trigger)
        return {"triggerName": registration.trigger, "status": updated.status}

    async def _set_paused(self, registration: FeedRegistration, *, paused: bool) -> dict[str, JSON]:
        status, reason = ("paused", "paused by PAUSE") if paused else ("active", "")
        updated = replace(registration, status=status, reason=reason, updated_ms=now_ms(self._clock))
        await self._store.put_feed(updated)
        if paused:
            await self._stop_feed(registration.trigger)
        else:
            await self._start_feed(updated)
        log.info("feed for trigger %s is %s", registration.trigger, status)
        return {"triggerName": registration.trigger, "status": status}

    def _read(self, registration: FeedRegistration) -> dict[str, JSON]:
        changed = registration.updated_ms
        metrics = self.metrics(registration.trigger)
        return {
            "config": {"name": registration.trigger.split("/")[2], "namespace": registration.namespace,
                       **_redacted(registration.config)},
            "status": {"active": registration.status == "active", "dateChanged": changed,
                       "dateChangedISO": datetime.fromtimestamp(changed / 1000, timezone.utc).isoformat(
                           timespec="milliseconds").replace("+00:00", "Z"),
                       "reason": registration.reason},
            "metrics": {"received": metrics.received, "fired": metrics.fired, "rejected": metrics.rejected},
        }

    def _validate(self, feed_fqn: str, trigger: str, params: dict[str, JSON], *, require_future: bool) -> dict[str, JSON]:
        """The config stored for a registration (validated, dates resolved), or BadRequest."""
        if feed_fqn in _ALARM_KINDS:
            return alarms.parse_alarm_config(_ALARM_KINDS[feed_fqn], trigger, params, now_ms(self._clock),
                                             require_future=require_future).to_json()
        if feed_fqn == MQTT:
            return mqtt.parse_mqtt_config(params).to_json(redact=False)
        if feed_fqn == WEBHOOK:
            return webhook.parse_webhook_config(params).to_json(redact=False)
        if feed_fqn == POSTGRES:
            return postgres.parse_postgres_config(params).to_json(redact=False)
        return files.parse_files_config(params).to_json()

    # ----------------------------------------------------------------------- adapters

    async def _start_feed(self, registration: FeedRegistration) -> None:
        if registration.trigger in self._running:
            return
        if self._tasks is None:
            raise TriggerhubError("FeedManager.start(tasks) must run before feeds can start")
        feed = self._build(registration, self._tasks)
        await feed.start(self._emit_for(registration.trigger))
        self._running[registration.trigger] = feed

    async def _stop_feed(self, trigger: str) -> None:
        feed = self._running.pop(trigger, None)
        if feed is not None:
            await feed.stop()

    def _build(self, registration: FeedRegistration, tasks: asyncio.TaskGroup) -> CursorFeed:
        trigger, config = registration.trigger, registration.config
        load = self._loader(trigger)
        if registration.feed in _ALARM_KINDS:
            parsed = alarms.parse_alarm_config(_ALARM_KINDS[registration.feed], trigger, config,
                                               now_ms(self._clock), require_future=False)
            return alarms.AlarmFeed(parsed, clock=self._clock, tasks=tasks, load_cursor=load,
                                    not_before_ms=registration.updated_ms, source=registration.feed,
                                    on_finished=lambda reason: self._finished(trigger, reason))
        if registration.feed == MQTT:
            digest = hashlib.sha256(trigger.encode()).hexdigest()[:12]
            return mqtt.MqttFeed(mqtt.parse_mqtt_config(config), trigger=trigger, tasks=tasks, load_cursor=load,
                                 default_client_id=f"triggerhub-{digest}-{self._instance_id}")
        if registration.feed == WEBHOOK:
            return webhook.WebhookFeed()
        if registration.feed == POSTGRES:
            return postgres.PostgresFeed(postgres.parse_postgres_config(config), trigger=trigger, clock=self._clock,
                                         tasks=tasks, load_cursor=load)
        return files.FileFeed(files.parse_files_config(config), trigger=trigger, clock=self._clock, tasks=tasks,
                              load_cursor=load)

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

    def _count(self, trigger: str, *, received: int = 0, fired: int = 0, rejected: int = 0) -> None:
        m = self._metrics.get(trigger, FeedMetrics())
        self._metrics[trigger] = FeedMetrics(m.received + received, m.fired + fired, m.rejected + rejected)

    async def _finished(self, trigger: str, reason: str) -> None:
        """A schedule ran out: disable the feed, and honour deleteAfterFire for `once`."""
        self._running.pop(trigger, None)  # its task is ending by itself; do not cancel it
        registration = await self._store.get_feed(trigger)
        if registration is None:
            return
        delete = str(registration.config.get("deleteAfterFire", "false"))
        if delete == "false":
            await self._store.put_feed(replace(registration, status="disabled", reason=reason,
                                               updated_ms=now_ms(self._clock)))
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
                             read_body: ReadBody) -> tuple[int, dict[str, JSON]]:
        """POST /hooks/{namespace}/{trigger}: 202 once stored; 400, 401, 404, 409, 413 otherwise.
        The body is read only once the feed is known, up to its maxBodyBytes."""
        name = f"/{namespace}/{trigger}"
        registration = await self._store.get_feed(name)
        if registration is None or registration.feed != WEBHOOK:
            return 404, {"error": f"trigger '{name}' has no webhook feed; create one with --feed {WEBHOOK}"}
        if registration.status != "active":
            return 404, {"error": f"the webhook feed of trigger '{name}' is {registration.status}; UNPAUSE it"}
        config = webhook.parse_webhook_config(registration.config)
        try:
            raw_body = await read_body(config.max_body_bytes)
            event = webhook.delivery_event(config, name, headers, raw_body, now_ms(self._clock))
        except ApiError as exc:
            self._count(name, received=1, rejected=1)
            log.info("webhook delivery for %s refused (%d): %s", name, exc.status, exc.message)
            return exc.status, {"error": exc.message}
        if not await self._emit_for(name)(event):
            return 409, {"error": webhook.replay_message(config, name, headers, event.id)}
        return 202, {"id": event.id}


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


def _redacted(config: Mapping[str, JSON]) -> dict[str, JSON]:
    return {k: (webhook.SECRET_MASK if k in SECRET_KEYS and v else postgres.redact_dsn(v) if k == "dsn" else v)
            for k, v in config.items()}


async def _uninstall_postgres(registration: FeedRegistration) -> None:
    """Drop the table's change trigger; an unreachable database must not block deleting the feed."""
    config = postgres.parse_postgres_config(registration.config)
    try:
        await postgres.uninstall(config, registration.trigger)
    except FeedError as exc:
        log.warning("feed for trigger %s deleted, but its PostgreSQL trigger stays on %s (%s); drop it with "
                    "DROP TRIGGER triggerhub_changes ON %s", registration.trigger, config.table, exc, config.table)
