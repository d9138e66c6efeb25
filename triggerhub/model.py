"""Domain records shared by every layer: entities, activations, trigger events, invocations.

Records are frozen dataclasses with plain-JSON fields; `*_to_json` / `*_from_json` give the
OpenWhisk REST shapes (reference/openwhisk.md section 2). No I/O here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Any, TypeAlias

JSON: TypeAlias = Any
DEFAULT_VERSION = "0.0.1"
ENTITY_NAME_RE = re.compile(r"\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\Z")
ACTIVATION_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_activation_id() -> str:
    """A random (version 4) UUID in 32 hex digits: `uuid.uuid4().hex` without building a UUID
    object (every fire and request makes one or two)."""
    return _versioned_hex(os.urandom(16), 0x40)


def uuid5_hex(namespace: uuid.UUID, name: str) -> str:
    """`uuid.uuid5(namespace, name).hex`, without building a UUID object: the derived ids of rule
    activations and delivery keys are computed several times per event."""
    return _versioned_hex(hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest(), 0x50)


def _versioned_hex(digest: bytes, version_bits: int) -> str:
    """The first 16 bytes of `digest` as an RFC 4122 UUID of that version, in hex."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | version_bits
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


def is_valid_name(name: str) -> bool:
    return bool(ENTITY_NAME_RE.match(name))


def bump_version(version: str) -> str:
    """Patch bump as OpenWhisk does on every update: 0.0.1 -> 0.0.2."""
    try:
        major, minor, patch = (int(p) for p in version.split("."))
    except ValueError:
        return DEFAULT_VERSION
    return f"{major}.{minor}.{patch + 1}"


class Collection(StrEnum):
    ACTIONS = "actions"
    TRIGGERS = "triggers"
    RULES = "rules"
    PACKAGES = "packages"


class Kind(StrEnum):
    """A runtime kind as an action's `exec.kind` names it, once resolved (`python:default` is not one)."""

    PYTHON_3_11 = "python:3.11"
    NODEJS_20 = "nodejs:20"
    SEQUENCE = "sequence"
    BLACKBOX = "blackbox"  # a user's Docker image serving the action protocol
    BUILTIN = "builtin"  # hub-internal actions (feed providers), never created through the API


# The code kinds this hub runs and each family's default: the API, `validate` and `deploy` all
# read them here, so a manifest validates exactly when it deploys.
HUB_KINDS = (Kind.PYTHON_3_11, Kind.NODEJS_20)
HUB_DEFAULT_KINDS = {"python": Kind.PYTHON_3_11, "nodejs": Kind.NODEJS_20}


class StatusCode(IntEnum):
    SUCCESS = 0
    APPLICATION_ERROR = 1
    DEVELOPER_ERROR = 2
    WHISK_ERROR = 3

    @property
    def text(self) -> str:
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    StatusCode.SUCCESS: "success",
    StatusCode.APPLICATION_ERROR: "application error",
    StatusCode.DEVELOPER_ERROR: "action developer error",
    StatusCode.WHISK_ERROR: "whisk internal error",
}


class RuleStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class FullyQualifiedName:
    """`/namespace[/package]/name`. `namespace` is the root namespace only."""

    namespace: str
    name: str
    package: str | None = None

    @property
    def path(self) -> str:
        """The entity's `namespace` field: `guest` or `guest/pkg`."""
        return f"{self.namespace}/{self.package}" if self.package else self.namespace

    def __str__(self) -> str:
        return f"/{self.path}/{self.name}"

    @property
    def relative(self) -> str:
        """`pkg/name` or `name`: the activation `name` filter form."""
        return f"{self.package}/{self.name}" if self.package else self.name

    @classmethod
    def from_path(cls, path: str, name: str) -> FullyQualifiedName:
        namespace, _, package = path.partition("/")
        return cls(namespace, name, package or None)

    @classmethod
    def parse(cls, text: str, default_namespace: str) -> FullyQualifiedName:
        """Parse `/ns/pkg/a`, `/ns/a`, `pkg/a` or `a`; `_` is the caller's namespace."""
        parts = [p for p in text.strip().split("/")]
        if text.startswith("/"):
            parts = parts[1:]
            if len(parts) == 2:
                ns, name, pkg = parts[0], parts[1], None
            elif len(parts) == 3:
                ns, pkg, name = parts
            else:
                raise ValueError(f"'{text}' is not a fully qualified name /namespace[/package]/name")
        elif len(parts) == 1:
            ns, pkg, name = default_namespace, None, parts[0]
        elif len(parts) == 2:
            ns, pkg, name = default_namespace, parts[0], parts[1]
        else:
            raise ValueError(f"'{text}' is not a valid name; use name, package/name or /namespace/package/name")
        if ns == "_":
            ns = default_namespace
        for part in (ns, pkg, name):
            if part is not None and not is_valid_name(part):
                raise ValueError(f"'{text}' contains an illegal name part '{part}'")
        return cls(ns, name, pkg)


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class Subject:
    """A user: one uuid:key credential and its namespace. Only a hash of the key is stored.
    A blocked subject does not authenticate (OpenWhisk's `wskadmin user block`)."""

    subject: str
    namespace: str
    uuid: str
    key_hash: str
    limits: dict[str, int] = field(default_factory=dict)
    blocked: bool = False


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller, held in memory only (the auth key is a secret)."""

    subject: str
    namespace: str
    uuid: str
    key: str
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def auth_key(self) -> str:
        return f"{self.uuid}:{self.key}"

    def __repr__(self) -> str:  # never leak the key through logs or tracebacks
        return f"Identity(subject={self.subject!r}, namespace={self.namespace!r})"


def new_credentials() -> tuple[str, str]:
    """A fresh (uuid, 64-character alphanumeric key) pair, OpenWhisk's credential shape."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return str(uuid.uuid4()), "".join(secrets.choice(alphabet) for _ in range(64))


# --------------------------------------------------------------------------- entities


@dataclass(frozen=True, slots=True)
class Parameter:
    key: str
    value: JSON
    init: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"key": self.key, "value": self.value}
        if self.init:
            out["init"] = True
        return out


Parameters: TypeAlias = tuple[Parameter, ...]


def params_from_json(items: list[dict[str, JSON]] | None) -> Parameters:
    return tuple(Parameter(i["key"], i.get("value"), bool(i.get("init", False))) for i in items or [])


def params_to_json(params: Parameters) -> list[dict[str, JSON]]:
    return [p.to_json() for p in params]


def params_to_dict(params: Parameters) -> dict[str, JSON]:
    return {p.key: p.value for p in params}


def annotation(annotations: Parameters, key: str, default: JSON = None) -> JSON:
    for a in annotations:
        if a.key == key:
            return a.value
    return default


def with_annotation(annotations: Parameters, key: str, value: JSON) -> Parameters:
    kept = tuple(a for a in annotations if a.key != key)
    return kept + (Parameter(key, value),)


@dataclass(frozen=True, slots=True)
class ActionLimits:
    timeout_ms: int = 60_000
    memory_mb: int = 256
    logs_mb: int = 10
    concurrency: int = 1

    def to_json(self) -> dict[str, int]:
        return {"timeout": self.timeout_ms, "memory": self.memory_mb, "logs": self.logs_mb,
                "concurrency": self.concurrency}

    @classmethod
    def from_json(cls, doc: dict[str, JSON] | None) -> ActionLimits:
        doc = doc or {}
        base = cls()
        return cls(int(doc.get("timeout", base.timeout_ms)), int(doc.get("memory", base.memory_mb)),
                   int(doc.get("logs", base.logs_mb)), int(doc.get("concurrency", base.concurrency)))


