"""Webhook deliveries through FeedManager.handle_webhook: verification, replay, limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

import pytest

from tests.plugins.clock import TestClock, utc_s
from tests.plugins.feeds import FakeStore
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.feed_manager import FeedManager, FeedMetrics, ReadBody
from triggerhub.errors import ApiError, BadRequest, Conflict, PayloadTooLarge, Unauthorized
from triggerhub.feeds.webhook import FEED_KIND as WEBHOOK_KIND
from triggerhub.model import JSON, TriggerEvent
from triggerhub.store.base import Acceptance

BODY = json.dumps({"action": "opened", "number": 7}).encode()
SECRET = "It's a Secret to Everybody"
STANDARD_KEY = b"standard-webhooks-test-key-32byt"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
NOW_S = utc_s("2024-05-01T12:00:00")


def github_headers(body: bytes, delivery: str, secret: str = SECRET) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": delivery, "X-GitHub-Event": "issues",
            "Content-Type": "application/json"}


def standard_headers(body: bytes, delivery: str, sent_s: int) -> dict[str, str]:
    signed = f"{delivery}.{sent_s}.".encode() + body
    signature = base64.b64encode(hmac.new(STANDARD_KEY, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": delivery, "webhook-timestamp": str(sent_s),
            "webhook-signature": f"v1,bm90LXRoaXMtb25l v1,{signature}", "content-type": "application/json"}


def body_of(data: bytes) -> ReadBody:
    """The request body as hooks.py hands it over: PayloadTooLarge past the feed's limit."""
    async def read(limit_bytes: int) -> bytes:
        if len(data) > limit_bytes:
            raise PayloadTooLarge(f"webhook body of {len(data)} bytes exceeds the limit of {limit_bytes} bytes")
        return data
    return read


async def answer(manager: FeedManager, namespace: str, trigger: str, headers: Mapping[str, str],
                 read_body: ReadBody) -> tuple[int, dict[str, JSON]]:
    """What the API answers for one delivery: 202 with the event id, or the ApiError raised."""
    try:
        accepted = await manager.handle_webhook(namespace, trigger, headers, read_body)
    except ApiError as exc:
        return exc.status, {"error": exc.message}
    return 202, {"id": accepted.id}


async def make_manager(store: FakeStore, params: dict) -> FeedManager:
    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        return await store.accept(Acceptance(event=event, cursor=cursor))

    manager = FeedManager(store, fire, kinds=FEED_KINDS, clock=TestClock(NOW_S))
    await manager.start(asyncio.TaskGroup())  # the webhook feed starts no tasks
    await manager.lifecycle("guest", "uuid:key", WEBHOOK_KIND.fqn,
                            {"lifecycleEvent": "CREATE", "triggerName": "/guest/hook", **params})
    return manager


BODY_KEY = "sha256:" + hashlib.sha256(BODY).hexdigest()


async def test_github_signed_delivery_is_stored_and_a_replay_is_409(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "github", "secret": SECRET})
    headers = github_headers(BODY, "d-1")
    event_id = f"webhook:/guest/hook:{BODY_KEY}"
    assert await answer(manager, "guest", "hook", headers, body_of(BODY)) == (202, {"id": event_id})
    event = fake_store.events[event_id]
    assert (event.data, event.subject, event.type) == ({"action": "opened", "number": 7}, "issues",
                                                        "triggerhub.feed.webhook")
    assert await answer(manager, "guest", "hook", headers, body_of(BODY)) == (409, {
        "error": f"delivery 'd-1' repeats the signed body of a delivery already accepted for trigger '/guest/hook' "
                 f"({BODY_KEY}); a replay is not fired again, whatever its delivery id"})
    assert len(fake_store.events) == 1
    assert manager.metrics("/guest/hook") == FeedMetrics(received=2, fired=1, rejected=1)


async def test_github_replay_under_a_new_delivery_id_is_409(fake_store: FakeStore) -> None:
    """X-GitHub-Delivery is not signed: a captured delivery resent with a fresh id is still a replay."""
    manager = await make_manager(fake_store, {"verify": "github", "secret": SECRET})
    assert (await answer(manager, "guest", "hook", github_headers(BODY, "d-1"), body_of(BODY)))[0] == 202
    status, body = await answer(manager, "guest", "hook", github_headers(BODY, "forged-9"), body_of(BODY))
    assert (status, body) == (409, {
        "error": f"delivery 'forged-9' repeats the signed body of a delivery already accepted for trigger "
                 f"'/guest/hook' ({BODY_KEY}); a replay is not fired again, whatever its delivery id"})
    other = json.dumps({"action": "closed", "number": 7}).encode()
    assert (await answer(manager, "guest", "hook", github_headers(other, "d-2"), body_of(other)))[0] == 202
    assert len(fake_store.events) == 2


async def test_tampered_github_body_is_401_and_nothing_is_stored(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "github", "secret": SECRET})
    headers = github_headers(BODY, "d-2")
    status, body = await answer(manager, "guest", "hook", headers, body_of(BODY.replace(b"7", b"8")))
    assert (status, body) == (401, {"error": "signature mismatch: X-Hub-Signature-256 does not match the body "
                                             "signed with the trigger's secret; check the secret configured at the sender"})
    assert fake_store.events == {}
    status, body = await answer(manager, "guest", "hook", {"X-GitHub-Delivery": "d-3"}, body_of(BODY))
    assert (status, body["error"]) == (401, "missing header X-Hub-Signature-256: the delivery is not signed as "
                                            "this trigger's webhook feed expects")


