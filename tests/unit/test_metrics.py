"""The metrics hooks against prometheus_client's own Counter and Histogram: the same values in
the same buckets (`le` inclusive, +Inf last, cumulative), `_count`, `_sum` and `_created`; store
operations timed even when they raise; label values seen first only then exposed;
PROMETHEUS_DISABLE_CREATED_SERIES honoured as prometheus_client honours it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from triggerhub.observe import metrics

LE = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
      "30.0", "60.0", "300.0", "+Inf"]
# Milliseconds on, around and between the bounds, zero, and past the last bound.
TOOK_MS = [0, 1, 1, 2, 3, 5, 9, 10, 11, 250, 499, 500, 501, 1_000, 60_000, 299_999, 300_000, 300_001, 3_600_000]


def histogram(name: str, **labels: str) -> list[float]:
    """The bucket values (cumulative, in LE order), then _count and _sum, as scraped."""
    def get(sample: str, **extra: str) -> float:
        found = metrics.REGISTRY.get_sample_value(f"{name}{sample}", {**labels, **extra})
        assert found is not None, (name, sample, labels, extra)
        return found

    return [get("_bucket", le=le) for le in LE] + [get("_count"), get("_sum")]


def reference(values_s: list[float]) -> list[float]:
    """What prometheus_client's Histogram exposes for `values_s`, in the order of `histogram()`."""
    registry = CollectorRegistry()
    expected = Histogram("reference_seconds", "reference", buckets=metrics.LATENCY_BOUNDS_S, registry=registry)
    for value_s in values_s:
        expected.observe(value_s)

    def get(sample: str, **labels: str) -> float:
        found = registry.get_sample_value(f"reference_seconds{sample}", labels)
        assert found is not None
        return found

    return [get("_bucket", le=le) for le in LE] + [get("_count"), get("_sum")]


def moved(before: list[float], after: list[float]) -> list[float]:
    return [b - a for a, b in zip(before, after)]


@pytest.fixture(autouse=True)
def switched_on() -> None:
    metrics.configure(enabled=True, max_names=500)


def test_the_three_activation_histograms_bucket_as_prometheus_client_does() -> None:
    names = ("triggerhub_activation_duration_seconds", "triggerhub_event_to_activation_start_seconds",
             "triggerhub_event_to_activation_record_seconds")
    before = [histogram(name) for name in names]
    for took_ms in TOOK_MS:  # duration took_ms; started took_ms after the receipt; stored 2 * took_ms after it
        metrics.activation_stored("success", start_ms=10_000 + took_ms, end_ms=10_000 + 2 * took_ms,
                                  received_ms=10_000, stored_ms=10_000 + 2 * took_ms)
    after = [histogram(name) for name in names]
    once = reference([took_ms / 1000 for took_ms in TOOK_MS])
    twice = reference([2 * took_ms / 1000 for took_ms in TOOK_MS])
    assert moved(before[0], after[0]) == pytest.approx(once)
    assert moved(before[1], after[1]) == pytest.approx(once)
    assert moved(before[2], after[2]) == pytest.approx(twice)
    assert moved(before[0], after[0])[:len(LE)] == once[:len(LE)]  # counts exactly


def test_a_record_without_a_start_or_a_trigger_event_is_counted_but_not_timed() -> None:
    names = ("triggerhub_activation_duration_seconds", "triggerhub_event_to_activation_start_seconds")
    before = [histogram(name) for name in names]
    outcome = {"outcome": "developer_error"}
    count = metrics.REGISTRY.get_sample_value("triggerhub_activations_total", outcome) or 0
    metrics.activation_stored("developer_error", start_ms=0, end_ms=0, received_ms=None, stored_ms=5)
    assert [histogram(name) for name in names] == before
    assert metrics.REGISTRY.get_sample_value("triggerhub_activations_total", outcome) == count + 1


