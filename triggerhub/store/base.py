"""The Store seam: entities, subjects, activations, pending invocations, the event log, cursors.

One real implementation per mode (SQLite embedded, PostgreSQL distributed), both in `sql.py`.
Every write that the delivery promise depends on is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from triggerhub.model import (
    JSON, Activation, ApiRoute, Collection, DeadLetter, Entity, Invocation, RuleCounts, Subject, TriggerEvent,
)


@dataclass(frozen=True, slots=True)
class ActivationQuery:
    namespace: str
    name: str | None = None  # "action" or "pkg/action" (the path annotation without namespace)
    since_ms: int | None = None
    upto_ms: int | None = None
    skip: int = 0
    limit: int = 30


@dataclass(frozen=True, slots=True)
class FeedRegistration:
    """A trigger's feed configuration, kept so feeds survive restarts."""

    trigger: str  # "/ns/trigger"
    feed: str  # "/whisk.system/alarms/alarm"
    namespace: str  # owner namespace
    config: dict[str, JSON] = field(default_factory=dict)
    status: str = "active"  # active | paused | disabled
    reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReplayClaim:
    """A replay of one stored event through one rule. Unforced, it is taken only if that (rule,
    event) was never replayed; forced, always (the mark counts the runs)."""

    rule: str  # "guest/r"
    event_id: str
    event_ms: int  # the event's time: marks are pruned with the events they name
    activation_id: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class RedriveClaim:
    """A redrive of one dead letter: taken only while no other redrive of it is under way."""

    letter_id: str
    activation_id: str  # the redriven run's


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning step deleted from the event log."""

    by_age: int = 0
    by_trigger_bound: int = 0
    by_total_bound: int = 0
    replay_marks: int = 0

    @property
    def events(self) -> int:
        return self.by_age + self.by_trigger_bound + self.by_total_bound


@dataclass(frozen=True, slots=True)
class DerivedChange:
    """A derived trigger's new state for one key, and the events it derives (put in the outbox)."""

    state: str | None  # JSON text; None drops the key's row
    due_ms: int | None  # when the key's state must be looked at again (absence deadline, cleanup)
    events: Sequence[TriggerEvent] = ()


DeriveTransition = Callable[[str | None], DerivedChange]
"""Pure: the key's stored state (None: none) -> the change. Run inside the writing transaction."""