@dataclass(frozen=True, slots=True)
class Exec:
    """`kind` is resolved (never `:default`). Sequences carry `components` as FQN strings."""

    kind: str
    code: str | None = None
    binary: bool = False
    main: str | None = None
    image: str | None = None
    components: tuple[str, ...] = ()

    def to_json(self, *, include_code: bool = True) -> dict[str, JSON]:
        out: dict[str, JSON] = {"kind": self.kind}
        if self.kind == Kind.SEQUENCE:
            out["components"] = list(self.components)
            return out
        if self.image is not None:
            out["image"] = self.image
        if include_code and self.code is not None:
            out["code"] = self.code
        out["binary"] = self.binary
        if self.main is not None:
            out["main"] = self.main
        return out


@dataclass(frozen=True, slots=True)
class Action:
    namespace: str  # `guest` or `guest/pkg`
    name: str
    exec: Exec
    version: str = DEFAULT_VERSION
    publish: bool = False
    parameters: Parameters = ()
    annotations: Parameters = ()
    limits: ActionLimits = ActionLimits()
    updated_ms: int = 0
    revision: int = 0  # store-managed optimistic-concurrency counter

    @property
    def fqn(self) -> FullyQualifiedName:
        return FullyQualifiedName.from_path(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ReducedRule:
    """A rule as its trigger carries it: enough to fire without reading the rule itself.
    `filter` and `transform` are the rule's JSON as saved (None: not set, OpenWhisk's behaviour)."""

    action: FullyQualifiedName
    status: RuleStatus
    filter: JSON = None
    transform: JSON = None
    retry: JSON = None  # the rule's retry policy as saved (rules/retry_policy.py); None: the namespace default
    dead_letter: JSON = None  # {"trigger": "/ns/name"}, fired for each event given up on
    shadow: bool = False  # matches and counts, records what it would run, runs nothing


@dataclass(frozen=True, slots=True)
class Trigger:
    namespace: str
    name: str
    version: str = DEFAULT_VERSION
    publish: bool = False
    parameters: Parameters = ()
    annotations: Parameters = ()
    rules: dict[str, ReducedRule] = field(default_factory=dict)  # rule FQN "guest/r" -> link
    updated_ms: int = 0
    revision: int = 0
    derive: JSON = None  # a derived trigger's declaration (rules/correlate.py), normalised
    derived: tuple[str, ...] = ()  # derived triggers fed by this one ("/guest/silent"), as rules are linked

    @property
    def fqn(self) -> FullyQualifiedName:
        return FullyQualifiedName.from_path(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Rule:
    namespace: str
    name: str
    trigger: FullyQualifiedName
    action: FullyQualifiedName
    version: str = DEFAULT_VERSION
    publish: bool = False
    annotations: Parameters = ()
    updated_ms: int = 0
    revision: int = 0
    filter: JSON = None  # an event pattern (rules/pattern.py); None: every event matches
    transform: JSON = None  # a JSON template for the action's parameters; None: the event data
    retry: JSON = None  # body key `retry`: the retry policy as saved; None: the namespace default
    dead_letter: JSON = None  # body key `deadLetter`: {"trigger": "/ns/name"}
    shadow: bool = False  # matches and counts, records what it would run, runs nothing

    @property
    def fqn(self) -> FullyQualifiedName:
        return FullyQualifiedName.from_path(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class RuleCounts:
    """Events a rule's filter took (`matched`) and refused (`filtered`: no activation)."""

    matched: int = 0
    filtered: int = 0


@dataclass(frozen=True, slots=True)
class Binding:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Package:
    namespace: str
    name: str
    version: str = DEFAULT_VERSION
    publish: bool = False
    binding: Binding | None = None
    parameters: Parameters = ()
    annotations: Parameters = ()
    updated_ms: int = 0
    revision: int = 0

    @property
    def fqn(self) -> FullyQualifiedName:
        return FullyQualifiedName.from_path(self.namespace, self.name)


Entity: TypeAlias = Action | Trigger | Rule | Package

COLLECTION_OF: dict[type, Collection] = {
    Action: Collection.ACTIONS, Trigger: Collection.TRIGGERS,
    Rule: Collection.RULES, Package: Collection.PACKAGES,
}


def collection_of(entity: Entity) -> Collection:
    return COLLECTION_OF[type(entity)]


def touched(entity: Entity, **changes: Any) -> Entity:
    """A copy with `changes` and a fresh `updated_ms` (revision is the store's business)."""
    return replace(entity, updated_ms=now_ms(), **changes)


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True, slots=True)
class ActivationResponse:
    status_code: StatusCode
    result: JSON = None
    size: int | None = None

    @property
    def success(self) -> bool:
        return self.status_code is StatusCode.SUCCESS

    def to_json(self) -> dict[str, JSON]:
        """Extended (API) form: status + success instead of statusCode."""
        out: dict[str, JSON] = {"status": self.status_code.text, "success": self.success}
        if self.result is not None:
            out["result"] = self.result
        if self.size is not None:
            out["size"] = self.size
        return out

    @classmethod
    def ok(cls, result: JSON) -> ActivationResponse:
        return cls(StatusCode.SUCCESS, result)

    @classmethod
    def error(cls, code: StatusCode, message: JSON) -> ActivationResponse:
        return cls(code, {"error": message})


@dataclass(frozen=True, slots=True)
class Activation:
    namespace: str  # the invoking (caller's) namespace
    name: str
    subject: str
    activation_id: str
    start_ms: int
    end_ms: int  # 0 for trigger activations: no end, no duration
    response: ActivationResponse
    logs: tuple[str, ...] = ()
    annotations: Parameters = ()
    version: str = DEFAULT_VERSION
    publish: bool = False
    cause: str | None = None
    duration_ms: int | None = None  # None: end - start (sequences store their component sum)

    @property
    def duration(self) -> int | None:
        if self.end_ms == 0:
            return None
        return self.duration_ms if self.duration_ms is not None else self.end_ms - self.start_ms


# --------------------------------------------------------------------------- events and work


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """A CloudEvents 1.0 envelope for one trigger fire; `data` is the fire payload."""

    id: str
    source: str
    type: str
    trigger: FullyQualifiedName
    data: JSON = None
    subject: str | None = None
    time_ms: int = 0
    datacontenttype: str = "application/json"
    # Lineage (observe/lineage.py). A feed sets `traceparent` to what its source sent; the engine
    # replaces it with the event's own context before the event is stored. `origin` names the
    # source message (topic, broker message id, webhook delivery id); `decisions` are the rule
    # decisions, stored with the event in the transaction that accepts it.
    traceparent: str | None = None
    origin: dict[str, JSON] | None = None
    decisions: tuple[dict[str, JSON], ...] = ()

    def to_cloudevent(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "specversion": "1.0", "id": self.id, "source": self.source, "type": self.type,
            "time": _iso(self.time_ms), "datacontenttype": self.datacontenttype, "data": self.data,
            "subject": self.subject or str(self.trigger),
        }
        if self.traceparent:  # the CloudEvents distributed tracing extension
            out["traceparent"] = self.traceparent
        return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One accepted activation waiting to run. Stored before the caller hears 202."""

    activation_id: str
    action: Action  # snapshot of the resolved action (package params already merged in)
    args: JSON  # merged arguments (object, or an array for sequences' chained results)
    namespace: str  # invoking namespace
    subject: str
    accepted_ms: int
    cause: str | None = None
    blocking: bool = False
    path_annotation: str = ""  # `guest/pkg/a` as it shows in the `path` annotation
    binding: str | None = None
    init_env: dict[str, str] = field(default_factory=dict)
    transaction_id: str = ""
    extra_annotations: Parameters = ()  # e.g. causedBy: sequence; traceparent and event (observe/lineage.py)
    received_ms: int = 0  # when the trigger event behind a rule activation was received (0: no event)
    delivery: Delivery | None = None  # set on rule activations: which rule, event and attempt


_DELIVERY_KEYS = uuid.UUID("8f3e2b1a-6c5d-4e7f-8a9b-0c1d2e3f4a5b")
NO_DELIVERY_ENVIRONMENT = {"rule": "", "event_id": "", "attempt": "", "delivery_key": "", "idempotency_key": ""}
"""Sent to every other activation, so a warm runtime never shows a previous rule activation's keys."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a rule activation delivers: rule `rule` ("guest/r") runs for event `event_id`, attempt
    `attempt` (1 = first). `redrive` names the dead letter a redriven run would clear on success;
    `replay` is the activation id of a replayed run's first attempt (its attempts and keys are its
    own). A retry policy counts the attempts of one run from `first_attempt` (a redrive goes on
    numbering after the letter's attempts and gets the policy's whole budget), and the age of
    `event_time_ms`: the event's time, or when the redrive or replay was asked for.
    `failed_activation_id`: the attempt before this one, when this one is a retry."""

    rule: str
    event_id: str
    attempt: int = 1
    event_time_ms: int = 0
    redrive: str | None = None
    replay: str | None = None
    first_attempt: int = 1
    failed_activation_id: str | None = None

    @property
    def delivery_key(self) -> str:
        """Stable per (rule, event): the same in every attempt and redrive (`__OW_DELIVERY_KEY`);
        a replayed run, asked to run the event again, has its own."""
        if self.replay is not None:
            return uuid5_hex(_DELIVERY_KEYS, f"{self.rule}\n{self.event_id}\n{self.replay}")
        return uuid5_hex(_DELIVERY_KEYS, f"{self.rule}\n{self.event_id}")

    @property
    def idempotency_key(self) -> str:
        """Stable per (rule, event, attempt): `<delivery key>-<attempt>` (`__OW_IDEMPOTENCY_KEY`)."""
        return f"{self.delivery_key}-{self.attempt}"

    @property
    def run_attempt(self) -> int:
        """The attempt's number within its run (what the retry policy's maxAttempts counts)."""
        return self.attempt - self.first_attempt + 1

    def run_environment(self) -> dict[str, str]:
        """What the action's /run gets (the proxies make each key `__OW_<KEY>`)."""
        delivery_key = self.delivery_key
        return {"rule": self.rule, "event_id": self.event_id, "attempt": str(self.attempt),
                "delivery_key": delivery_key, "idempotency_key": f"{delivery_key}-{self.attempt}"}

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"rule": self.rule, "eventId": self.event_id, "attempt": self.attempt,
                                "eventTimeMs": self.event_time_ms, "redrive": self.redrive}
        if self.replay is not None:
            out["replay"] = self.replay
        if self.first_attempt != 1:
            out["firstAttempt"] = self.first_attempt
        if self.failed_activation_id is not None:
            out["failedActivationId"] = self.failed_activation_id
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Delivery:
        return cls(str(doc["rule"]), str(doc["eventId"]), int(doc["attempt"]), int(doc["eventTimeMs"]),
                   doc.get("redrive"), doc.get("replay"), int(doc.get("firstAttempt", 1)),
                   doc.get("failedActivationId"))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a rule gave up on: the last attempt's activation id, why, and what it ran
    (`invocation`, kept for redrive)."""

    id: str
    rule: str  # "guest/r"
    event_id: str
    activation_id: str
    reason: str
    attempts: int
    created_ms: int
    invocation: Invocation
    redriven_by: str | None = None  # the activation id of the redrive under way (kept by the store)

    def to_json(self) -> dict[str, JSON]:
        """The API's view (the invocation stays inside the hub); `redrivenBy` while a redrive runs."""
        out: dict[str, JSON] = {"id": self.id, "rule": self.rule, "eventId": self.event_id,
                                "activationId": self.activation_id, "reason": self.reason, "attempts": self.attempts,
                                "time": self.created_ms}
        if self.redriven_by is not None:
            out["redrivenBy"] = self.redriven_by
        return out


