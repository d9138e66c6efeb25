"""How proxy answers become activation responses, and the /init and /run bodies."""

from __future__ import annotations

from dataclasses import replace

import pytest

from triggerhub.invoker.activation import (ActionInvoker, classify_init, classify_run, timeout_message,
                                           with_size)
from triggerhub.invoker.base import ProxyResponse
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.model import ActivationResponse, Delivery, Parameter, StatusCode
from tests.plugins.invoker import make_action, make_invocation

DEV = StatusCode.DEVELOPER_ERROR
APP = StatusCode.APPLICATION_ERROR


@pytest.mark.parametrize(("reply", "expected"), [
    (ProxyResponse(200, {"ok": True}), None),
    (ProxyResponse(502, {"error": "The action failed to generate or locate a binary. See logs for details."}),
     ActivationResponse(DEV, {"error": "The action failed to generate or locate a binary. See logs for details."})),
    (ProxyResponse(500, None, b"<html>oops</html>"),
     ActivationResponse(DEV, {"error": "The action failed during initialization: <html>oops</html>"})),
    (ProxyResponse(0, None, timed_out=True),
     ActivationResponse(DEV, {"error": "The action exceeded its time limits of 500 milliseconds during initialization."})),
    (ProxyResponse(0, None), ActivationResponse(DEV, {"error": "The action did not initialize and exited unexpectedly."})),
    (ProxyResponse(0, None, oom=True), ActivationResponse(DEV, {"error": "The action exhausted its memory and was aborted."})),
])
def test_classify_init(reply: ProxyResponse, expected: ActivationResponse | None) -> None:
    assert classify_init(reply, 500) == expected


@pytest.mark.parametrize(("reply", "expected"), [
    (ProxyResponse(200, {"a": 1}, b'{"a":1}'), ActivationResponse(StatusCode.SUCCESS, {"a": 1})),
    (ProxyResponse(200, [1, 2], b"[1,2]"), ActivationResponse(StatusCode.SUCCESS, [1, 2])),
    (ProxyResponse(200, {"error": "bad", "x": 1}, b'{"error":"bad","x":1}'), ActivationResponse(APP, {"error": "bad"})),
    (ProxyResponse(200, 42, b"42"),
     ActivationResponse(DEV, {"error": "The action did not produce a valid JSON or JSON Array response: 42"})),
    (ProxyResponse(200, None, b"not json"),
     ActivationResponse(DEV, {"error": "The action did not produce a valid JSON or JSON Array response: not json"})),
    (ProxyResponse(502, {"error": "An error has occurred: Error: boom"}, b"..."),
     ActivationResponse(DEV, {"error": "An error has occurred: Error: boom"})),
    (ProxyResponse(502, {"x": 1}, b'{"x":1}'),
     ActivationResponse(DEV, {"error": 'The action did not produce a valid JSON or JSON Array response: {"x":1}'})),
    (ProxyResponse(0, None, timed_out=True),
     ActivationResponse(DEV, {"error": "The action exceeded its time limits of 500 milliseconds."})),
    (ProxyResponse(0, None),
     ActivationResponse(DEV, {"error": "The action did not produce a valid response and exited unexpectedly."})),
    (ProxyResponse(0, None, oom=True), ActivationResponse(DEV, {"error": "The action exhausted its memory and was aborted."})),
])
def test_classify_run(reply: ProxyResponse, expected: ActivationResponse) -> None:
    assert classify_run(reply, 500) == expected


def test_oversized_result_is_truncated_application_error() -> None:
    raw = b'{"a":"' + b"x" * 20 + b'"}'
    response = classify_run(ProxyResponse(200, {"a": "x" * 20}, raw), 500, max_result_bytes=10)
    assert response == ActivationResponse(APP, {"error": "The action produced a response that exceeded the allowed "
                                                "length: 28 > 10 bytes. The truncated response was: " + '{"a":"xxxx'})


def test_size_is_compact_json_bytes() -> None:
    assert with_size(ActivationResponse.ok({"payload": "Hello John"})).size == 24
    assert timeout_message(100, during_init=False) == "The action exceeded its time limits of 100 milliseconds."


def _invoker() -> ActionInvoker:
    return ActionInvoker(ContainerPool(object(), PoolConfig()))  # type: ignore[arg-type] # bodies only


def test_init_value_carries_code_and_env() -> None:
    action = make_action("python:3.11", "def main(a): return a", main="run",
                         parameters=(Parameter("token", {"k": 1}, init=True), Parameter("plain", "p"),
                                     Parameter("name", "x", init=True)))
    invocation = make_invocation(action, {"token": {"k": 1}, "name": "x", "plain": "p"}, namespace="alice",
                                 activation_id="a" * 32, transaction_id="tx1")
    assert _invoker().init_value(invocation, deadline_ms=1234) == {
        "name": "hello", "main": "run", "binary": False, "code": "def main(a): return a",
        "env": {"token": '{"k": 1}', "name": "x", "__OW_NAMESPACE": "alice", "__OW_ACTION_NAME": "/guest/hello",
                "__OW_ACTION_VERSION": "0.0.1", "__OW_ACTIVATION_ID": "a" * 32, "__OW_TRANSACTION_ID": "tx1",
                "__OW_DEADLINE": "1234"}}


def test_run_body_strips_init_params_and_sends_deadline_as_string() -> None:
    action = make_action("python:3.11", "x", parameters=(Parameter("token", "t", init=True),))
    invocation = make_invocation(action, {"token": "t", "n": 1}, activation_id="b" * 32, transaction_id="tx2")
    assert _invoker().run_body(invocation, deadline_ms=99) == {
        "value": {"n": 1}, "namespace": "guest", "action_name": "/guest/hello", "action_version": "0.0.1",
        "activation_id": "b" * 32, "transaction_id": "tx2", "deadline": "99",
        # blank outside rule deliveries, so a warm runtime never shows an earlier activation's keys
        "rule": "", "event_id": "", "attempt": "", "delivery_key": "", "idempotency_key": ""}


def test_run_body_of_a_rule_delivery_carries_its_idempotency_keys() -> None:
    delivery = Delivery("guest/r", "event-1", 2)
    invocation = replace(make_invocation(make_action("python:3.11", "x"), {}, activation_id="c" * 32),
                         delivery=delivery)
    body = _invoker().run_body(invocation, deadline_ms=99)
    assert {k: body[k] for k in ("rule", "event_id", "attempt", "delivery_key", "idempotency_key")} == {
        "rule": "guest/r", "event_id": "event-1", "attempt": "2", "delivery_key": delivery.delivery_key,
        "idempotency_key": f"{delivery.delivery_key}-2"}


def test_api_key_only_with_provide_api_key() -> None:
    key_env = {"__OW_API_KEY": "uuid:secret"}
    plain = make_invocation(make_action("python:3.11", "x"), {}, init_env=key_env)
    assert "api_key" not in _invoker().run_body(plain, 1)
    assert "__OW_API_KEY" not in _invoker().init_value(plain, 1)["env"]
    provided = make_invocation(make_action("python:3.11", "x", annotations=(Parameter("provide-api-key", True),)),
                               {}, init_env=key_env)
    assert _invoker().run_body(provided, 1)["api_key"] == "uuid:secret"
    assert _invoker().init_value(provided, 1)["env"]["__OW_API_KEY"] == "uuid:secret"
