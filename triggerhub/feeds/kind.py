"""What a feed adapter module declares about itself: its `FeedKind`.

Each adapter module (alarms, mqtt, webhook, files, postgres, ...) ends with a `FEED_KIND` (alarms
declares three, `FEED_KINDS`): the catalogue entry of its built-in feed action, how to validate
the parameters of a CREATE or UPDATE into the config that is stored, how to build the running
feed from a stored config, which config keys are secret, and optionally how to clean up at
DELETE and how to handle a webhook delivery (`WebhookHandling`). The composition root (cli/)
collects them into one mapping for the engine's FeedManager, which never names a concrete adapter.
`with_modes` joins kinds sharing one feed name into one, chosen per trigger by a parameter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from triggerhub.clock import Clock
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.cursor import CursorFeed, CursorLoader, CursorSaver
from triggerhub.model import JSON, TriggerEvent

log = logging.getLogger(__name__)
C = TypeVar("C")

SECRET_MASK = "********"
"""What READ shows instead of a secret config value."""


@dataclass(frozen=True, slots=True)
class BuiltinFeed:
    """A feed action provided by the hub itself (run in-process, kind `builtin`)."""

    package: str
    name: str
    description: str
    parameters: tuple[str, ...] = ()
    package_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def fqn(self) -> str:
        """The feed action's name, as triggers name it: /whisk.system/<package>/<name>."""
        return f"/whisk.system/{self.package}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseContext:
    """What validating a CREATE or UPDATE may depend on besides the parameters."""

    trigger: str  # /namespace/name
    now_ms: int
    require_future: bool  # dates given in this request must lie ahead (CREATE, or UPDATE naming dates)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedContext:
    """What a running feed gets from the hub besides its config."""

    trigger: str  # /namespace/name
    feed: str  # the feed action, e.g. /whisk.system/alarms/alarm
    clock: Clock
    tasks: asyncio.TaskGroup  # where the feed runs its tasks
    load_cursor: CursorLoader
    save_cursor: CursorSaver  # a cursor no event carries (a Kafka partition's start, dead letters)
    instance_id: str  # distinguishes several hub processes (e.g. in MQTT client ids)
    not_before_ms: int  # the registration's last change: nothing before it is due
    on_finished: Callable[[str], Awaitable[None]]  # the feed ran out (reason): the hub disables it
    on_failed: Callable[[str], None]  # the hub refused an event for good (reason): the hub pauses the
    # feed, stopping it from another task; the feed's own task ends or waits to be cancelled


Parse = Callable[[Mapping[str, JSON], ParseContext], dict[str, JSON]]
"""The config to store for these parameters, or BadRequest naming the bad one."""

Build = Callable[[Mapping[str, JSON], FeedContext], CursorFeed]
"""The feed for a stored config (already validated by `Parse`), not yet started."""

Uninstall = Callable[[Mapping[str, JSON], str], Awaitable[None]]
"""Clean up at the source when the feed of trigger (2nd argument) is deleted; never raises for
an unreachable source (it logs what is left behind instead)."""

Audit = Callable[[Sequence[Mapping[str, JSON]]], Coroutine[Any, Any, None]]
"""Look at the sources of every stored config of this kind once, at hub start, and log what the
hub left behind there (e.g. a replication slot whose trigger is gone); never raises."""

Report = Callable[[Mapping[str, JSON], CursorLoader], Awaitable[dict[str, JSON]]]
"""(config, the feed's cursors) -> extra fields READ shows from the feed's stored state (e.g. the
Kafka feed's dead letters), durable across restarts unlike the in-memory metrics; a "metrics"
object in it joins READ's metrics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookHandling:
    """How a feed that receives webhook deliveries (POST /hooks/{namespace}/{trigger}) handles one.
    Each function takes the stored config first."""

    body_limit_bytes: Callable[[Mapping[str, JSON]], int]
    """The largest body to read; a longer one is refused with 413 before it is read whole."""

    event: Callable[[Mapping[str, JSON], str, Mapping[str, str], bytes, int], TriggerEvent]
    """(config, trigger, headers, raw body, now_ms) -> the event of one verified delivery, or the
    ApiError (400, 401, ...) saying why it is refused."""

    replay_message: Callable[[Mapping[str, JSON], str, Mapping[str, str], str], str]
    """(config, trigger, headers, event id) -> the 409 message for a delivery already accepted."""


def parse_operations(params: Mapping[str, JSON], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The `operations` parameter of a change feed (a list, or a comma-separated string, in any
    case; all of `allowed` when absent) as the chosen ones in `allowed`'s order."""
    operations = params.get("operations", list(allowed))
    operations = [o.strip() for o in operations.split(",")] if isinstance(operations, str) else operations
    if (not isinstance(operations, list) or not operations
            or not all(isinstance(o, str) and o.upper() in allowed for o in operations)):
        raise BadRequest(f"operations parameter '{params.get('operations')}' must list some of "
                         f"{', '.join(allowed)}")
    return tuple(o for o in allowed if o in {str(x).upper() for x in operations})


