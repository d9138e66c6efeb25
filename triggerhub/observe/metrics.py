"""Prometheus metrics of one process, and the hooks the hub's modules call to move them.

Every process (the embedded hub; each distributed controller, worker, invoker and feeds process)
has its own registry, `REGISTRY`, served as the text exposition format by `GET /metrics` (api/) or
the loopback listener of `serve_metrics` (observe/listener.py). Names follow Prometheus's
conventions: a `triggerhub_` prefix, base units in the name (`_seconds`), `_total` on counters.

Label cardinality is bounded: no activation or event ids; trigger and rule names are kept for the
first `max_names` distinct names of each (TRIGGERHUB_METRICS_MAX_NAMES, default 500) and every
later name is counted under `other`; feed labels are feed kinds (`api`, `mqtt`, `webhook`, ...).
`configure(enabled=False)` (TRIGGERHUB_METRICS=false) turns every hook into a no-op.

The hooks do not move the prometheus_client metrics themselves: they queue each update (a
counter's bound `inc`, a histogram's bound `observe` and its value), and `flush` applies the queue
when the registry is collected (every scrape, `generate_latest`, `get_sample_value`) or when a
hook finds FLUSH_AT updates of a kind waiting; so a scrape sees every update made before it. A
prometheus_client increment is five calls (two checks, a locked add) and an observation seven;
a fire moved five counters and five histograms that way, 60 of the 140 calls a fire made more
with metrics and lineage on (cProfile, 2026-12-05). Queued, an update is one append, and a
flush applies each counter's increments as one `inc(n)`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector, ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

OTHER = "other"
API_FEED = "api"
FEED_TYPE_PREFIX = "triggerhub.feed."

FLUSH_AT = 1024  # queued updates of one kind that the hook queueing the last of them applies

# The hooks' updates, queued: counter increments (each by 1) and histogram observations. Any
# thread may queue (a deque's append is atomic); `flush` applies them, one flush at a time.
_COUNTS: deque[Callable[[float], None]] = deque()
_OBSERVED: deque[tuple[Callable[[float], None], float]] = deque()
_FLUSHING = threading.Lock()


def flush() -> None:
    """Apply the queued updates now; every collection of REGISTRY (a scrape) does it first.
    The increments of one counter are applied as one `inc(n)`."""
    with _FLUSHING:  # the only popper, so the `len` updates taken are all there
        take = _COUNTS.popleft
        for inc, times in Tally(take() for _ in range(len(_COUNTS))).items():
            inc(times)
        take_observed = _OBSERVED.popleft
        for _ in range(len(_OBSERVED)):
            observe, value = take_observed()
            observe(value)


class _Updates(Collector):
    """Applies the queued updates when the registry is collected. Registered before every metric
    they move, so a collection applies them before it reads any."""

    def collect(self) -> Iterator[Metric]:
        flush()
        return iter(())

    def describe(self) -> Iterator[Metric]:
        return iter(())


REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(_Updates())
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Latencies of the hub's own steps: sub-millisecond store reads up to minute-long actions.
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                      30.0, 60.0, 300.0)

EVENTS_RECEIVED = Counter("triggerhub_events_received_total",
                          "Trigger events that reached rule matching, by feed kind and trigger",
                          ("feed", "trigger"), registry=REGISTRY)
EVENTS_FIRED = Counter("triggerhub_events_fired_total",
                       "Trigger events accepted durably (stored with their rule decisions)",
                       ("feed", "trigger"), registry=REGISTRY)
EVENTS_REJECTED = Counter("triggerhub_events_rejected_total",
                          "Trigger events not accepted: duplicate (id accepted before), throttled, refused",
                          ("feed", "trigger", "reason"), registry=REGISTRY)
RULE_DECISIONS = Counter("triggerhub_rule_decisions_total",
                         "Rule decisions per accepted event: matched, filtered (non-match), refused or shadow",
                         ("rule", "decision"), registry=REGISTRY)
ACTIVATIONS = Counter("triggerhub_activations_total",
                      "Activation records stored by this process, by outcome (OpenWhisk status)",
                      ("outcome",), registry=REGISTRY)
ACTIVATION_DURATION = Histogram("triggerhub_activation_duration_seconds",
                                "Duration of activations stored by this process (end - start)",
                                registry=REGISTRY, buckets=_LATENCY_BUCKETS_S)
EVENT_TO_START = Histogram("triggerhub_event_to_activation_start_seconds",
                           "From the trigger event's receipt to the start of a rule activation",
                           registry=REGISTRY, buckets=_LATENCY_BUCKETS_S)
EVENT_TO_RECORD = Histogram("triggerhub_event_to_activation_record_seconds",
                            "End to end: from the trigger event's receipt to its rule activation's stored record",
                            registry=REGISTRY, buckets=_LATENCY_BUCKETS_S)
COLD_STARTS = Counter("triggerhub_pool_cold_starts_total", "Runtimes started for an activation (no warm or prewarmed one)",
                      registry=REGISTRY)
PREWARM_HITS = Counter("triggerhub_pool_prewarm_hits_total", "Activations that took a prewarmed stem cell",
                       registry=REGISTRY)
WARM_HITS = Counter("triggerhub_pool_warm_hits_total", "Activations that reused a warm runtime", registry=REGISTRY)
STORE_OPERATION = Histogram("triggerhub_store_operation_seconds", "Store operations, by Store method",
                            ("operation",), registry=REGISTRY, buckets=_LATENCY_BUCKETS_S)
THROTTLED = Counter("triggerhub_throttled_total",
                    "Requests refused (429) by a limit: invocations_per_minute, concurrent_invocations, "
                    "fires_per_minute", ("limit",), registry=REGISTRY)
FEED_WAITS = Counter("triggerhub_feed_admission_waits_total",
                     "Times a feed waited for room under a feed limit instead of being refused", ("limit",),
                     registry=REGISTRY)


class _Children:
    """A metric's children's update methods (`inc` or `observe`) by label values, kept: `labels()`
    validates and locks on every call, which the hot path cannot afford. Bounded because every
    label is (see the module docstring)."""

    def __init__(self, metric: Any, method: str) -> None:
        self._metric = metric
        self._method = method
        self._children: dict[tuple[str, ...], Callable[[float], None]] = {}

    def __call__(self, *values: str) -> Callable[[float], None]:
        update = self._children.get(values)
        if update is None:
            update = self._children[values] = getattr(self._metric.labels(*values), self._method)
        return update


_RECEIVED, _FIRED = _Children(EVENTS_RECEIVED, "inc"), _Children(EVENTS_FIRED, "inc")
_REJECTED, _DECISIONS = _Children(EVENTS_REJECTED, "inc"), _Children(RULE_DECISIONS, "inc")
_ACTIVATIONS, _THROTTLED = _Children(ACTIVATIONS, "inc"), _Children(THROTTLED, "inc")
_WAITS, _STORE = _Children(FEED_WAITS, "inc"), _Children(STORE_OPERATION, "observe")
_DURATION, _TO_START, _TO_RECORD = ACTIVATION_DURATION.observe, EVENT_TO_START.observe, EVENT_TO_RECORD.observe
_CLAIMS, _COLD = {"warm": WARM_HITS.inc, "prewarm": PREWARM_HITS.inc}, COLD_STARTS.inc
_count, _observe = _COUNTS.append, _OBSERVED.append


class NameCap:
    """The first `max_names` distinct names are kept as labels; later ones become `other`."""

    def __init__(self, max_names: int) -> None:
        self.max_names = max_names
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        if name in self._kept:
            return name
        with self._lock:
            if len(self._kept) < self.max_names:
                self._kept.add(name)
                return name
        return OTHER


class _State:
    enabled = True
    triggers = NameCap(500)
    rules = NameCap(500)


def configure(*, enabled: bool, max_names: int) -> None:
    """Called once by the composition root (cli/) from the ObserveConfig."""
    _State.enabled = enabled
    _State.triggers = NameCap(max_names)
    _State.rules = NameCap(max_names)


def enabled() -> bool:
    return _State.enabled


def feed_of(event_type: str, *, api_type: str) -> str:
    """The feed label of an event type: `api` for fires through the API, else the feed kind
    (`triggerhub.feed.mqtt.message` -> `mqtt`); a type of no known shape is `other`."""
    if event_type == api_type:
        return API_FEED
    if event_type.startswith(FEED_TYPE_PREFIX):
        return event_type[len(FEED_TYPE_PREFIX):].split(".", 1)[0] or OTHER
    return OTHER


# ---------------------------------------------------------------------------- hooks


def _flush_when_full() -> None:
    if len(_COUNTS) >= FLUSH_AT or len(_OBSERVED) >= FLUSH_AT:
        flush()


def event_received(feed: str, trigger: str) -> None:
    if _State.enabled:
        _count(_RECEIVED(feed, _State.triggers(trigger)))
        if len(_COUNTS) >= FLUSH_AT:
            flush()


def event_fired(feed: str, trigger: str, decisions: Iterator[tuple[str, str]]) -> None:
    """An accepted event and its rule decisions ((rule, decision) pairs)."""
    if _State.enabled:
        _count(_FIRED(feed, _State.triggers(trigger)))
        for rule, decision in decisions:
            _count(_DECISIONS(_State.rules(rule), decision))
        if len(_COUNTS) >= FLUSH_AT:
            flush()


def event_rejected(feed: str, trigger: str, reason: str) -> None:
    if _State.enabled:
        _count(_REJECTED(feed, _State.triggers(trigger), reason))
        _flush_when_full()


def activation_stored(outcome: str, *, start_ms: int, end_ms: int, received_ms: int | None, stored_ms: int) -> None:
    """A record this process stored; `received_ms` is its trigger event's receipt (None if none)."""
    if not _State.enabled:
        return
    _count(_ACTIVATIONS(outcome))
    if end_ms >= start_ms > 0:
        _observe((_DURATION, (end_ms - start_ms) / 1000))
    if received_ms:
        _observe((_TO_START, (start_ms - received_ms) / 1000 if start_ms > received_ms else 0.0))
        _observe((_TO_RECORD, (stored_ms - received_ms) / 1000 if stored_ms > received_ms else 0.0))
    _flush_when_full()


def runtime_claimed(how: str) -> None:
    """`how` is warm, prewarm or cold."""
    if _State.enabled:
        _count(_CLAIMS.get(how, _COLD))
        if len(_COUNTS) >= FLUSH_AT:
            flush()


def throttled(limit: str) -> None:
    if _State.enabled:
        _count(_THROTTLED(limit))
        _flush_when_full()


def feed_waited(limit: str) -> None:
    if _State.enabled:
        _count(_WAITS(limit))
        _flush_when_full()


T = TypeVar("T")
C = TypeVar("C", bound=type)


def timed_methods(*names: str) -> Callable[[C], C]:
    """A class decorator: each named coroutine method observes STORE_OPERATION under its name."""
    def decorate(cls: C) -> C:
        for name in names:
            setattr(cls, name, _timed(getattr(cls, name), name))
        return cls
    return decorate


def _timed(method: Callable[..., Awaitable[T]], name: str) -> Callable[..., Awaitable[T]]:
    observe = _STORE(name)

    async def timed(*args: Any, **kwargs: Any) -> T:
        if not _State.enabled:
            return await method(*args, **kwargs)
        start_s = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            _observe((observe, time.perf_counter() - start_s))
            if len(_OBSERVED) >= FLUSH_AT:
                flush()

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
