"""The metric names pass the checks of `promtool check metrics` (Prometheus's promlint), done here
in Python (Debian's `prometheus` package ships promtool with a server that installs as a service):
help text, `_total` on counters and only there, base units, no abbreviated units, no type in the
name, no colons, snake_case names and labels, histogram suffixes kept for histograms. The checks
run on the real exposition after every triggerhub metric has moved, and are shown to catch each
kind of problem on a bad example."""

from __future__ import annotations

import asyncio
import re

import pytest
from prometheus_client import generate_latest

from triggerhub.observe import metrics

PREFIXES = ("nano", "micro", "milli", "centi", "deci", "kilo", "mega", "giga", "tera", "peta")
BASE_UNITS = ("seconds", "bytes", "meters", "metres", "grams", "volts", "amperes", "joules", "celsius", "kelvin")
NON_BASE = {"minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds"}
ABBREVIATIONS = {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
CAMEL = re.compile(r"[a-z][A-Z]")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def lint(text: str) -> list[str]:
    """promlint's problems in an exposition, one line each: `<metric>: <problem>`."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            found = SAMPLE.match(line)
            assert found is not None, line
            family = _family(found.group(1), types)
            labels.setdefault(family, set()).update(LABEL.findall(found.group(3) or ""))
    problems: list[str] = []
    for name, kind in sorted(types.items()):
        problems += [f"{name}: {p}" for p in _problems(name, kind, helps.get(name, ""), labels.get(name, set()))]
    return problems


def _family(sample: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_created", ""):
        if sample.endswith(suffix) and sample[:len(sample) - len(suffix)] in types:
            return sample[:len(sample) - len(suffix)]
    return sample


def _problems(name: str, kind: str, help_text: str, label_names: set[str]) -> list[str]:
    out = []
    if not help_text.strip():
        out.append("no help text")
    words = name.split("_")
    for word in words:
        for prefix in PREFIXES:
            for base in BASE_UNITS:
                if word == prefix + base:
                    out.append(f'use base unit "{base}" instead of "{word}"')
        if word in NON_BASE:
            out.append(f'use base unit "{NON_BASE[word]}" instead of "{word}"')
        if word in ABBREVIATIONS:
            out.append("metric names should not contain abbreviated units")
    if kind == "counter" and not name.endswith("_total"):
        out.append('counter metrics should have "_total" suffix')
    if kind not in ("counter", "untyped") and name.endswith("_total"):
        out.append('non-counter metrics should not have "_total" suffix')
    if kind != "histogram" and (name.endswith("_bucket") or "le" in label_names):
        out.append('non-histogram metrics should not have "_bucket" suffix or "le" label')
    if kind not in ("histogram", "summary") and (name.endswith(("_count", "_sum")) or "quantile" in label_names):
        out.append('non-histogram and non-summary metrics should not have "_count"/"_sum" suffix or "quantile" label')
    for word in words:
        if word in TYPES:
            out.append(f'metric name should not include type "{word}"')
    if ":" in name:
        out.append("metric names should not contain ':'")
    if CAMEL.search(name):
        out.append("metric names should be written in 'snake_case' not 'camelCase'")
    for label in sorted(label_names):
        if CAMEL.search(label):
            out.append(f"label names should be written in 'snake_case' not 'camelCase': {label}")
    return out


@metrics.timed_methods("accept")
class Timed:
    async def accept(self) -> None:
        return None


def call_every_hook(name: str) -> None:
    """Each metrics hook once, with trigger `/{name}/t` and rule `{name}/r`."""
    metrics.event_received("api", f"/{name}/t")
    metrics.event_fired("api", f"/{name}/t", iter([(f"{name}/r", "matched")]))
    metrics.event_rejected("api", f"/{name}/t", "duplicate")
    metrics.activation_stored("success", start_ms=1_000, end_ms=1_500, received_ms=900, stored_ms=1_600)
    for how in ("warm", "prewarm", "cold"):
        metrics.runtime_claimed(how)
    asyncio.run(Timed().accept())
    metrics.throttled("fires_per_minute")
    metrics.feed_waited("feed_events_per_minute")


def move_every_metric() -> None:
    """One observation of each triggerhub metric, so that labelled families have samples."""
    metrics.configure(enabled=True, max_names=500)
    call_every_hook("lint")
    metrics.GAUGES.clear()
    metrics.GAUGES.read("triggerhub_pool_runtimes", "Runtimes by state", ("state",), lambda: {("warm",): 1})
    metrics.GAUGES.read("triggerhub_inflight_activations", "Running now", (), lambda: {(): 0})
    metrics.GAUGES.set_lag({("th.worker", "th.trigger-events"): 3})


def test_the_hubs_exposition_passes_every_check() -> None:
    move_every_metric()
    try:
        text = generate_latest(metrics.REGISTRY).decode()
        assert "triggerhub_events_received_total{" in text and "triggerhub_kafka_consumer_lag_messages{" in text
        assert lint(text) == []
    finally:
        metrics.GAUGES.clear()


@pytest.mark.parametrize(("exposition", "problem"), [
    ("# HELP a_requests\n# TYPE a_requests counter\na_requests 1\n", 'counter metrics should have "_total" suffix'),
    ("# HELP a_x_total x\n# TYPE a_x_total gauge\na_x_total 1\n", 'non-counter metrics should not have "_total" suffix'),
    ("# HELP a_latency_milliseconds x\n# TYPE a_latency_milliseconds gauge\na_latency_milliseconds 1\n",
     'use base unit "seconds" instead of "milliseconds"'),
    ("# HELP a_latency_ms x\n# TYPE a_latency_ms gauge\na_latency_ms 1\n",
     "metric names should not contain abbreviated units"),
    ("# HELP a_requests_counter_total x\n# TYPE a_requests_counter_total counter\na_requests_counter_total 1\n",
     'metric name should not include type "counter"'),
    ("# HELP a:b x\n# TYPE a:b gauge\na:b 1\n", "metric names should not contain ':'"),
    ("# HELP a_fooBar x\n# TYPE a_fooBar gauge\na_fooBar 1\n",
     "metric names should be written in 'snake_case' not 'camelCase'"),
    ('# HELP a_x x\n# TYPE a_x gauge\na_x{ruleName="r"} 1\n',
     "label names should be written in 'snake_case' not 'camelCase': ruleName"),
    ("# HELP a_x_count x\n# TYPE a_x_count gauge\na_x_count 1\n",
     'non-histogram and non-summary metrics should not have "_count"/"_sum" suffix or "quantile" label'),
    ("# HELP a_x \n# TYPE a_x gauge\na_x 1\n", "no help text"),
])
def test_each_check_catches_its_problem(exposition: str, problem: str) -> None:
    assert problem in [line.split(": ", 1)[1] for line in lint(exposition)]


def test_trigger_and_rule_labels_stop_at_the_cap_and_the_rest_count_as_other() -> None:
    metrics.configure(enabled=True, max_names=2)
    try:
        for name in ("/cap/a", "/cap/b", "/cap/c", "/cap/d", "/cap/a"):
            metrics.event_received("api", name)
        def sample(trigger: str) -> float | None:
            return metrics.REGISTRY.get_sample_value("triggerhub_events_received_total",
                                                     {"feed": "api", "trigger": trigger})

        assert sample("/cap/a") == 2
        assert sample("/cap/b") == 1
        assert (sample("other") or 0) >= 2
        assert sample("/cap/c") is None
        assert "/cap/c" not in generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.configure(enabled=True, max_names=500)


def test_feed_labels_are_feed_kinds() -> None:
    api = "org.openwhisk.trigger.fire"
    assert metrics.feed_of(api, api_type=api) == "api"
    assert metrics.feed_of("triggerhub.feed.mqtt.message", api_type=api) == "mqtt"
    assert metrics.feed_of("triggerhub.feed.kafka.batch", api_type=api) == "kafka"
    assert metrics.feed_of("com.example.anything", api_type=api) == "other"


def triggerhub_samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value for family in metrics.REGISTRY.collect()
            if family.name.startswith("triggerhub_") for sample in family.samples}


def test_switched_off_nothing_moves() -> None:
    move_every_metric()
    metrics.GAUGES.clear()
    metrics.configure(enabled=False, max_names=500)
    try:
        before = triggerhub_samples()
        call_every_hook("off")
        assert triggerhub_samples() == before
    finally:
        metrics.configure(enabled=True, max_names=500)