@metrics.timed_methods("get_event", "put_entities")
class Store:
    async def get_event(self, *, fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise LookupError("no such event")
        return "event"

    async def put_entities(self) -> None:
        return None


def test_a_timed_store_operation_is_observed_once_per_call_even_when_it_raises() -> None:
    before = histogram("triggerhub_store_operation_seconds", operation="get_event")
    others = histogram("triggerhub_store_operation_seconds", operation="put_entities")
    assert asyncio.run(Store().get_event(fail=False)) == "event"
    with pytest.raises(LookupError, match="no such event"):
        asyncio.run(Store().get_event(fail=True))
    after = histogram("triggerhub_store_operation_seconds", operation="get_event")
    assert moved(before, after)[-3:-1] == [2, 2]  # +Inf bucket and _count
    assert 0 < moved(before, after)[-1] < 1.0  # seconds, not milliseconds
    assert histogram("triggerhub_store_operation_seconds", operation="put_entities") == others
    assert Store.get_event.__name__ == "get_event"


def test_a_label_value_is_exposed_from_its_first_use_with_its_creation_time() -> None:
    labels = {"limit": "created_test"}
    assert metrics.REGISTRY.get_sample_value("triggerhub_throttled_total", labels) is None
    assert metrics.REGISTRY.get_sample_value("triggerhub_throttled_created", labels) is None
    start_s = time.time()
    metrics.throttled("created_test")
    end_s = time.time()
    metrics.throttled("created_test")
    assert metrics.REGISTRY.get_sample_value("triggerhub_throttled_total", labels) == 2
    created = metrics.REGISTRY.get_sample_value("triggerhub_throttled_created", labels)
    assert created is not None and start_s <= created <= end_s


def test_unlabelled_counters_are_exposed_at_zero_before_any_use() -> None:
    for name in ("triggerhub_pool_cold_starts", "triggerhub_pool_prewarm_hits", "triggerhub_pool_warm_hits"):
        assert metrics.REGISTRY.get_sample_value(f"{name}_total") is not None, name
        assert metrics.REGISTRY.get_sample_value(f"{name}_created") is not None, name


def test_a_pool_claim_of_unknown_kind_counts_as_a_cold_start() -> None:
    def counts() -> list[float | None]:
        return [metrics.REGISTRY.get_sample_value(f"triggerhub_pool_{name}_total")
                for name in ("warm_hits", "prewarm_hits", "cold_starts")]

    before = counts()
    for how in ("warm", "warm", "prewarm", "cold", "unheard-of"):
        metrics.runtime_claimed(how)
    after = counts()
    assert [b - a for a, b in zip(before, after) if a is not None and b is not None] == [2, 1, 2]


EXPOSE = ("from prometheus_client import generate_latest\n"
          "from triggerhub.observe import metrics\n"
          "metrics.throttled('fires_per_minute')\n"
          "metrics.activation_stored('success', start_ms=1, end_ms=2, received_ms=None, stored_ms=3)\n"
          "print(generate_latest(metrics.REGISTRY).decode())\n")


@pytest.mark.parametrize(("setting", "created"), [(None, True), ("True", False), ("1", False), ("no", True)])
def test_created_samples_follow_prometheus_clients_switch(setting: str | None, created: bool) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_DISABLE_CREATED_SERIES"}
    if setting is not None:
        env["PROMETHEUS_DISABLE_CREATED_SERIES"] = setting
    text = subprocess.run([sys.executable, "-c", EXPOSE], env=env, check=True, capture_output=True, text=True).stdout
    assert 'triggerhub_throttled_total{limit="fires_per_minute"} 1.0' in text
    assert "triggerhub_activation_duration_seconds_count 1.0" in text
    lines = [line for line in text.splitlines() if line.startswith("triggerhub_")]
    assert any(line.startswith('triggerhub_throttled_created{limit="fires_per_minute"} ') for line in lines) is created
    assert any(line.startswith("triggerhub_activation_duration_seconds_created ") for line in lines) is created
    assert any(line.startswith("triggerhub_pool_cold_starts_created ") for line in lines) is created
    assert any("_created" in line for line in lines) is created