# Nesting past this is refused on input: deeper values exhaust the interpreter's stack later, when
# they are copied, stored, rendered or validated (json.loads alone stops near 1,000 with RecursionError).
MAX_JSON_DEPTH = 256


def loads_json(text: str | bytes) -> JSON:
    """`json.loads` for untrusted input: ValueError (never RecursionError) for malformed text and
    for arrays/objects nested deeper than MAX_JSON_DEPTH."""
    try:  # json.loads with a keyword builds a decoder per call: one kept decoder instead
        value = _DECODER.decode(text if isinstance(text, str) else text.decode(json.detect_encoding(text), "surrogatepass"))
    except RecursionError:
        raise _too_deep() from None
    if _openings(text) <= MAX_JSON_DEPTH:
        return value  # each level opens a bracket: so few cannot nest too deep (every fire's payload)
    pending: list[tuple[JSON, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        pending.extend((child, depth + 1) for child in children)
    return value


def _not_json(constant: str) -> JSON:
    """`NaN`, `Infinity` and `-Infinity`: Python's json reads them, JSON has no such values."""
    raise ValueError(f"{constant} is not a JSON value; send null or a finite number")


_DECODER = json.JSONDecoder(parse_constant=_not_json)


def _too_deep() -> ValueError:
    return ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels; send a flatter value")


def _openings(text: str | bytes) -> int:
    """How many `[` and `{` the text holds (inside strings too: an upper bound on its nesting)."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


# ------------------------------------------------------------------ API gateway routes


class ResponseType(StrEnum):
    """How a route's web action result becomes the HTTP answer (the web-action extension)."""

    HTTP = "http"
    JSON = "json"
    TEXT = "text"
    HTML = "html"
    SVG = "svg"


API_VERBS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
_PATH_PARAM_RE = re.compile(r"\{([^}/]+)\}")
_PATH_SPLIT_RE = re.compile(r"(\{[^}/]+\})")


def api_path(path: str) -> str:
    """`hello/` or `/hello` -> `/hello`; the root stays `/`."""
    return "/" + path.strip("/")


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One API gateway route: base path + relative path + verb -> a web action of `namespace`
    (or one it may read). Served at /api/<namespace><base_path><rel_path>."""

    namespace: str  # the owner
    base_path: str  # `/hello`
    rel_path: str  # `/books/{id}`; `{name}` segments are path parameters
    verb: str  # upper case, one of API_VERBS
    action: str  # fully qualified: `/guest/pkg/name` or `/guest/name`
    response_type: ResponseType = ResponseType.JSON
    api_name: str = ""
    cors: bool = True
    project: str = ""  # projectName of the managed manifest that created it
    updated_ms: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.base_path, self.rel_path, self.verb)

    @property
    def path_parameters(self) -> list[str]:
        return list(dict.fromkeys(_PATH_PARAM_RE.findall(self.rel_path)))  # `{p}/more/{p}` names p once

    def match(self, rel_path: str) -> dict[str, str] | None:
        """The path parameters when `rel_path` fits this route's template, else None."""
        parts = _PATH_SPLIT_RE.split(self.rel_path)
        groups = {f"p{i}": part[1:-1] for i, part in enumerate(parts) if part.startswith("{")}
        pattern = "".join(f"(?P<p{i}>[^/]+)" if f"p{i}" in groups else re.escape(part) for i, part in enumerate(parts))
        found = re.fullmatch(pattern, api_path(rel_path))
        return None if found is None else {name: found.group(group) for group, name in groups.items()}

    def to_json(self) -> dict[str, JSON]:
        return {"namespace": self.namespace, "base_path": self.base_path, "rel_path": self.rel_path,
                "verb": self.verb, "action": self.action, "response_type": self.response_type.value,
                "api_name": self.api_name, "cors": self.cors, "project": self.project,
                "updated_ms": self.updated_ms}

    @classmethod
    def from_json(cls, doc: dict[str, JSON]) -> ApiRoute:
        return cls(doc["namespace"], doc["base_path"], doc["rel_path"], doc["verb"], doc["action"],
                   ResponseType(doc["response_type"]), doc.get("api_name", ""), bool(doc.get("cors", True)),
                   doc.get("project", ""), int(doc.get("updated_ms", 0)))