async def test_standard_webhooks_signature_and_timestamp_tolerance(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "standard", "secret": STANDARD_SECRET, "toleranceS": 60})
    ok = standard_headers(BODY, "msg_1", int(NOW_S) - 30)
    assert await answer(manager, "guest", "hook", ok, body_of(BODY)) == (202, {"id": "webhook:/guest/hook:msg_1"})
    stale = standard_headers(BODY, "msg_2", int(NOW_S) - 61)
    assert await answer(manager, "guest", "hook", stale, body_of(BODY)) == (401, {
        "error": f"webhook-timestamp {int(NOW_S) - 61} is more than 60 s away from now; resend the delivery or "
                 "check the sender's clock"})
    forged = {**standard_headers(BODY, "msg_3", int(NOW_S)), "webhook-id": "msg_4"}
    status, _ = await answer(manager, "guest", "hook", forged, body_of(BODY))
    assert status == 401
    assert list(fake_store.events) == ["webhook:/guest/hook:msg_1"]


@pytest.mark.parametrize(("algorithm", "encoding", "prefix"), [("sha256", "hex", "sha256="), ("sha1", "base64", ""),
                                                                ("sha512", "hex", "")])
async def test_generic_hmac_variants(fake_store: FakeStore, algorithm: str, encoding: str, prefix: str) -> None:
    manager = await make_manager(fake_store, {"verify": "hmac", "secret": "s3", "header": "X-Sig",
                                              "algorithm": algorithm, "encoding": encoding, "prefix": prefix,
                                              "idHeader": "X-Id"})
    digest = hmac.new(b"s3", BODY, getattr(hashlib, algorithm)).digest()
    signature = prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())
    headers = {"x-sig": signature, "x-id": "42", "content-type": "application/json"}
    # only the body is signed, so the replay key is its digest, not the unsigned X-Id
    assert await answer(manager, "guest", "hook", headers, body_of(BODY)) == (202, {
        "id": f"webhook:/guest/hook:{BODY_KEY}"})
    status, _ = await answer(manager, "guest", "hook", {**headers, "x-id": "43"}, body_of(BODY))
    assert status == 409
    first = signature[len(prefix)]
    tampered = prefix + ("A" if first != "A" else "B") + signature[len(prefix) + 1:]
    status, body = await answer(manager, "guest", "hook", {**headers, "x-sig": tampered}, body_of(BODY))
    assert status == 401 and body["error"].startswith("signature mismatch: X-Sig does not match")


async def test_token_form_body_without_delivery_id_uses_the_body_hash(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "token", "secret": "t0k", "prefix": "Bearer ",
                                              "header": "Authorization"})
    form = b"name=ada&lang=py"
    headers = {"Authorization": "Bearer t0k", "Content-Type": "application/x-www-form-urlencoded"}
    expected_id = "webhook:/guest/hook:sha256:" + hashlib.sha256(form).hexdigest()
    assert await answer(manager, "guest", "hook", headers, body_of(form)) == (202, {"id": expected_id})
    assert fake_store.events[expected_id].data == {"name": "ada", "lang": "py"}
    status, _ = await answer(manager, "guest", "hook", {**headers, "Authorization": "Bearer nope"}, body_of(form))
    assert status == 401


async def test_too_large_and_unknown_trigger(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "none", "maxBodyBytes": 10})
    assert await answer(manager, "guest", "hook", {}, body_of(b"x" * 11)) == (413, {
        "error": "webhook body of 11 bytes exceeds the limit of 10 bytes"})
    assert await answer(manager, "guest", "nohook", {}, body_of(b"{}")) == (404, {
        "error": "trigger '/guest/nohook' has no webhook feed; create one with --feed /whisk.system/webhook/webhook"})
    assert fake_store.events == {}


async def test_a_secret_is_required_unless_verify_none(fake_store: FakeStore) -> None:
    with pytest.raises(BadRequest) as caught:
        await make_manager(fake_store, {"verify": "github"})
    assert caught.value.message == "webhook feeds verified by 'github' must include a non-empty secret parameter"
    assert fake_store.feeds == {}


async def test_refusals_are_the_api_errors_and_acceptance_is_typed(fake_store: FakeStore) -> None:
    manager = await make_manager(fake_store, {"verify": "github", "secret": SECRET})
    accepted = await manager.handle_webhook("guest", "hook", github_headers(BODY, "d-9"), body_of(BODY))
    assert accepted.id == f"webhook:/guest/hook:{BODY_KEY}"
    with pytest.raises(Conflict):
        await manager.handle_webhook("guest", "hook", github_headers(BODY, "d-9"), body_of(BODY))
    with pytest.raises(Unauthorized):
        await manager.handle_webhook("guest", "hook", {"X-GitHub-Delivery": "d-10"}, body_of(BODY))
    assert list(fake_store.events) == [f"webhook:/guest/hook:{BODY_KEY}"]
