"""OpenTelemetry export (optional): the spans carry the ids of the lineage document, parent by parent,
checked with the SDK's in-memory exporter."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from triggerhub.model import (
    Activation, ActivationResponse, FullyQualifiedName, Parameter, StatusCode, TriggerEvent,
)
from triggerhub.observe import lineage, otel
from triggerhub.rules.match import trigger_activation_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENT = f"00-{TRACE}-00f067aa0ba902b7-01"
API = "org.openwhisk.trigger.fire"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel.configure("off", service="triggerhub-test", exporter=exporter)
    try:
        yield exporter
    finally:
        otel.configure("off", service="triggerhub-test")


def test_spans_repeat_the_lineage_documents_ids_and_parents(exported: InMemorySpanExporter) -> None:
    event = lineage.traced_event(TriggerEvent("evt-9", "mqtt://b", "triggerhub.feed.mqtt.message",
                                              FullyQualifiedName("guest", "t"), {}, time_ms=5_000, traceparent=SENT))
    context = lineage.event_context(event)
    seq, step = "a" * 32, "b" * 32
    event = dataclasses.replace(event, decisions=(
        lineage.decision("guest/r", lineage.Decision.MATCHED, action="/guest/seq", activation_id=seq),
        lineage.decision("guest/f", lineage.Decision.FILTERED, action="/guest/x")))
    top = lineage.activation_annotations(context.traceparent, event.id, seq, "guest/r")
    records = [
        Activation("guest", "seq", "guest", seq, 5_010, 5_030, ActivationResponse(StatusCode.SUCCESS, {}),
                   annotations=top),
        Activation("guest", "step", "guest", step, 5_011, 5_020, ActivationResponse(StatusCode.APPLICATION_ERROR, {}),
                   annotations=(Parameter("causedBy", "sequence"), *lineage.child_annotations(top, step)), cause=seq),
        Activation("guest", "t", "guest", trigger_activation_id(event), 5_000, 0,
                   ActivationResponse(StatusCode.SUCCESS, {}), annotations=lineage.event_annotations(context.traceparent, event.id)),
    ]
    otel.event_accepted(event, 5_002)
    for record in records:
        otel.activation_stored(record)
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert set(spans) == {"event /guest/t", "rule guest/r", "rule guest/f", "activation guest/seq",
                          "activation guest/step"}  # the trigger's record is the event's span, not another
    document = lineage.lineage_document(event, records, trigger_activation_id=trigger_activation_id(event),
                                        api_type=API)
    assert {format(span.context.trace_id, "032x") for span in spans.values()} == {document["traceId"]} == {TRACE}

    def ids(name: str) -> tuple[str, str | None]:
        span = spans[name]
        return format(span.context.span_id, "016x"), format(span.parent.span_id, "016x") if span.parent else None

    rules = {r["rule"]: r for r in document["rules"]}
    by_id = {a["activationId"]: a for a in document["activations"]}
    assert ids("event /guest/t") == (document["event"]["spanId"], document["source"]["parentSpanId"])
    assert ids("rule guest/r") == (rules["guest/r"]["spanId"], document["event"]["spanId"])
    assert ids("activation guest/seq") == (by_id[seq]["spanId"], by_id[seq]["parentSpanId"]) == (
        by_id[seq]["spanId"], rules["guest/r"]["spanId"])
    assert ids("activation guest/step") == (by_id[step]["spanId"], by_id[seq]["spanId"])
    assert spans["rule guest/f"].attributes["triggerhub.decision"] == "filtered"
    assert spans["activation guest/step"].status.is_ok is False
    assert (spans["activation guest/seq"].start_time, spans["activation guest/seq"].end_time) == (
        5_010_000_000, 5_030_000_000)


def test_switched_off_nothing_is_exported(exported: InMemorySpanExporter) -> None:
    otel.configure("off", service="triggerhub-test")
    otel.activation_stored(Activation("guest", "a", "guest", "c" * 32, 1, 2, ActivationResponse(StatusCode.SUCCESS, {}),
                                      annotations=lineage.invoke_annotations("c" * 32)))
    assert exported.get_finished_spans() == ()


def test_an_unknown_exporter_is_refused_at_start_up() -> None:
    from triggerhub.config import load_config
    from triggerhub.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        load_config(env={"TRIGGERHUB_OTEL": "jaeger"})
    assert str(refused.value) == ("invalid configuration:\n  TRIGGERHUB_OTEL='jaeger': not one of off, console, otlp; "
                                  "off exports nothing")
    assert load_config(env={"TRIGGERHUB_OTEL": "Console"}).observe.otel == "console"
