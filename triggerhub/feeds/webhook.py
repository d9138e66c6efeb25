"""Webhook feed: verify a delivery on its raw body, then turn it into one trigger event.

Verifiers (all constant-time): GitHub `X-Hub-Signature-256`, Standard Webhooks (`webhook-id`,
`webhook-timestamp`, `webhook-signature` v1, `whsec_` base64 secret), generic HMAC (header,
algorithm, hex|base64, prefix) and a shared token. The event id is keyed on what the sender
signed (`delivery_id`), so a replayed delivery is refused by the store's event dedup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl

from triggerhub.errors import BadRequest, PayloadTooLarge, Unauthorized
from triggerhub.feeds.cursor import CursorEmit
from triggerhub.feeds.kind import SECRET_MASK, BuiltinFeed, FeedContext, FeedKind, ParseContext, WebhookHandling
from triggerhub.model import JSON, FullyQualifiedName, TriggerEvent, loads_json
from triggerhub.observe.trace import cloudevent_traceparent, first_valid

EVENT_TYPE = "triggerhub.feed.webhook"
SOURCE = "/whisk.system/webhook/webhook"
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_TOLERANCE_S = 300
_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class Verify(StrEnum):
    GITHUB = "github"
    STANDARD = "standard"
    HMAC = "hmac"
    TOKEN = "token"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    verify: Verify
    secret: str = ""
    header: str = ""  # hmac/token: the header carrying the signature or token
    algorithm: str = "sha256"
    encoding: str = "hex"  # hex | base64
    prefix: str = ""  # e.g. "sha256=" or "Bearer "
    id_header: str = ""  # hmac/token/none: the header carrying a delivery id
    tolerance_s: int = DEFAULT_TOLERANCE_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_json(self, *, redact: bool) -> dict[str, JSON]:
        return {"verify": str(self.verify), "secret": SECRET_MASK if redact and self.secret else self.secret,
                "header": self.header, "algorithm": self.algorithm, "encoding": self.encoding,
                "prefix": self.prefix, "idHeader": self.id_header, "toleranceS": self.tolerance_s,
                "maxBodyBytes": self.max_body_bytes}


def parse_webhook_config(params: Mapping[str, JSON]) -> WebhookConfig:
    """Validate feed parameters. A secret is required unless `verify` is explicitly `none`."""
    raw_verify = params.get("verify")
    try:
        verify = Verify(str(raw_verify))
    except ValueError:
        raise BadRequest(f"verify parameter '{raw_verify}' must be one of github, standard, hmac, token, none") from None
    secret = params.get("secret", "")
    if not isinstance(secret, str) or (verify is not Verify.NONE and not secret):
        raise BadRequest(f"webhook feeds verified by '{verify}' must include a non-empty secret parameter")
    header = str(params.get("header") or {Verify.TOKEN: "X-Webhook-Token"}.get(verify, ""))
    if verify is Verify.HMAC and not header:
        raise BadRequest("webhook feeds verified by 'hmac' must include a header parameter naming the signature header")
    algorithm = str(params.get("algorithm", "sha256")).lower()
    if algorithm not in _ALGORITHMS:
        raise BadRequest(f"algorithm parameter '{algorithm}' must be one of sha1, sha256, sha512")
    encoding = str(params.get("encoding", "hex")).lower()
    if encoding not in ("hex", "base64"):
        raise BadRequest(f"encoding parameter '{encoding}' must be hex or base64")
    if verify is Verify.STANDARD:
        _standard_key(secret)  # reject a malformed secret at CREATE, not at the first delivery
    return WebhookConfig(
        verify=verify, secret=secret, header=header, algorithm=algorithm, encoding=encoding,
        prefix=str(params.get("prefix", "")), id_header=str(params.get("idHeader", "")),
        tolerance_s=_positive_int(params, "toleranceS", DEFAULT_TOLERANCE_S),
        max_body_bytes=_positive_int(params, "maxBodyBytes", DEFAULT_MAX_BODY_BYTES),
    )


def _positive_int(params: Mapping[str, JSON], key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest(f"{key} parameter '{value}' must be an integer greater than zero")
    return value


# --------------------------------------------------------------------------- verifiers


def verify_github(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`."""
    given = _header(headers, "X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("signature mismatch: X-Hub-Signature-256 does not match the body signed with the "
                           "trigger's secret; check the secret configured at the sender")


