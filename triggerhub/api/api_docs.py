"""The OpenAPI 3.1 document of the hub's HTTP API, served at `GET /api/v1/api-docs` (where
OpenWhisk serves its Swagger), built once from the tables below.

Every path item names the aiohttp route serving it (`x-aiohttp-route`, with `x-aiohttp-any-method`
for routes registered for every method, `x-aiohttp-refuses-other-methods` for an entity's route whose
other methods get one 405 handler, and `x-aiohttp-aliases` for trailing-slash variants), so
tests/unit/test_api_docs.py can prove the document and the router list the same routes.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from aiohttp import web

from triggerhub import __version__
from triggerhub.engine import kinds
from triggerhub.model import Kind

Doc = dict[str, Any]
_CODE_KINDS = sorted({*kinds.CODE_KINDS, *kinds.ALIASES, *(f"{family}:default" for family in kinds.DEFAULT_KIND)})
NAME_PATTERN = r"^[\w]([\w@ .&-]{0,254}[\w@.&-])?$"  # model.ENTITY_NAME_RE, as JSON Schema sees it


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: Doc) -> Doc:
    return {"type": "array", "items": item}


_KEY_VALUES = _array(_ref("KeyValue"))
_BASE = {"namespace": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
         "publish": {"type": "boolean"}, "annotations": _KEY_VALUES, "updated": {"type": "integer"}}
_BASE_REQUIRED = ["namespace", "name", "version", "publish", "annotations"]
_REF_PAIR = {"type": "object", "required": ["path", "name"],
             "properties": {"path": {"type": "string"}, "name": {"type": "string"}}}
_DERIVE = {"type": ["object", "null"], "description": "a derived trigger (README: Correlation and absence): "
           "{kind: absence, from, key, forS} or {kind: all|sequence, from: [a, b], key, windowS}; null removes it",
           "properties": {"kind": {"type": "string", "enum": ["all", "sequence", "absence"]},
                          "from": {"anyOf": [{"type": "string"}, _array({"type": "string"})]},
                          "key": {"type": "string"}, "forS": {"type": "number"}, "windowS": {"type": "number"}}}
_ACTIVATION_BASE = {
    "namespace": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
    "publish": {"type": "boolean"}, "annotations": _KEY_VALUES, "activationId": {"type": "string"},
    "start": {"type": "integer"}, "end": {"type": "integer"}, "duration": {"type": "integer"},
    "cause": {"type": "string"},
}

_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_SPAN = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}$"}
# The lineage document (observe/lineage.py `lineage_document`), for the dashboard and `event trace`.
LINEAGE_SCHEMAS: dict[str, Doc] = {
    "Lineage": {
        "type": "object", "required": ["lineageVersion", "eventId", "traceId", "source", "event", "rules", "activations"],
        "description": "One trigger event's chain. Every span shares `traceId` (W3C trace context). Parents: the "
                       "event's is `source.parentSpanId` (the sender's span, when it sent a traceparent); a rule "
                       "decision's is the event; a rule activation's is its rule decision (`rules[].spanId`); a "
                       "sequence component's is the sequence activation (`cause`).",
        "properties": {
            "lineageVersion": {"const": 1}, "eventId": _TEXT,
            "traceId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "source": {"type": "object", "required": ["kind", "type", "source"], "description":
                       "The source message: kind (api, mqtt, webhook, kafka, alarm, file, postgres, sqlite), "
                       "mqtt: topic, qos, messageId (packet id, QoS 1/2); webhook: deliveryId; kafka: topic, "
                       "partition, offset, count; traceparent: what the source sent, if any",
                       "properties": {"kind": _TEXT, "type": _TEXT, "source": _TEXT, "topic": _TEXT,
                                      "messageId": {"type": "integer"}, "deliveryId": _TEXT,
                                      "traceparent": _TEXT, "parentSpanId": _SPAN}},
            "event": {"type": "object", "required": ["id", "trigger", "time", "traceparent", "spanId"],
                      "properties": {"id": _TEXT, "trigger": _TEXT, "time": {"type": "integer", "description": "ms"},
                                     "subject": _TEXT_OR_NULL, "traceparent": _TEXT, "spanId": _SPAN,
                                     "triggerActivationId": _TEXT_OR_NULL}},
            "rules": _array(_ref("LineageRule")),
            "activations": _array(_ref("LineageActivation")),
        }},
    "LineageRule": {
        "type": "object", "required": ["rule", "action", "decision", "spanId"],
        "properties": {"rule": {"type": "string", "description": "namespace/rule"}, "action": _TEXT,
                       "decision": {"type": "string", "enum": ["matched", "filtered", "refused", "shadow"]},
                       "reason": {"type": "string", "description": "refused: why"},
                       "activationId": {"type": "string", "description": "matched: the rule activation"},
                       "status": {"type": "string", "description": "matched: the activation's status, or pending"},
                       "spanId": _SPAN}},
    "LineageActivation": {
        "type": "object", "required": ["activationId", "name", "role", "status", "statusCode", "start", "spanId",
                                       "parentSpanId", "children"],
        "properties": {"activationId": _TEXT, "name": _TEXT, "namespace": _TEXT, "path": _TEXT_OR_NULL,
                       "role": {"type": "string", "enum": ["trigger", "rule", "component", "retry", "replay"]},
                       "status": _TEXT, "statusCode": {"type": "integer"}, "start": {"type": "integer"},
                       "end": {"type": "integer"}, "duration": {"type": ["integer", "null"]},
                       "cause": _TEXT_OR_NULL, "traceparent": _TEXT_OR_NULL, "spanId": _SPAN,
                       "parentSpanId": _SPAN, "children": _array(_TEXT), "rule": _TEXT,
                       "attempt": {"type": "integer"}, "causedBy": _TEXT,
                       "replay": {"type": "boolean", "description": "a replayed run of this stored event"}}},
}

SCHEMAS: dict[str, Doc] = {
    "Error": {"type": "object", "required": ["error"], "description": "Every 4xx/5xx answer of the API.",
              "properties": {"error": {"type": "string"}, "code": {"type": "string",
                                                                     "description": "the request id"}}},
    "KeyValue": {"type": "object", "required": ["key"],
                 "properties": {"key": {"type": "string"}, "value": {}, "init": {"type": "boolean"}}},
    "Limits": {"type": "object", "properties": {k: {"type": "integer"} for k in
                                                ("timeout", "memory", "logs", "concurrency")}},
    "ExecView": {"type": "object", "required": ["kind"], "description": "code is left out with ?code=false",
                 "properties": {"kind": {"type": "string"}, "code": {"type": "string"}, "image": {"type": "string"},
                                "main": {"type": "string"}, "binary": {"type": "boolean"},
                                "components": _array({"type": "string"})}},
    "Exec": {"anyOf": [
        {"type": "object", "required": ["kind", "code"], "properties": {
            "kind": {"type": "string", "enum": _CODE_KINDS}, "code": {"type": "string"},
            "main": {"type": "string"}, "binary": {"type": "boolean"}}},
        {"type": "object", "required": ["kind", "image"], "properties": {
            "kind": {"const": Kind.BLACKBOX}, "image": {"type": "string", "minLength": 1},
            "code": {"type": "string"}, "main": {"type": "string"}, "binary": {"type": "boolean"}}},
        {"type": "object", "required": ["kind", "components"], "properties": {
            "kind": {"const": Kind.SEQUENCE}, "components": {"type": "array", "minItems": 1,
                                                             "items": {"type": "string"}}}}]},
    "ActionPut": {"type": "object", "properties": {
        "exec": _ref("Exec"), "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "limits": _ref("Limits"),
        "version": {"type": "string"}, "publish": {"type": "boolean"},
        "delAnnotations": _array({"type": "string"})}},
    "Action": {"type": "object", "required": [*_BASE_REQUIRED, "exec", "parameters", "limits"], "properties": {
        **_BASE, "exec": _ref("ExecView"), "parameters": _KEY_VALUES, "limits": _ref("Limits")}},
    "ActionSummary": {"type": "object", "required": [*_BASE_REQUIRED, "exec", "limits"], "properties": {
        **_BASE, "limits": _ref("Limits"),
        "exec": {"type": "object", "properties": {"binary": {"type": "boolean"}}}}},
    "TriggerPut": {"type": "object", "properties": {
        "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "version": {"type": "string"},
        "publish": {"type": "boolean"}, "delAnnotations": _array({"type": "string"}),
        "derive": _DERIVE}},
    "Trigger": {"type": "object", "required": [*_BASE_REQUIRED, "parameters"], "properties": {
        **_BASE, "parameters": _KEY_VALUES, "limits": {"type": "object"}, "derive": _DERIVE,
        "rules": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "action": _REF_PAIR, "status": {"type": "string", "enum": ["active", "inactive"]}}}}}},
    "TriggerSummary": {"type": "object", "required": _BASE_REQUIRED, "properties": _BASE},
    "RulePut": {"type": "object", "properties": {
        "trigger": {"anyOf": [{"type": "string"}, _REF_PAIR]}, "action": {"anyOf": [{"type": "string"}, _REF_PAIR]},
        "status": {"type": "string", "enum": ["active", "inactive", ""]}, "annotations": _KEY_VALUES,
        "version": {"type": "string"}, "publish": {"type": "boolean"}, "delAnnotations": _array({"type": "string"}),
        "filter": {"type": ["object", "null"], "description": "an event pattern (README: Filter patterns); null removes it"},
        "transform": {"type": ["object", "null"], "description": "a JSON template of the action's parameters; null removes it"},
        "retry": {"type": ["object", "null"], "description": "retry policy (README: Delivery semantics); null removes it",
                  "properties": {"maxAttempts": {"type": "integer"}, "initialDelayMs": {"type": "integer"},
                                 "maxDelayMs": {"type": "integer"}, "maxEventAgeS": {"type": "integer"},
                                 "on": _array({"type": "string"})}},
        "deadLetter": {"type": ["object", "null"], "description": "{\"trigger\": \"/ns/name\"} fired per dead letter",
                       "properties": {"trigger": {"type": "string"}}},
        "shadow": {"type": "boolean", "description": "match, count and record what would run; run nothing"}}},
    "RuleStatus": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["active", "inactive"]}}},
    "Rule": {"type": "object", "required": [*_BASE_REQUIRED, "status", "trigger", "action"], "properties": {
        **_BASE, "status": {"type": "string", "enum": ["active", "inactive"]},
        "trigger": _REF_PAIR, "action": _REF_PAIR, "filter": {"type": "object"}, "transform": {"type": "object"},
        "retry": {"type": "object"}, "deadLetter": {"type": "object"},
        "shadow": {"type": "boolean", "const": True},
        "counts": {"type": "object", "description": "rules with a filter or shadow: events it took and filtered out",
                   "properties": {"matched": {"type": "integer"}, "filtered": {"type": "integer"}}}}},
    "ExplainRequest": {"anyOf": [
        {"type": "object", "required": ["eventId"], "properties": {"eventId": {"type": "string"}}},
        {"type": "object", "required": ["data"], "properties": {
            "data": {}, "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
            "subject": {"type": "string"}, "time": {"type": "string"}, "datacontenttype": {"type": "string"},
            "specversion": {"type": "string"}}}]},
    "Explanation": {"type": "object", "required": ["matched", "clauses", "params"], "properties": {
        "matched": {"type": "boolean"}, "params": {"type": ["object", "null"]}, "error": {"type": "string"},
        "clauses": _array({"type": "object", "properties": {
            "path": {"type": "string"}, "value": {}, "present": {"type": "boolean"}, "matched": {"type": "boolean"},
            "test": {}, "group": {"type": "string"}}}),
        "event": {"type": "object", "description": "eventId: the stored event"},
        "rules": _array({"type": "object", "description": "eventId: every rule of the event's trigger, with its "
                                                          "status, verdict and outcome (shadowed: with wouldRun)"}),
        "shadow": {"type": "boolean", "description": "the rule is a shadow: it would match as shown and run nothing"},
        "reason": {"type": "string"}}},
    **LINEAGE_SCHEMAS,
    "DeadLetter": {"type": "object", "required": ["id", "rule", "eventId", "activationId", "reason", "attempts", "time"],
                   "properties": {"id": {"type": "string"}, "rule": {"type": "string"}, "eventId": {"type": "string"},
                                  "activationId": {"type": "string"}, "reason": {"type": "string"},
                                  "attempts": {"type": "integer"}, "time": {"type": "integer"},
                                  "redrivenBy": {"type": "string", "description": "the activation id of the "
                                                 "redrive under way, while one runs"}}},
    "RedriveRequest": {"type": "object", "properties": {
        "ids": _array({"type": "string"}), "action": {"anyOf": [{"type": "string"}, _REF_PAIR]}}},
    "Redriven": {"type": "object", "required": ["activationIds", "skipped"],
                 "properties": {"activationIds": _array({"type": "string"}),
                                "skipped": {**_array({"type": "string"}),
                                            "description": "letters not run: another redrive of them is under way"}}},
    "ReplayRequest": {"type": "object", "properties": {
        "from": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
                 "description": "epoch ms or ISO-8601 with a zone; with to: events with from <= time <= to"},
        "to": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]},
        "ids": _array({"type": "string"}), "force": {"type": "boolean"}}},
    "Replay": {"type": "object", "required": ["rule", "force", "events", "matched", "run", "skipped", "filtered",
                                              "failed", "activationIds"], "properties": {
        "rule": {"type": "string"}, "force": {"type": "boolean"}, "events": {"type": "integer"},
        "matched": {"type": "integer"}, "run": {"type": "integer"}, "skipped": {"type": "integer"},
        "filtered": {"type": "integer"}, "failed": {"type": "integer"}, "activationIds": _array({"type": "string"}),
        "errors": _array({"type": "string"})}},
    "PackagePut": {"type": "object", "properties": {
        "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "version": {"type": "string"},
        "publish": {"type": "boolean"}, "delAnnotations": _array({"type": "string"}),
        "binding": {"type": "object", "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}}}},
    "Package": {"type": "object", "required": [*_BASE_REQUIRED, "binding", "parameters", "actions", "feeds"],
                "properties": {**_BASE, "binding": {"type": "object"}, "parameters": _KEY_VALUES,
                               "actions": _array({"type": "object"}), "feeds": _array({"type": "object"})}},
    "PackageSummary": {"type": "object", "required": [*_BASE_REQUIRED, "binding"], "properties": {
        **_BASE, "binding": {"anyOf": [{"type": "boolean", "const": False}, {"type": "object"}]}}},
    "Count": {"type": "object", "minProperties": 1, "maxProperties": 1,
              "additionalProperties": {"type": "integer", "minimum": 0},
              "description": "`count=true`: {\"<collection>\": N}"},
    "Result": {"type": "object", "required": ["status", "success"], "properties": {
        "status": {"type": "string"}, "success": {"type": "boolean"}, "result": {}, "size": {"type": "integer"}}},
    "Activation": {"type": "object", "required": ["namespace", "name", "activationId", "start", "response", "logs"],
                   "properties": {**_ACTIVATION_BASE, "subject": {"type": "string"}, "response": _ref("Result"),
                                  "logs": _array({"type": "string"})}},
    "ActivationSummary": {"type": "object", "required": ["namespace", "name", "activationId", "start", "statusCode"],
                          "properties": {**_ACTIVATION_BASE, "statusCode": {"type": "integer"}}},
    "ActivationId": {"type": "object", "required": ["activationId"],
                     "properties": {"activationId": {"type": "string"}}},
    "Logs": {"type": "object", "required": ["logs"], "properties": {"logs": _array({"type": "string"})}},
    "Limits.Namespace": {"type": "object", "additionalProperties": {"type": "integer"}},
    "HookAccepted": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
}

_JSON = "application/json"


def _content(schema: Doc) -> Doc:
    return {"content": {_JSON: {"schema": schema}}}


# aiohttp's HTTP parser answers a request it cannot parse (a request line or header past 8190
# bytes, a control character in a header) itself, in text/plain, before any handler runs.
_ERROR: Doc = {"description": "an error; requests the HTTP parser refuses get text/plain",
               "content": {_JSON: {"schema": _ref("Error")}, "text/plain": {"schema": {"type": "string"}}}}


def _responses(ok: dict[int, tuple[str, Doc | None]]) -> Doc:
    out: Doc = {str(status): {"description": text, **(_content(schema) if schema is not None else {})}
                for status, (text, schema) in ok.items()}
    out["default"] = _ERROR
    return out


def _param(name: str, where: str, schema: Doc, description: str = "", *, required: bool = False) -> Doc:
    out: Doc = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if description:
        out["description"] = description
    return out


def _path_name(name: str, description: str) -> Doc:
    return _param(name, "path", {"type": "string", "pattern": NAME_PATTERN}, description)


_NAMESPACE = _path_name("namespace", "a namespace, or _ for the caller's own")
_BOOL = {"type": "string", "enum": ["true", "false"]}
_LIST_QUERY = [_param("skip", "query", {"type": "integer", "minimum": 0}),
               _param("limit", "query", {"type": "integer", "minimum": 0, "maximum": 200}),
               _param("count", "query", _BOOL)]


def _list(summary_schema: str, what: str) -> Doc:
    return {"get": {"summary": f"List {what}", "parameters": _LIST_QUERY, "responses": _responses({
        200: (f"{what}, or a count", {"anyOf": [_array(_ref(summary_schema)), _ref("Count")]})})}}


def _entity(kind: str, *, put_query: list[Doc], extra: Doc) -> Doc:
    body = {"required": False, **_content(_ref(f"{kind}Put"))}
    return {
        "get": {"summary": f"Get a {kind.lower()}", "responses": _responses({200: (kind.lower(), _ref(kind))})},
        "put": {"summary": f"Create or update a {kind.lower()}", "parameters": put_query, "requestBody": body,
                "responses": _responses({200: (f"the stored {kind.lower()}", _ref(kind))})},
        "delete": {"summary": f"Delete a {kind.lower()}", "responses": _responses({200: ("the deleted one", _ref(kind))})},
        **extra,
    }


def _with(item: Doc, parameters: list[Doc], **extensions: Any) -> Doc:
    return {**{f"x-{k.replace('_', '-')}": v for k, v in extensions.items()}, "parameters": parameters, **item}


_OVERWRITE = [_param("overwrite", "query", _BOOL)]
_PAYLOAD = {"required": False, **_content({"type": "object"})}
_ACTION_EXTRA = {"post": {
    "summary": "Invoke an action", "requestBody": _PAYLOAD,
    "parameters": [_param("blocking", "query", _BOOL), _param("result", "query", _BOOL),
                   _param("timeout", "query", {"type": "integer", "minimum": 1, "maximum": 60000})],
    "responses": _responses({
        200: ("blocking: the activation, or its result with result=true", {}),
        202: ("non-blocking, or the blocking wait expired", _ref("ActivationId")),
        502: ("blocking: the action failed (application or developer error)", {})})}}
_TRIGGER_EXTRA = {"post": {"summary": "Fire a trigger", "requestBody": _PAYLOAD, "responses": _responses({
    202: ("fired", _ref("ActivationId")), 204: ("no active rule", None)})}}
_RULE_EXTRA = {"post": {"summary": "Enable or disable a rule", "requestBody": _content(_ref("RuleStatus")),
                        "responses": _responses({200: ("the rule", _ref("Rule"))})}}
_ACTIVATION_QUERY = [_param("name", "query", {"type": "string"}, "action or package/action"),
                     _param("since", "query", {"type": "integer", "minimum": 0}, "epoch ms"),
                     _param("upto", "query", {"type": "integer", "minimum": 0}, "epoch ms"),
                     _param("docs", "query", _BOOL), *_LIST_QUERY]
_ACTIVATION_ID = _param("id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"})
_ANY_BODY: Doc = {"description": "whatever the action's result projects to", "content": {"*/*": {"schema": {}}}}
_WEB_OPERATION = {
    "summary": "Call a web action (reference 1.6): auth is optional unless the action requires it",
    "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
    "responses": {"200": _ANY_BODY, "201": _ANY_BODY, "202": _ANY_BODY, "204": {"description": "no body"},
                  "default": {"description": "an error or the action's own status", "content": {"*/*": {"schema": {}}}}},
}


def _paths() -> Doc:
    ns = "/api/v1/namespaces/{namespace}"
    action_name = _path_name("action", "an action")
    package_name = _path_name("package", "a package")
    paths: Doc = {
        "/api/v1/namespaces": {"x-aiohttp-aliases": ["/api/v1/namespaces/"], "get": {
            "summary": "The caller's namespaces", "responses": _responses({200: ("names", _array({"type": "string"}))})}},
        f"{ns}/limits": _with({"get": {"summary": "The namespace's limits", "responses": _responses({
            200: ("limits", _ref("Limits.Namespace"))})}}, [_NAMESPACE]),
        f"{ns}/actions": _with(_list("ActionSummary", "actions"), [_NAMESPACE],
                               aiohttp_aliases=[f"{ns}/actions/"]),
        f"{ns}/actions/{{package}}/": _with(_list("ActionSummary", "the actions of a package"),
                                            [_NAMESPACE, package_name]),
        f"{ns}/actions/{{action}}": _with(_entity("Action", put_query=_OVERWRITE, extra=_ACTION_EXTRA),
                                          [_NAMESPACE, action_name], aiohttp_route=f"{ns}/actions/{{name}}",
                                          aiohttp_refuses_other_methods=True),
        f"{ns}/actions/{{package}}/{{action}}": _with(
            _entity("Action", put_query=_OVERWRITE, extra=_ACTION_EXTRA), [_NAMESPACE, package_name, action_name],
            aiohttp_route=f"{ns}/actions/{{name}}", aiohttp_refuses_other_methods=True),
        f"{ns}/triggers": _with(_list("TriggerSummary", "triggers"), [_NAMESPACE], aiohttp_aliases=[f"{ns}/triggers/"]),
        f"{ns}/triggers/{{name}}": _with(_entity("Trigger", put_query=_OVERWRITE, extra=_TRIGGER_EXTRA),
                                         [_NAMESPACE, _path_name("name", "a trigger")], aiohttp_refuses_other_methods=True),
        f"{ns}/rules": _with(_list("Rule", "rules"), [_NAMESPACE], aiohttp_aliases=[f"{ns}/rules/"]),
        f"{ns}/rules/{{name}}": _with(_entity("Rule", put_query=_OVERWRITE, extra=_RULE_EXTRA),
                                      [_NAMESPACE, _path_name("name", "a rule")], aiohttp_refuses_other_methods=True),
        f"{ns}/rules/{{name}}/explain": _with({"post": {
            "summary": "Why a rule would run for an event, or did not run for a stored one (nothing runs)",
            "requestBody": _content(_ref("ExplainRequest")),
            "responses": _responses({200: ("the trace", _ref("Explanation"))})}},
            [_NAMESPACE, _path_name("name", "a rule")]),
        f"{ns}/rules/{{name}}/deadletters": _with(_list("DeadLetter", "a rule's dead letters, oldest first"),
                                                  [_NAMESPACE, _path_name("name", "a rule")]),
        f"{ns}/rules/{{name}}/deadletters/redrive": _with({"post": {
            "summary": "Run dead letters again (all, or `ids`), through the rule's action or `action`",
            "requestBody": {"required": False, **_content(_ref("RedriveRequest"))},
            "responses": _responses({202: ("the new activations", _ref("Redriven"))})}},
            [_NAMESPACE, _path_name("name", "a rule")]),
        f"{ns}/rules/{{name}}/replay": _with({"post": {
            "summary": "Run stored events of the rule's trigger through the rule as it is now (once per event "
                       "unless forced)",
            "requestBody": _content(_ref("ReplayRequest")),
            "responses": _responses({200: ("counts per event", _ref("Replay"))})}},
            [_NAMESPACE, _path_name("name", "a rule")]),
        f"{ns}/packages": _with(_list("PackageSummary", "packages"), [_NAMESPACE], aiohttp_aliases=[f"{ns}/packages/"]),
        f"{ns}/packages/{{name}}": _with(
            _entity("Package", put_query=_OVERWRITE, extra={}), [_NAMESPACE, _path_name("name", "a package")],
            aiohttp_refuses_other_methods=True),
        f"{ns}/activations": _with({"get": {
            "summary": "List activations, newest first", "parameters": _ACTIVATION_QUERY, "responses": _responses({
                200: ("summaries, full records with docs=true, or a count",
                      {"anyOf": [_array(_ref("ActivationSummary")), _array(_ref("Activation")), _ref("Count")]})})}},
            [_NAMESPACE], aiohttp_aliases=[f"{ns}/activations/"]),
        f"{ns}/activations/{{id}}": _with({"get": {"summary": "One activation", "responses": _responses({
            200: ("the record", _ref("Activation"))})}}, [_NAMESPACE, _ACTIVATION_ID]),
        f"{ns}/activations/{{id}}/logs": _with({"get": {"summary": "An activation's logs", "responses": _responses({
            200: ("logs", _ref("Logs"))})}}, [_NAMESPACE, _ACTIVATION_ID]),
        f"{ns}/events/{{id}}/lineage": _with({"get": {
            "summary": "An event's lineage: source message, rule decisions, activations, sequence children, retries",
            "description": "The id is the event id a fire or a webhook answered (encode its slashes or not), or the "
                           "id of an activation descending from the event. Another namespace's event is 404.",
            "responses": _responses({200: ("the chain", _ref("Lineage"))})}},
            [_NAMESPACE, _param("id", "path", {"type": "string", "minLength": 1})]),
        f"{ns}/activations/{{id}}/result": _with({"get": {"summary": "An activation's result", "responses": _responses({
            200: ("result", _ref("Result"))})}}, [_NAMESPACE, _ACTIVATION_ID]),
        f"{ns}/dashboard/stream": _with({"get": {
            "summary": "The dashboard's live stream (server-sent events): `activations` (newest new records, "
                       "each 0.2 s) and `summary` (per second: fires per trigger, count and p50/p95/p99 duration "
                       "per action and rule)",
            "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {
                "schema": {"type": "string"}}}}, "default": _ERROR}}}, [_NAMESPACE]),
        "/api/v1/web/{namespace}/{package}/{action}": _with(
            {method: {**copy.deepcopy(_WEB_OPERATION), "security": [{}, {"basic": []}]}
             for method in ("get", "post", "put", "delete", "patch")},
            [_path_name("namespace", "the action's namespace"),
             _path_name("package", "the action's package, or default"), action_name],
            aiohttp_route="/api/v1/web/{namespace}/{tail}", aiohttp_any_method=True),
        **_route_management(),
        "/hooks/{namespace}/{trigger}": _with({"post": {
            "summary": "Deliver a webhook to a trigger's webhook feed (verified, 202 once stored)",
            "security": [{}], "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
            "responses": {"202": {"description": "stored", **_content(_ref("HookAccepted"))},
                          "default": {**_ERROR, "description": "400 undecodable, 401 unverified, 404 no feed, "
                                                                "409 replay, 413 too large"}}}},
            [_path_name("namespace", "the trigger's namespace"), _path_name("trigger", "the trigger")]),
        "/metrics": {"get": {
            "summary": "Prometheus metrics of this process, in the text exposition format (README: Seeing it)",
            "description": "No key by default, as Prometheus scrapers send none; with TRIGGERHUB_METRICS_TOKEN "
                           "set, `Authorization: Bearer <token>` is required and anything else is 401.",
            "security": [{}, {"metricsToken": []}],
            "responses": {"200": {"description": "text/plain; version=0.0.4", "content": {"text/plain": {
                "schema": {"type": "string"}}}}, "default": _ERROR}}},
        "/api/v1/api-docs": {"get": {"summary": "This document", "security": [{}], "responses": {
            "200": {"description": "OpenAPI 3.1", **_content({"type": "object"})}}}},
        "/api/v1": {"x-aiohttp-aliases": ["/api/v1/"], "get": {
            "summary": "API information", "security": [{}], "responses": {
                "200": {"description": "version and paths", **_content({"type": "object"})}}}},
    }
    return paths


def _route_management() -> Doc:
    """OpenWhisk's API gateway calls (api/routes.py): one aiohttp route per verb, `{operation}`
    being createApi, getApi or deleteApi (optionally with .json or .http)."""
    route = "/api/v1/web/whisk.system/apimgmt/{operation}"
    selection = [_param("basepath", "query", {"type": "string"}), _param("relpath", "query", {"type": "string"}),
                 _param("operation", "query", {"type": "string"}, "an HTTP verb"),
                 _param("namespace", "query", {"type": "string"})]
    api_value = {"type": "object", "required": ["namespace", "gwApiUrl", "apidoc"], "properties": {
        "namespace": {"type": "string"}, "gwApiActivated": {"type": "boolean"}, "tenantId": {"type": "string"},
        "gwApiUrl": {"type": "string"}, "apidoc": {"type": "object"}}}
    return {
        "/api/v1/web/whisk.system/apimgmt/createApi": {"x-aiohttp-route": route, "post": {
            "summary": "Create API gateway routes from an apidoc (OpenAPI 2.0 with x-openwhisk, or one route)",
            "parameters": [_param("responsetype", "query", {"type": "string"})],
            "requestBody": {"required": True, **_content({"type": "object", "required": ["apidoc"],
                                                          "properties": {"apidoc": {"type": "object"}}})},
            "responses": _responses({200: ("the base path's routes", api_value)})}},
        "/api/v1/web/whisk.system/apimgmt/getApi": {"x-aiohttp-route": route, "get": {
            "summary": "List the caller's API gateway routes", "parameters": selection,
            "responses": _responses({200: ("routes by base path", {
                "type": "object", "required": ["apis"], "properties": {"apis": _array({
                    "type": "object", "required": ["id", "key", "value"],
                    "properties": {"id": {"type": "string"}, "key": {"type": "string"}, "value": api_value}})}})})}},
        "/api/v1/web/whisk.system/apimgmt/deleteApi": {"x-aiohttp-route": route, "delete": {
            "summary": "Delete the caller's API gateway routes", "parameters": selection,
            "responses": _responses({200: ("deleted", {"type": "object"})})}},
    }


@functools.cache
def document() -> Doc:
    return {
        "openapi": "3.1.0",
        "info": {"title": "triggerhub (OpenWhisk REST API v1)", "version": __version__,
                 "description": "Entities, activations, web actions and webhooks. Authenticate with HTTP Basic "
                                "using a namespace key 'uuid:key'."},
        "servers": [{"url": "/"}],
        "security": [{"basic": []}],
        "paths": _paths(),
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                           "metricsToken": {"type": "http", "scheme": "bearer",
                                                            "description": "TRIGGERHUB_METRICS_TOKEN, when set"}}},
    }


async def api_docs(request: web.Request) -> web.Response:
    return web.json_response(document())


routes = [web.get("/api/v1/api-docs", api_docs)]
