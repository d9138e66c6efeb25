"""The hooks queue their metric updates: a scrape sees every update made before it, the queue
never holds FLUSH_AT updates, and hooks and scrapes on several threads at once lose none."""

from __future__ import annotations

import threading

from prometheus_client import generate_latest

from triggerhub.observe import metrics


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_scrape_sees_every_update_made_before_it() -> None:
    metrics.configure(enabled=True, max_names=500)
    before_fired = sample("triggerhub_events_fired_total", {"feed": "api", "trigger": "/q/t"})
    before_count = sample("triggerhub_event_to_activation_record_seconds_count", {})
    before_fast = sample("triggerhub_event_to_activation_record_seconds_bucket", {"le": "0.005"})
    metrics.event_fired("api", "/q/t", iter([("q/r", "matched")]))
    metrics.activation_stored("success", start_ms=1_000, end_ms=1_002, received_ms=999, stored_ms=1_003)
    text = generate_latest(metrics.REGISTRY).decode()
    assert f'triggerhub_events_fired_total{{feed="api",trigger="/q/t"}} {before_fired + 1}' in text
    assert sample("triggerhub_event_to_activation_record_seconds_count", {}) == before_count + 1
    assert sample("triggerhub_event_to_activation_record_seconds_bucket", {"le": "0.005"}) == before_fast + 1


def test_the_queue_is_applied_by_the_hook_that_fills_it() -> None:
    metrics.configure(enabled=True, max_names=500)
    metrics.flush()
    child = metrics.EVENTS_REJECTED.labels("api", "/q/full", "duplicate")
    for _ in range(metrics.FLUSH_AT):
        metrics.event_rejected("api", "/q/full", "duplicate")
    assert child._value.get() == metrics.FLUSH_AT  # applied without a scrape
    metrics.event_rejected("api", "/q/full", "duplicate")
    assert child._value.get() == metrics.FLUSH_AT  # queued until the next scrape or full queue
    assert sample("triggerhub_events_rejected_total", {"feed": "api", "trigger": "/q/full", "reason": "duplicate"}) \
        == metrics.FLUSH_AT + 1


def test_hooks_and_scrapes_on_many_threads_lose_no_update() -> None:
    metrics.configure(enabled=True, max_names=500)
    labels = {"feed": "api", "trigger": "/q/threads"}
    before = sample("triggerhub_events_received_total", labels)
    per_thread, threads = 5_000, 4

    def hooks() -> None:
        for _ in range(per_thread):
            metrics.event_received("api", "/q/threads")

    def scrapes() -> None:
        for _ in range(50):
            generate_latest(metrics.REGISTRY)

    workers = [threading.Thread(target=hooks) for _ in range(threads)] + [threading.Thread(target=scrapes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sample("triggerhub_events_received_total", labels) == before + per_thread * threads