def verify_standard(secret: str, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: int) -> None:
    """Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`, any `v1,<base64>` may match."""
    delivery_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    try:
        sent_s = int(timestamp)
    except ValueError:
        raise Unauthorized(f"webhook-timestamp '{timestamp}' is not an integer number of seconds") from None
    if abs(now_s - sent_s) > tolerance_s:
        raise Unauthorized(f"webhook-timestamp {sent_s} is more than {tolerance_s} s away from now; "
                           "resend the delivery or check the sender's clock")
    signed = f"{delivery_id}.{sent_s}.".encode() + body
    expected = base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest())
    for candidate in _header(headers, "webhook-signature").split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise Unauthorized("signature mismatch: no v1 entry of webhook-signature matches the body signed with the "
                       "trigger's secret; check the secret configured at the sender")


def verify_hmac(config: WebhookConfig, headers: Mapping[str, str], body: bytes) -> None:
    given = _header(headers, config.header)
    digest = hmac.new(config.secret.encode(), body, _ALGORITHMS[config.algorithm]).digest()
    encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
    if not hmac.compare_digest(given.encode(), (config.prefix + encoded).encode()):
        raise Unauthorized(f"signature mismatch: {config.header} does not match the body signed with the "
                           f"trigger's secret ({config.algorithm}, {config.encoding}); check the sender's settings")


def verify_token(config: WebhookConfig, headers: Mapping[str, str]) -> None:
    given = _header(headers, config.header)
    if not hmac.compare_digest(given.encode(), (config.prefix + config.secret).encode()):
        raise Unauthorized(f"token mismatch: {config.header} does not carry the trigger's shared token")


def _standard_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the Standard Webhooks secret must be base64, optionally prefixed by 'whsec_'") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise Unauthorized(f"missing header {name}: the delivery is not signed as this trigger's webhook feed expects")


def _optional_header(headers: Mapping[str, str], name: str) -> str | None:
    if not name:
        return None
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


# --------------------------------------------------------------------------- deliveries


def verify_delivery(config: WebhookConfig, headers: Mapping[str, str], body: bytes, now_s: float) -> None:
    """Raise PayloadTooLarge or Unauthorized; return only for an authentic delivery."""
    if len(body) > config.max_body_bytes:
        raise PayloadTooLarge(f"webhook body of {len(body)} bytes exceeds the limit of {config.max_body_bytes} bytes")
    if config.verify is Verify.GITHUB:
        verify_github(config.secret, headers, body)
    elif config.verify is Verify.STANDARD:
        verify_standard(config.secret, headers, body, now_s, config.tolerance_s)
    elif config.verify is Verify.HMAC:
        verify_hmac(config, headers, body)
    elif config.verify is Verify.TOKEN:
        verify_token(config, headers)


def delivery_id(config: WebhookConfig, headers: Mapping[str, str], body: bytes) -> str:
    """The key replays are detected on: always something the signature covers.

    GitHub and generic HMAC sign only the body, so the key is the body's digest: a captured
    delivery resent under a new `X-GitHub-Delivery` is still a replay. Standard Webhooks sign
    `webhook-id` (with a timestamp inside the tolerance), so that id is the key. Token and
    unverified feeds sign nothing: the `idHeader` when given, else the body's digest.
    """
    if config.verify is Verify.STANDARD:
        return _header(headers, "webhook-id")
    given = _optional_header(headers, config.id_header) if config.verify in (Verify.TOKEN, Verify.NONE) else None
    return given if given else "sha256:" + hashlib.sha256(body).hexdigest()


