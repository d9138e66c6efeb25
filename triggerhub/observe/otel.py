"""OpenTelemetry export of lineage spans: optional and off by default (TRIGGERHUB_OTEL=console|otlp,
with the `otel` extra: `pip install 'triggerhub[otel]'`; otlp also needs
opentelemetry-exporter-otlp-proto-http, which reads the standard OTEL_EXPORTER_OTLP_* variables).

The spans carry exactly the ids lineage stores (observe/lineage.py), so a trace backend shows the
chain `GET .../events/{id}/lineage` returns: the event span (child of the sender's span when it
sent one) with its rule decisions as zero-length child spans, then each activation under its rule
decision or its sequence. Spans are built when their record is stored and handed to the SDK's
batch processor: exporting never blocks the hub's path.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from triggerhub.errors import ConfigError
from triggerhub.model import JSON, Activation, TriggerEvent, annotation, now_ms
from triggerhub.observe import lineage
from triggerhub.observe.trace import decision_span_id, event_span_id, parse

log = logging.getLogger(__name__)

CHOICES = ("off", "console", "otlp")
SCOPE = "triggerhub.lineage"


class SpanExport:
    """Turns stored events and records into finished spans for one SDK span processor."""

    def __init__(self, processor: Any, *, service: str) -> None:
        # The SDK is an optional extra: imported only where an export was asked for.
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self._processor = processor
        self._resource = Resource.create({"service.name": service})
        self._scope = InstrumentationScope(SCOPE)

    def event_accepted(self, event: TriggerEvent, accepted_ms: int) -> None:
        context = parse(event.traceparent)
        if context is None:
            return
        sent = parse((event.origin or {}).get(lineage.TRACEPARENT))
        start_ns, end_ns = event.time_ms * 1_000_000, max(event.time_ms, accepted_ms) * 1_000_000
        self._span(f"event {event.trigger}", context.trace_id, context.span_id,
                   sent.span_id if sent is not None else None, start_ns, end_ns,
                   {"triggerhub.event.id": event.id, "triggerhub.trigger": str(event.trigger),
                    "triggerhub.event.type": event.type})
        for decision in event.decisions:
            rule = str(decision.get("rule"))
            attributes = {"triggerhub.rule": rule, "triggerhub.decision": str(decision.get("decision")),
                          "triggerhub.event.id": event.id}
            if isinstance(decision.get("reason"), str):
                attributes["triggerhub.reason"] = str(decision["reason"])
            self._span(f"rule {rule}", context.trace_id, decision_span_id(event.id, rule), context.span_id,
                       end_ns, end_ns, attributes)

    def activation_stored(self, record: Activation) -> None:
        context = parse(lineage.traceparent_of(record.annotations))
        event_id = annotation(record.annotations, lineage.EVENT)
        if context is None or (isinstance(event_id, str) and context.span_id == event_span_id(event_id)):
            return  # no context, or the trigger's own record: that span is the event's
        start_ms = record.start_ms
        self._span(f"activation {record.namespace}/{record.name}", context.trace_id, context.span_id,
                   lineage.parent_span_id(record.annotations, record.cause), start_ms * 1_000_000,
                   max(start_ms, record.end_ms) * 1_000_000,
                   {"triggerhub.activation.id": record.activation_id,
                    "triggerhub.status": record.response.status_code.text},
                   error=record.response.status_code != 0)

    def force_flush(self) -> None:
        self._processor.force_flush()

    def shutdown(self) -> None:
        self._processor.shutdown()

    def _span(self, name: str, trace_id: str, span_id: str, parent_id: str | None, start_ns: int, end_ns: int,
              attributes: dict[str, Any], *, error: bool = False) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

        def span_context(span: str) -> SpanContext:
            return SpanContext(int(trace_id, 16), int(span, 16), is_remote=False,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED))

        self._processor.on_end(ReadableSpan(
            name, context=span_context(span_id), parent=span_context(parent_id) if parent_id else None,
            resource=self._resource, attributes=attributes, start_time=start_ns, end_time=end_ns,
            status=Status(StatusCode.ERROR if error else StatusCode.UNSET), instrumentation_scope=self._scope))


class _State:
    export: SpanExport | None = None


def configure(choice: str, *, service: str, exporter: Any = None) -> None:
    """Called once by the composition root; `exporter` (a SpanExporter) overrides `choice` (tests)."""
    if _State.export is not None:
        _State.export.shutdown()
        _State.export = None
    if exporter is None and choice == "off":
        return
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(f"TRIGGERHUB_OTEL={choice}: the OpenTelemetry SDK is not installed ({exc}); "
                          "pip install 'triggerhub[otel]' or set TRIGGERHUB_OTEL=off") from exc
    if exporter is not None:
        _State.export = SpanExport(SimpleSpanProcessor(exporter), service=service)
        return
    if choice == "console":
        _State.export = SpanExport(BatchSpanProcessor(ConsoleSpanExporter()), service=service)
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(f"TRIGGERHUB_OTEL=otlp: the OTLP exporter is not installed ({exc}); "
                          "pip install opentelemetry-exporter-otlp-proto-http, or use console") from exc
    _State.export = SpanExport(BatchSpanProcessor(OTLPSpanExporter()), service=service)


def event_accepted(event: TriggerEvent, accepted_ms: int | None = None, *,
                   decisions: tuple[dict[str, JSON], ...] | None = None) -> None:
    """`accepted_ms` defaults to now (read only when spans are exported); `decisions`, the event's
    rule decisions when they are not in `event` (as stored: Acceptance.decisions)."""
    if _State.export is not None:
        _State.export.event_accepted(event if decisions is None else replace(event, decisions=decisions),
                                     now_ms() if accepted_ms is None else accepted_ms)


def activation_stored(record: Activation) -> None:
    if _State.export is not None:
        _State.export.activation_stored(record)


def shutdown() -> None:
    """Export what is buffered and stop (the composition root, when the process stops)."""
    if _State.export is not None:
        _State.export.shutdown()
        _State.export = None