@dataclass(frozen=True, slots=True)
class DeriveStep:
    """One change of a derived trigger's keyed state, applied in the transaction that commits it."""

    trigger: str  # the derived trigger, "/guest/silent"
    key: str
    transition: DeriveTransition


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What one fire or invoke commits at once, before its caller hears 202."""

    event: TriggerEvent | None = None
    invocations: Sequence[Invocation] = ()
    activations: Sequence[Activation] = ()
    cursor: tuple[str, str] | None = None  # (feed id, new cursor value)
    matched_rules: Sequence[str] = ()  # rules with a filter that took the event ("guest/r")
    filtered_rules: Sequence[str] = ()  # rules whose filter refused it
    replay: ReplayClaim | None = None  # a replay's mark: nothing is written when it is refused
    redrive: RedriveClaim | None = None  # a redrive's claim of its letter: likewise
    # Derived triggers fed by the event: applied only when the event is new (never twice).
    derive: Sequence[DeriveStep] = ()
    from_outbox: bool = False  # the event is a derived one: its outbox row goes in the same write
    # The event's rule decisions (lineage), stored in its row in place of `event.decisions`: the
    # engine hands them here rather than building a second copy of the event per fire.
    decisions: tuple[dict[str, JSON], ...] | None = None


class DeriveNoticeListener(Protocol):
    """What hears the notices of derived-trigger changes that other processes committed."""

    def derive_changed(self, due_ms: int) -> None:
        """A transaction armed a deadline at `due_ms` earlier than its key had, or (`due_ms` 0)
        put a derived event in the outbox."""

    def derive_notices_live(self, live: bool) -> None:
        """The notices started (`live`: changes committed before may have gone unheard) or stopped
        coming (the connection is lost: look at the store more often until they come again)."""


class DeriveNotices(Protocol):
    """Word from other processes that derived-trigger state changed (PostgreSQL LISTEN: store/notify.py)."""

    def listen(self, listener: DeriveNoticeListener) -> AbstractAsyncContextManager[None]:
        """Tell `listener` of each change until the block ends (reconnecting when the connection drops)."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    # subjects -------------------------------------------------------------------------------
    async def put_subject(self, subject: Subject) -> None: ...
    async def get_subject(self, uuid: str) -> Subject | None: ...
    async def list_subjects(self) -> list[Subject]: ...
    async def delete_subject(self, uuid: str) -> bool:
        """Remove the credential `uuid`; False when there was none."""

    # entities -------------------------------------------------------------------------------
    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        """`namespace` is the entity path (`guest` or `guest/pkg`); names are unique across
        collections within one path, as in OpenWhisk."""

    async def put_entities(self, puts: Sequence[Entity], deletes: Sequence[Entity] = ()) -> list[Entity]:
        """Atomically write and delete. Each entity's `revision` must equal the stored one
        (0 = must not exist yet) or RevisionConflict is raised and nothing is written.
        Returns the written entities carrying their new revisions."""

    async def list_entities(self, collection: Collection, namespace: str, *, package: str | None = None,
                            skip: int = 0, limit: int = 30) -> list[Entity]:
        """Entities of the root `namespace` (all packages included when `package` is None),
        newest `updated_ms` first."""

    async def count_entities(self, collection: Collection, namespace: str, *, package: str | None = None) -> int: ...

    # activations ----------------------------------------------------------------------------
    async def accept(self, acceptance: Acceptance) -> bool:
        """One transaction: event log row, pending invocations, finished records, feed cursor.
        Returns False (and writes nothing) when the event id was already accepted."""

    async def complete(self, activation: Activation) -> bool:
        """Store a finished activation and drop its pending invocation, atomically.
        Returns False when a record with that id already exists (nothing changes)."""

    async def get_activation(self, namespace: str, activation_id: str) -> Activation | None: ...
    async def list_activations(self, query: ActivationQuery) -> list[Activation]: ...
    async def count_activations(self, query: ActivationQuery) -> int: ...
    async def list_event_activations(self, namespace: str, event_id: str) -> list[Activation]:
        """The records of `namespace` filed under trigger event `event_id` (delivery attempts: an
        `attempt` annotation with `event`; or an `eventId` annotation), oldest first."""

    async def list_pending(self) -> list[Invocation]:
        """Accepted invocations that have no activation record yet, oldest first."""

    # feeds, events, cursors -----------------------------------------------------------------
    async def put_feed(self, registration: FeedRegistration) -> None: ...
    async def get_feed(self, trigger: str) -> FeedRegistration | None: ...
    async def delete_feed(self, trigger: str) -> None: ...
    async def list_feeds(self) -> list[FeedRegistration]: ...
    async def get_cursor(self, feed_id: str) -> str | None: ...
    async def set_cursor(self, feed_id: str, value: str) -> None: ...
    async def count_events(self, trigger: str | None = None, *, since_ms: int | None = None,
                           upto_ms: int | None = None) -> int:
        """Stored events (of one trigger, `/guest/t`), with `since_ms <= time_ms <= upto_ms` when given."""

    async def list_events(self, trigger: str, *, since_ms: int, upto_ms: int, after: tuple[int, str] | None = None,
                          limit: int = 500) -> list[TriggerEvent]:
        """A trigger's events with `since_ms <= time_ms <= upto_ms`, oldest first (time, then id),
        starting after the (time_ms, id) key `after`."""

    async def get_events(self, event_ids: Sequence[str]) -> list[TriggerEvent]:
        """The stored events among `event_ids` (absent ones are left out), in no set order."""

    async def prune_events(self, *, before_ms: int, max_per_trigger: int, max_total: int, batch: int) -> Pruned:
        """One step of retention: delete up to `batch` events older than `before_ms`, then those
        beyond the newest `max_per_trigger` of a trigger and the newest `max_total` in all (0:
        no such bound), and the replay marks of pruned events. Several processes may call it;
        one deletes at a time."""

    async def get_rule_counts(self, rule: str) -> RuleCounts:
        """How many accepted events the filter of `rule` ("guest/r") took and refused."""

    async def get_event(self, event_id: str) -> TriggerEvent | None:
        """The stored trigger event with this CloudEvent id; None when there is none."""

    # derived triggers (store/derived.py) ---------------------------------------------------------
    async def change_derived(self, steps: Sequence[DeriveStep]) -> None:
        """Apply the steps in one transaction (each reads the key's state under a lock)."""

    async def list_due_derived(self, now_ms: int, *, limit: int) -> list[tuple[str, str]]:
        """(derived trigger, key) whose `due_ms` is at or before `now_ms`, earliest first."""

    async def next_derived_due_ms(self) -> int | None:
        """The earliest `due_ms` of any key; None when nothing is due ever."""

    async def list_derived_outbox(self, *, limit: int) -> list[TriggerEvent]:
        """Derived events not yet accepted on their derived trigger, oldest first."""

    async def delete_derived_outbox(self, event_ids: Sequence[str]) -> None: ...

    async def get_derived_state(self, trigger: str, key: str) -> tuple[str, int | None] | None:
        """(state JSON, due_ms) of one key of a derived trigger, or None."""

    # API gateway routes -----------------------------------------------------------------------
    async def put_route(self, route: ApiRoute) -> None:
        """Create or replace the route with the same namespace, base path, relative path and verb."""

    async def list_routes(self, namespace: str, *, base_path: str | None = None) -> list[ApiRoute]:
        """A namespace's routes (of one base path), ordered by base path, relative path, verb."""

    async def delete_routes(self, routes: Sequence[ApiRoute]) -> int:
        """Delete these routes (matched by key) in one transaction; returns how many existed."""

    # retries and dead letters (issue 14; store/deliveries.py) ---------------------------------
    async def put_retry(self, invocation: Invocation, *, rule: str, due_ms: int) -> bool:
        """Keep a waiting retry (the next attempt's invocation); False when kept already."""

    async def claim_retries(self, *, now_ms: int, owner: str, lease_ms: int, limit: int) -> list[Invocation]:
        """Lease due retries to `owner` for `lease_ms`; a retry is leased to one owner at a time."""

    async def prepare_retry(self, invocation: Invocation) -> bool:
        """Make a claimed retry pending (once); False when its attempt already has a record."""

    async def delete_pending(self, activation_id: str) -> bool:
        """Drop the pending row of an activation that has its record (left by a race with
        `prepare_retry`); False when there was none."""

    async def delete_retry(self, activation_id: str, *, owner: str) -> bool:
        """Drop a retry once its attempt was handed over (only while `owner` holds its lease)."""

    async def next_retry_due_ms(self) -> int | None:
        """When the next retry can be claimed (its due time, or the end of a longer lease); None
        when no retry waits."""
    async def count_retries(self, rule: str | None = None) -> int: ...
    async def put_dead_letter(self, letter: DeadLetter) -> None:
        """Keep `letter`, replacing the letter with the same id (and ending its redrive claim)."""

    async def list_dead_letters(self, rule: str, *, ids: Sequence[str] | None = None, skip: int = 0,
                                limit: int = 30) -> list[DeadLetter]:
        """The letters of `rule` ("guest/r"), oldest first (only `ids`, when given)."""

    async def count_dead_letters(self, rule: str) -> int: ...
    async def delete_dead_letter(self, letter_id: str) -> bool: ...
