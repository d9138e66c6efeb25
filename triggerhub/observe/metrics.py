"""Prometheus metrics of one process, and the hooks the hub's modules call to move them.

Every process (the embedded hub; each distributed controller, worker, invoker and feeds process)
has its own registry, `REGISTRY`, served as the text exposition format by `GET /metrics` (api/) or
the loopback listener of `serve_metrics` (observe/listener.py). Names follow Prometheus's
conventions: a `triggerhub_` prefix, base units in the name (`_seconds`), `_total` on counters.

Label cardinality is bounded: no activation or event ids; trigger and rule names are kept for the
first `max_names` distinct names of each (TRIGGERHUB_METRICS_MAX_NAMES, default 500) and every
later name is counted under `other`; feed labels are feed kinds (`api`, `mqtt`, `webhook`, ...).
`configure(enabled=False)` (TRIGGERHUB_METRICS=false) turns every hook into a no-op.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector, ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

OTHER = "other"
API_FEED = "api"
FEED_TYPE_PREFIX = "triggerhub.feed."

REGISTRY = CollectorRegistry(auto_describe=True)
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
    """A metric's children by label values, kept: `labels()` validates and locks on every call,
    which the hot path cannot afford. Bounded because every label is (see the module docstring)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_RECEIVED, _FIRED, _REJECTED = _Children(EVENTS_RECEIVED), _Children(EVENTS_FIRED), _Children(EVENTS_REJECTED)
_DECISIONS, _ACTIVATIONS = _Children(RULE_DECISIONS), _Children(ACTIVATIONS)
_THROTTLED, _WAITS, _STORE = _Children(THROTTLED), _Children(FEED_WAITS), _Children(STORE_OPERATION)


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


def event_received(feed: str, trigger: str) -> None:
    if _State.enabled:
        _RECEIVED(feed, _State.triggers(trigger)).inc()


def event_fired(feed: str, trigger: str, decisions: Iterable[tuple[str, str]]) -> None:
    """An accepted event and its rule decisions ((rule, decision) pairs)."""
    if _State.enabled:
        _FIRED(feed, _State.triggers(trigger)).inc()
        for rule, decision in decisions:
            _DECISIONS(_State.rules(rule), decision).inc()


def event_rejected(feed: str, trigger: str, reason: str) -> None:
    if _State.enabled:
        _REJECTED(feed, _State.triggers(trigger), reason).inc()


def activation_stored(outcome: str, *, start_ms: int, end_ms: int, received_ms: int | None, stored_ms: int) -> None:
    """A record this process stored; `received_ms` is its trigger event's receipt (None if none)."""
    if not _State.enabled:
        return
    _ACTIVATIONS(outcome).inc()
    if end_ms >= start_ms > 0:
        ACTIVATION_DURATION.observe((end_ms - start_ms) / 1000)
    if received_ms:
        EVENT_TO_START.observe(max(0, start_ms - received_ms) / 1000)
        EVENT_TO_RECORD.observe(max(0, stored_ms - received_ms) / 1000)


_CLAIMS = {"warm": WARM_HITS, "prewarm": PREWARM_HITS}


def runtime_claimed(how: str) -> None:
    """`how` is warm, prewarm or cold."""
    if _State.enabled:
        _CLAIMS.get(how, COLD_STARTS).inc()


def throttled(limit: str) -> None:
    if _State.enabled:
        _THROTTLED(limit).inc()


def feed_waited(limit: str) -> None:
    if _State.enabled:
        _WAITS(limit).inc()


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
    observe = _STORE(name).observe

    async def timed(*args: Any, **kwargs: Any) -> T:
        if not _State.enabled:
            return await method(*args, **kwargs)
        start_s = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(time.perf_counter() - start_s)

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