def replay_message(config: WebhookConfig, trigger: str, headers: Mapping[str, str], event_id: str) -> str:
    key = event_id.split(":", 2)[2]
    if config.verify in (Verify.GITHUB, Verify.HMAC):
        sender_id = _optional_header(headers, "X-GitHub-Delivery" if config.verify is Verify.GITHUB
                                     else config.id_header)
        named = f" '{sender_id}'" if sender_id else ""
        return (f"delivery{named} repeats the signed body of a delivery already accepted for trigger '{trigger}' "
                f"({key}); a replay is not fired again, whatever its delivery id")
    return f"delivery '{key}' was already accepted for trigger '{trigger}'; a replay is not fired again"


def decode_body(headers: Mapping[str, str], body: bytes) -> JSON:
    """JSON, form (GitHub's `payload=<json>` form included) or raw text/base64."""
    content_type = (_optional_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return loads_json(body)
        except ValueError as exc:
            raise BadRequest(f"webhook body is not valid JSON ({exc}); send application/json or change "
                             "the Content-Type") from None
    if content_type == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if set(form) == {"payload"}:
            try:
                return loads_json(form["payload"])
            except ValueError:
                return form
        return form
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "encoding": "base64"}


def delivery_event(config: WebhookConfig, trigger: str, headers: Mapping[str, str], body: bytes,
                   now_ms: int) -> TriggerEvent:
    """Verify and decode one delivery into its trigger event (id = delivery id)."""
    verify_delivery(config, headers, body, now_ms / 1000)
    data = decode_body(headers, body)
    key = delivery_id(config, headers, body)
    # Lineage: the sender's trace context (W3C header, CloudEvents binary or structured mode) and
    # the delivery as the sender named it.
    sender_id = next((v for v in (_optional_header(headers, name) for name in (
        "X-GitHub-Delivery", "webhook-id", config.id_header)) if v), None)
    origin: dict[str, JSON] = {"deliveryId": sender_id or key}
    return TriggerEvent(
        id=f"webhook:{trigger}:{key}", source=SOURCE, type=EVENT_TYPE,
        trigger=FullyQualifiedName.parse(trigger, "_"), data=data if isinstance(data, dict) else {"body": data},
        subject=_optional_header(headers, "X-GitHub-Event"), time_ms=now_ms, origin=origin,
        traceparent=first_valid(_optional_header(headers, "traceparent"), _optional_header(headers, "ce-traceparent"),
                                cloudevent_traceparent(data)),
    )


class WebhookFeed:
    """Deliveries arrive through the API, not a connection: start and stop hold no resources."""

    async def start(self, emit: CursorEmit) -> None:
        return None

    async def stop(self) -> None:
        return None


def _parse(params: Mapping[str, JSON], _ctx: ParseContext) -> dict[str, JSON]:
    return parse_webhook_config(params).to_json(redact=False)


def _build(_config: Mapping[str, JSON], _ctx: FeedContext) -> WebhookFeed:
    return WebhookFeed()


def _event(config: Mapping[str, JSON], trigger: str, headers: Mapping[str, str], body: bytes,
           now_ms: int) -> TriggerEvent:
    return delivery_event(parse_webhook_config(config), trigger, headers, body, now_ms)


def _replay_message(config: Mapping[str, JSON], trigger: str, headers: Mapping[str, str], event_id: str) -> str:
    return replay_message(parse_webhook_config(config), trigger, headers, event_id)


HANDLING = WebhookHandling(body_limit_bytes=lambda config: parse_webhook_config(config).max_body_bytes,
                           event=_event, replay_message=_replay_message)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("webhook", "webhook", "Fire a trigger for every verified POST to /hooks/{namespace}/{trigger}",
                          ("verify", "secret", "header", "algorithm", "encoding", "prefix", "idHeader", "toleranceS",
                           "maxBodyBytes")),
    parse=_parse, build=_build, secret_keys=("secret",), webhook=HANDLING,
    created=lambda trigger: {"url": f"/hooks{trigger}"},
)