def uninstall_or_warn(parse: Callable[[Mapping[str, JSON]], C], remove: Callable[[C, str], Awaitable[None]],
                      left_behind: Callable[[C], str]) -> Uninstall:
    """An `Uninstall` that runs `remove(parse(stored), trigger)`; when the source cannot be reached
    (FeedError) it logs `left_behind(config)` (what stays at the source and how to remove it) instead
    of raising, so an unreachable source never blocks deleting the feed."""
    async def uninstall(stored: Mapping[str, JSON], trigger: str) -> None:
        config = parse(stored)
        try:
            await remove(config, trigger)
        except FeedError as exc:
            log.warning("feed for trigger %s deleted, but %s (%s)", trigger, left_behind(config), exc)
    return uninstall


def _no_extras(_trigger: str) -> dict[str, JSON]:
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedKind:
    """One kind of feed, as its adapter module declares it."""

    catalogue: BuiltinFeed
    parse: Parse
    build: Build
    secret_keys: tuple[str, ...] = ()  # shown as SECRET_MASK by READ
    masks: Mapping[str, Callable[[JSON], JSON]] = field(default_factory=dict)  # partly secret values
    uninstall: Uninstall | None = None
    webhook: WebhookHandling | None = None  # set by feeds that receive webhook deliveries
    report: Report | None = None  # extra READ fields from stored state
    created: Callable[[str], dict[str, JSON]] = _no_extras  # extra fields of CREATE's answer, by trigger
    audit: Audit | None = None  # run once at hub start with every stored config of this kind

    @property
    def fqn(self) -> str:
        return self.catalogue.fqn

    def redacted(self, config: Mapping[str, JSON]) -> dict[str, JSON]:
        """The config as READ shows it: secrets masked."""
        out: dict[str, JSON] = {}
        for key, value in config.items():
            if key in self.secret_keys and value:
                out[key] = SECRET_MASK
            elif key in self.masks:
                out[key] = self.masks[key](value)
            else:
                out[key] = value
        return out


def with_modes(key: str, default: str, modes: Mapping[str, FeedKind]) -> FeedKind:
    """One feed action offering several implementations, chosen by the `key` parameter (default
    `default`), e.g. /whisk.system/postgres/changes with mode outbox or logical. The stored config
    records the mode; a config stored before the mode existed is the default's."""
    if default not in modes or len({kind.fqn for kind in modes.values()}) != 1:
        raise ValueError(f"modes {', '.join(modes)} must share one feed name and include the default {default!r}")
    base = modes[default]

    def mode_of(config: Mapping[str, JSON]) -> FeedKind:
        return modes[str(config.get(key, default))]

    def parse(params: Mapping[str, JSON], ctx: ParseContext) -> dict[str, JSON]:
        mode = params.get(key, default)
        if not isinstance(mode, str) or mode not in modes:
            raise BadRequest(f"{key} parameter '{mode}' must be one of {', '.join(modes)} (default {default})")
        return {**modes[mode].parse(params, ctx), key: mode}

    async def uninstall(config: Mapping[str, JSON], trigger: str) -> None:
        chosen = mode_of(config).uninstall
        if chosen is not None:
            await chosen(config, trigger)

    async def report(config: Mapping[str, JSON], load: CursorLoader) -> dict[str, JSON]:
        chosen = mode_of(config).report
        return await chosen(config, load) if chosen is not None else {}

    async def audit(configs: Sequence[Mapping[str, JSON]]) -> None:
        for mode, kind in modes.items():
            if kind.audit is not None:
                await kind.audit([c for c in configs if c.get(key, default) == mode])

    parameters = tuple(dict.fromkeys([*base.catalogue.parameters, key,
                                      *(p for kind in modes.values() for p in kind.catalogue.parameters)]))
    return FeedKind(
        catalogue=replace(base.catalogue, parameters=parameters),
        parse=parse, build=lambda config, ctx: mode_of(config).build(config, ctx),
        secret_keys=tuple(dict.fromkeys(k for kind in modes.values() for k in kind.secret_keys)),
        masks={name: mask for kind in modes.values() for name, mask in kind.masks.items()},
        uninstall=uninstall, report=report, audit=audit, created=base.created,
    )


def feed_registry(*kinds: FeedKind) -> dict[str, FeedKind]:
    """The mapping the FeedManager takes: feed action name -> kind; a name given twice is an error."""
    registry: dict[str, FeedKind] = {}
    for kind in kinds:
        if kind.fqn in registry:
            raise ValueError(f"feed {kind.fqn} is registered twice; each adapter declares its own name")
        registry[kind.fqn] = kind
    return registry
