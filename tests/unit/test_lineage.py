"""W3C trace context parsing and the lineage document, as pure functions."""

from __future__ import annotations

import dataclasses

from triggerhub.model import (
    Activation, ActivationResponse, FullyQualifiedName, Parameter, StatusCode, TriggerEvent,
)
from triggerhub.observe import lineage
from triggerhub.observe.trace import (
    TraceContext, activation_span_id, decision_span_id, derived_trace, event_span_id, first_valid, parse,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
SENT = f"00-{TRACE}-{SPAN}-01"
API = "org.openwhisk.trigger.fire"


def test_a_valid_traceparent_is_parsed_and_normalised() -> None:
    assert parse(SENT) == TraceContext(TRACE, SPAN, "01")
    assert parse(f" 00-{TRACE.upper()}-{SPAN}-00 ") == TraceContext(TRACE, SPAN, "00")
    assert parse(f"cc-{TRACE}-{SPAN}-01-future-field") == TraceContext(TRACE, SPAN, "01")  # a later version


def test_an_invalid_traceparent_is_ignored() -> None:
    for bad in (None, 7, "", "garbage", f"ff-{TRACE}-{SPAN}-01", f"00-{'0' * 32}-{SPAN}-01",
                f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{SPAN}-01-extra", f"00-{TRACE[:-1]}-{SPAN}-01"):
        assert parse(bad) is None, bad
    assert first_valid("nonsense", None, SENT, f"00-{'1' * 32}-{SPAN}-01") == SENT


def event(traceparent: str | None = None, **extra: object) -> TriggerEvent:
    return TriggerEvent("evt-1", "mqtt://broker", "triggerhub.feed.mqtt.message", FullyQualifiedName("guest", "t"),
                        {"n": 1}, time_ms=1_000, traceparent=traceparent, **extra)  # type: ignore[arg-type]


def test_an_event_continues_the_trace_it_was_sent_and_keeps_what_was_sent() -> None:
    traced = lineage.traced_event(event(SENT, origin={"topic": "a/b"}))
    assert traced.traceparent == f"00-{TRACE}-{event_span_id('evt-1')}-01"
    assert traced.origin == {"topic": "a/b", "traceparent": SENT}
    assert lineage.traced_event(traced) == traced  # applied twice (a redelivered event): unchanged


def test_an_event_without_a_context_starts_one_derived_from_its_id() -> None:
    first = lineage.traced_event(event())
    assert first.traceparent == derived_trace("evt-1").traceparent == lineage.traced_event(event()).traceparent
    assert first.origin is None
    assert lineage.traced_event(event("not-a-traceparent")).traceparent == first.traceparent


def test_the_fire_paths_strings_are_the_contexts() -> None:
    """The hot path builds traceparents as strings (no TraceContext): the same text as the context's."""
    for sent in (None, SENT, f"00-{TRACE}-{SPAN}-00", "not-a-traceparent"):
        own = lineage.event_traceparent(event(sent))
        assert own == lineage.event_context(event(sent)).traceparent, sent
        context = parse(own)
        assert context is not None
        activation_id = "a" * 16 + "b" * 16
        assert lineage.activation_annotations(own, "evt-1", activation_id, "guest/r")[0] == Parameter(
            "traceparent", context.child(activation_span_id(activation_id)).traceparent)
    assert lineage.event_traceparent(lineage.traced_event(event(SENT))) == lineage.traced_event(event(SENT)).traceparent


def record(activation_id: str, *, cause: str | None = None, status: StatusCode = StatusCode.SUCCESS,
           annotations: tuple[Parameter, ...] = ()) -> Activation:
    return Activation("guest", f"a-{activation_id[:4]}", "guest", activation_id, 1_010, 1_020,
                      ActivationResponse(status, {}), annotations=annotations, cause=cause)


def test_the_document_links_decisions_activations_components_and_retries() -> None:
    traced = lineage.traced_event(event(SENT))
    context = lineage.event_context(traced)
    seq, first, second, retry = "a" * 32, "b" * 32, "c" * 32, "d" * 32
    decisions = (
        lineage.decision("guest/r1", lineage.Decision.MATCHED, action="/guest/seq",
                         activation_id=seq),
        lineage.decision("guest/r2", lineage.Decision.FILTERED, action="/guest/x"),
        lineage.decision("guest/r3", lineage.Decision.MATCHED, action="/guest/y",
                         activation_id="e" * 32),
    )
    stored = dataclasses.replace(traced, decisions=decisions)
    top = lineage.activation_annotations(context.traceparent, "evt-1", seq, "guest/r1")
    records = [
        record(seq, annotations=top),
        record(first, cause=seq, annotations=lineage.child_annotations(top, first)),
        record(second, cause=seq, status=StatusCode.APPLICATION_ERROR, annotations=lineage.child_annotations(top, second)),
        record(retry, annotations=(Parameter("attempt", 2), *top)),
    ]
    document = lineage.lineage_document(stored, records, trigger_activation_id="f" * 32, api_type=API)
    assert document["traceId"] == TRACE
    assert document["source"] == {"traceparent": SENT, "kind": "mqtt", "type": "triggerhub.feed.mqtt.message",
                                  "source": "mqtt://broker", "parentSpanId": SPAN}
    assert document["event"]["triggerActivationId"] is None  # no trigger record among `records`
    rules = {r["rule"]: r for r in document["rules"]}
    assert rules["guest/r1"]["status"] == "success" and rules["guest/r3"]["status"] == "pending"
    assert rules["guest/r2"] == {"rule": "guest/r2", "action": "/guest/x", "decision": "filtered",
                                 "spanId": decision_span_id("evt-1", "guest/r2")}
    by_id = {a["activationId"]: a for a in document["activations"]}
    assert by_id[seq]["role"] == "rule" and by_id[seq]["rule"] == "guest/r1"
    assert by_id[seq]["parentSpanId"] == decision_span_id("evt-1", "guest/r1")
    assert by_id[seq]["children"] == [first, second]
    assert by_id[second]["role"] == "component" and by_id[second]["status"] == "application error"
    assert by_id[second]["parentSpanId"] == activation_span_id(seq) == by_id[seq]["spanId"]
    assert by_id[retry]["role"] == "retry" and by_id[retry]["attempt"] == 2
    assert {a["traceparent"].split("-")[1] for a in document["activations"]} == {TRACE}


def test_a_stamped_event_keeps_every_other_field() -> None:
    """lineage.stamped builds the stored event with TriggerEvent's constructor: a field added to
    TriggerEvent must be carried over there too, and this names it."""
    assert [f.name for f in dataclasses.fields(TriggerEvent)] == [
        "id", "source", "type", "trigger", "data", "subject", "time_ms", "datacontenttype", "traceparent", "origin",
        "decisions"], "TriggerEvent's fields changed: carry the new one over in lineage.stamped"
    sent = TriggerEvent("evt-2", "webhook:/guest/hook", "triggerhub.feed.webhook.delivery",
                        FullyQualifiedName("guest", "hook"), {"n": 2}, "sub", 2_000, "text/plain", SENT, {"delivery": "d-1"})
    decisions = (lineage.decision("r", lineage.Decision.MATCHED, action="guest/a", activation_id="a" * 32),)
    context = lineage.event_context(sent)
    stamped = lineage.stamped(sent, context.traceparent, decisions)
    assert stamped == dataclasses.replace(sent, traceparent=context.traceparent,
                                          origin={"delivery": "d-1", "traceparent": SENT}, decisions=decisions)
    assert stamped.traceparent == f"00-{TRACE}-{event_span_id('evt-2')}-01"
