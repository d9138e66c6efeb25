"""Prometheus metrics of one process, and the hooks the hub's modules call to move them.

Every process (the embedded hub; each distributed controller, worker, invoker and feeds process)
has its own registry, `REGISTRY`, served as the text exposition format by `GET /metrics` (api/) or
the loopback listener of `serving_metrics` (observe/exposition.py). Names follow Prometheus's
conventions: a `triggerhub_` prefix, base units in the name (`_seconds`), `_total` on counters.

Label cardinality is bounded: no activation or event ids; trigger and rule names are kept for the
first `max_names` distinct names of each (TRIGGERHUB_METRICS_MAX_NAMES, default 500) and every
later name is counted under `other`; feed labels are feed kinds (`api`, `mqtt`, `webhook`, ...).
`configure(enabled=False)` (TRIGGERHUB_METRICS=false) turns every hook into a no-op.

The hooks run on every fire, so they bump plain counts (a dict entry, a bucket of a list) rather
than prometheus_client's Counter and Histogram, whose every `inc`/`observe` validates and takes a
lock: one custom collector (prometheus_client's documented collector API) turns the counts into
the same families when scraped, `_created` samples included (unless
PROMETHEUS_DISABLE_CREATED_SERIES is true, read as prometheus_client reads it). Every hook and every scrape runs on
the process's event loop thread (the engine, the pool, the throttles and the store's coroutines;
feed threads hand their messages to the loop first), so the counts need no lock.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OTHER = "other"
API_FEED = "api"
FEED_TYPE_PREFIX = "triggerhub.feed."

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Latencies of the hub's own steps: sub-millisecond store reads up to minute-long actions.
LATENCY_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0)
# prometheus_client's switch for the `_created` samples of its own Counter and Histogram, read as it does.
CREATED_SERIES = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")
# The `le` label values as prometheus_client writes them ("0.0005", "1.0", "+Inf").
_LE = (*(floatToGoString(bound) for bound in LATENCY_BOUNDS_S), "+Inf")  # type: ignore[no-untyped-call]


class Counts(dict[tuple[str, ...], int]):
    """A counter's values by label values. A hook bumps `counts[values] += 1`: a plain dict hit,
    but for the first use of `values`, which records their creation time (the `_created` sample)."""

    __slots__ = ("created",)

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[tuple[str, ...], float] = {}

    def __missing__(self, values: tuple[str, ...]) -> int:
        self.created[values] = time.time()
        return 0


class Buckets:
    """One histogram's observations: `counts[bisect_left(LATENCY_BOUNDS_S, value)] += 1` counts a
    value in the first bucket whose bound is >= it (Prometheus's `le`), the last one being +Inf."""

    __slots__ = ("counts", "sum_s", "created")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.sum_s = 0.0
        self.created = time.time()


@dataclass(frozen=True, slots=True)
class CounterFamily:
    """A counter (`name` ends in `_total`); unlabelled, it is present at 0 from the start."""

    name: str
    help_text: str
    labels: tuple[str, ...] = ()
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        if not self.labels:
            self.counts[()] += 0

    def metric(self) -> Metric:
        family = CounterMetricFamily(self.name, self.help_text, labels=self.labels)
        created = self.counts.created
        for values, count in list(self.counts.items()):
            family.add_metric(values, count, created=created[values] if CREATED_SERIES else None)
        return family


@dataclass(frozen=True, slots=True)
class HistogramFamily:
    """A histogram over LATENCY_BOUNDS_S; unlabelled, it is present (all 0) from the start."""

    name: str
    help_text: str
    labels: tuple[str, ...] = ()
    children: dict[tuple[str, ...], Buckets] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            self.child()

    def child(self, *values: str) -> Buckets:
        """The buckets of `values`, made (and so exposed) on the first call."""
        found = self.children.get(values)
        if found is None:
            found = self.children[values] = Buckets()
        return found

    def metric(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.help_text, labels=self.labels)
        for values, buckets in list(self.children.items()):
            cumulative = accumulate(list(buckets.counts))
            family.add_metric(values, list(zip(_LE, cumulative)), buckets.sum_s)
            if CREATED_SERIES:
                family.add_sample(f"{self.name}_created", dict(zip(self.labels, values)), buckets.created)
        return family


EVENTS_RECEIVED = CounterFamily("triggerhub_events_received_total",
                                "Trigger events that reached rule matching, by feed kind and trigger",
                                ("feed", "trigger"))
EVENTS_FIRED = CounterFamily("triggerhub_events_fired_total",
                             "Trigger events accepted durably (stored with their rule decisions)", ("feed", "trigger"))
EVENTS_REJECTED = CounterFamily("triggerhub_events_rejected_total",
                                "Trigger events not accepted: duplicate (id accepted before), throttled, refused",
                                ("feed", "trigger", "reason"))
RULE_DECISIONS = CounterFamily("triggerhub_rule_decisions_total",
                               "Rule decisions per accepted event: matched, filtered (non-match), refused or shadow",
                               ("rule", "decision"))
ACTIVATIONS = CounterFamily("triggerhub_activations_total",
                            "Activation records stored by this process, by outcome (OpenWhisk status)", ("outcome",))
ACTIVATION_DURATION = HistogramFamily("triggerhub_activation_duration_seconds",
                                      "Duration of activations stored by this process (end - start)")
EVENT_TO_START = HistogramFamily("triggerhub_event_to_activation_start_seconds",
                                 "From the trigger event's receipt to the start of a rule activation")
EVENT_TO_RECORD = HistogramFamily("triggerhub_event_to_activation_record_seconds",
                                  "End to end: from the trigger event's receipt to its rule activation's stored record")
COLD_STARTS = CounterFamily("triggerhub_pool_cold_starts_total",
                            "Runtimes started for an activation (no warm or prewarmed one)")
PREWARM_HITS = CounterFamily("triggerhub_pool_prewarm_hits_total", "Activations that took a prewarmed stem cell")
WARM_HITS = CounterFamily("triggerhub_pool_warm_hits_total", "Activations that reused a warm runtime")
STORE_OPERATION = HistogramFamily("triggerhub_store_operation_seconds", "Store operations, by Store method",
                                  ("operation",))
THROTTLED = CounterFamily("triggerhub_throttled_total",
                          "Requests refused (429) by a limit: invocations_per_minute, concurrent_invocations, "
                          "fires_per_minute", ("limit",))
FEED_WAITS = CounterFamily("triggerhub_feed_admission_waits_total",
                           "Times a feed waited for room under a feed limit instead of being refused", ("limit",))
FAMILIES: tuple[CounterFamily | HistogramFamily, ...] = (
    EVENTS_RECEIVED, EVENTS_FIRED, EVENTS_REJECTED, RULE_DECISIONS, ACTIVATIONS, ACTIVATION_DURATION, EVENT_TO_START,
    EVENT_TO_RECORD, COLD_STARTS, PREWARM_HITS, WARM_HITS, STORE_OPERATION, THROTTLED, FEED_WAITS)


class Counted(Collector):
    """The families above, in that order, as prometheus_client metric families."""

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            yield family.metric()

    def describe(self) -> Iterator[Metric]:
        for family in FAMILIES:
            kind = CounterMetricFamily if isinstance(family, CounterFamily) else HistogramMetricFamily
            yield kind(family.name, family.help_text, labels=family.labels)


REGISTRY.register(Counted())


class NameCap(dict[str, str]):
    """The first `max_names` distinct names map to themselves; later ones to `other`. A hook reads
    `cap[name]`: a kept name is a plain dict hit; only a name not kept calls `__missing__`."""

    __slots__ = ("max_names",)

    def __init__(self, max_names: int) -> None:
        super().__init__()
        self.max_names = max_names

    def __missing__(self, name: str) -> str:
        if len(self) < self.max_names:
            self[name] = name
            return name
        return OTHER


# The hooks read these module globals (cheaper than attributes); configure() replaces them.
_enabled = True
_triggers = NameCap(500)
_rules = NameCap(500)


def configure(*, enabled: bool, max_names: int) -> None:
    """Called once by the composition root (cli/) from the ObserveConfig."""
    global _enabled, _triggers, _rules
    _enabled = enabled
    _triggers = NameCap(max_names)
    _rules = NameCap(max_names)


def enabled() -> bool:
    return _enabled


def feed_of(event_type: str, *, api_type: str) -> str:
    """The feed label of an event type: `api` for fires through the API, else the feed kind
    (`triggerhub.feed.mqtt.message` -> `mqtt`); a type of no known shape is `other`."""
    if event_type == api_type:
        return API_FEED
    if event_type.startswith(FEED_TYPE_PREFIX):
        return event_type[len(FEED_TYPE_PREFIX):].split(".", 1)[0] or OTHER
    return OTHER


# ---------------------------------------------------------------------------- hooks
# Each bumps its counts inline: a call per hook and none inside it (the histograms too), as they run
# several times per fire.

_RECEIVED, _FIRED, _REJECTED = EVENTS_RECEIVED.counts, EVENTS_FIRED.counts, EVENTS_REJECTED.counts
_DECISIONS, _ACTIVATIONS = RULE_DECISIONS.counts, ACTIVATIONS.counts
_DURATION, _TO_START, _TO_RECORD = ACTIVATION_DURATION.child(), EVENT_TO_START.child(), EVENT_TO_RECORD.child()
_CLAIMS = {"warm": WARM_HITS.counts, "prewarm": PREWARM_HITS.counts}
_COLD = COLD_STARTS.counts
_THROTTLED, _WAITS = THROTTLED.counts, FEED_WAITS.counts


def event_received(feed: str, trigger: str) -> None:
    if _enabled:
        _RECEIVED[feed, _triggers[trigger]] += 1


def event_fired(feed: str, trigger: str, decisions: Iterable[tuple[str, str]]) -> None:
    """An accepted event and its rule decisions ((rule, decision) pairs)."""
    if _enabled:
        _FIRED[feed, _triggers[trigger]] += 1
        for rule, decision in decisions:
            _DECISIONS[_rules[rule], decision] += 1


def event_rejected(feed: str, trigger: str, reason: str) -> None:
    if _enabled:
        _REJECTED[feed, _triggers[trigger], reason] += 1


def activation_stored(outcome: str, *, start_ms: int, end_ms: int, received_ms: int | None, stored_ms: int) -> None:
    """A record this process stored; `received_ms` is its trigger event's receipt (None if none)."""
    if not _enabled:
        return
    _ACTIVATIONS[outcome,] += 1
    if end_ms >= start_ms > 0:
        took_s = (end_ms - start_ms) / 1000
        _DURATION.counts[bisect_left(LATENCY_BOUNDS_S, took_s)] += 1
        _DURATION.sum_s += took_s
    if received_ms:
        took_s = max(0, start_ms - received_ms) / 1000
        _TO_START.counts[bisect_left(LATENCY_BOUNDS_S, took_s)] += 1
        _TO_START.sum_s += took_s
        took_s = max(0, stored_ms - received_ms) / 1000
        _TO_RECORD.counts[bisect_left(LATENCY_BOUNDS_S, took_s)] += 1
        _TO_RECORD.sum_s += took_s


def runtime_claimed(how: str) -> None:
    """`how` is warm, prewarm or cold."""
    if _enabled:
        _CLAIMS.get(how, _COLD)[()] += 1


def throttled(limit: str) -> None:
    if _enabled:
        _THROTTLED[limit,] += 1


def feed_waited(limit: str) -> None:
    if _enabled:
        _WAITS[limit,] += 1


T = TypeVar("T")
C = TypeVar("C", bound=type)


def timed_methods(*names: str) -> Callable[[C], C]:
    """A class decorator: each named coroutine method observes STORE_OPERATION under its name
    (its histogram is exposed, at 0, from the decoration on)."""
    def decorate(cls: C) -> C:
        for name in names:
            setattr(cls, name, _timed(getattr(cls, name), name))
        return cls
    return decorate


def _timed(method: Callable[..., Awaitable[T]], name: str) -> Callable[..., Awaitable[T]]:
    buckets = STORE_OPERATION.child(name)
    counts = buckets.counts
    clock_s = time.perf_counter

    async def timed(*args: Any, **kwargs: Any) -> T:
        if not _enabled:
            return await method(*args, **kwargs)
        start_s = clock_s()
        try:
            return await method(*args, **kwargs)
        finally:
            took_s = clock_s() - start_s
            counts[bisect_left(LATENCY_BOUNDS_S, took_s)] += 1
            buckets.sum_s += took_s

    timed.__name__ = method.__name__
    timed.__qualname__ = getattr(method, "__qualname__", name)
    timed.__doc__ = method.__doc__
    return timed


# ---------------------------------------------------------------------------- gauges read at scrape


class Gauges(Collector):
    """Gauges read from the process's parts when scraped: its container pool, what it runs now
    (in flight), and Kafka consumer lag (refreshed by `refresh()` before each scrape)."""

    def __init__(self) -> None:
        self._readers: dict[str, Callable[[], dict[tuple[str, ...], float]]] = {}
        self._help: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self._lag: dict[tuple[str, str], float] = {}

    def read(self, name: str, help_text: str, labels: tuple[str, ...],
             reader: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """Serve gauge `name` from `reader()` (label values -> value); a later call replaces it."""
        self._readers[name] = reader
        self._help[name] = (help_text, labels)

    def refresh_with(self, refresher: Callable[[], Awaitable[None]]) -> None:
        self._refreshers.append(refresher)

    def set_lag(self, lags: dict[tuple[str, str], float]) -> None:
        """(consumer group, topic) -> messages behind the group's committed offsets."""
        self._lag = dict(lags)

    async def refresh(self) -> None:
        for refresher in self._refreshers:
            await refresher()

    def clear(self) -> None:
        self._readers.clear()
        self._help.clear()
        self._refreshers.clear()
        self._lag = {}

    def collect(self) -> Iterator[Metric]:
        for name, reader in list(self._readers.items()):
            help_text, labels = self._help[name]
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in reader().items():
                family.add_metric(list(values), value)
            yield family
        lag = GaugeMetricFamily("triggerhub_kafka_consumer_lag_messages",
                                "Messages behind a consumer group's committed offsets (distributed mode)",
                                labels=("group", "topic"))
        for (group, topic), value in sorted(self._lag.items()):
            lag.add_metric([group, topic], value)
        yield lag

    def describe(self) -> Iterator[Metric]:
        return iter(())


GAUGES = Gauges()
REGISTRY.register(GAUGES)
