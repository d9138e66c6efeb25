"""ActionInvoker: runs one invocation on a pooled runtime and turns it into an activation record.

Builds the /init and /run bodies of reference/openwhisk.md section 5.1, classifies what the
proxy answered into status codes 0-3 with OpenWhisk's messages (section 2.6) and destroys the
runtime after a failed init, a timeout, a crash or an OOM kill.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import ActionRuntimeError, UnsupportedKind
from triggerhub.invoker.base import ProxyResponse
from triggerhub.invoker.pool import ContainerPool, Lease
from triggerhub.model import (JSON, NO_DELIVERY_ENVIRONMENT, Activation, ActivationResponse, Invocation, Parameter,
                              StatusCode, annotation)
from triggerhub.observe.lineage import traceparent_of

logger = logging.getLogger(__name__)

MAX_RESULT_BYTES = 1024 * 1024
RESOURCE_ERROR = "Failed to provision resources to run the action."
OOM = "The action exhausted its memory and was aborted."
ABNORMAL_INIT = "The action did not initialize and exited unexpectedly."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."


def timeout_message(timeout_ms: int, *, during_init: bool) -> str:
    phase = " during initialization" if during_init else ""
    return f"The action exceeded its time limits of {timeout_ms} milliseconds{phase}."


def classify_init(reply: ProxyResponse, timeout_ms: int) -> ActivationResponse | None:
    """None when /init succeeded; otherwise the developer error the activation ends with."""
    if reply.status == 200 and not (reply.oom or reply.timed_out):
        return None
    if reply.oom:
        message: JSON = OOM
    elif reply.timed_out:
        message = timeout_message(timeout_ms, during_init=True)
    elif reply.status == 0:
        message = ABNORMAL_INIT
    elif isinstance(reply.body, dict) and "error" in reply.body:
        message = reply.body["error"]
    else:
        message = f"The action failed during initialization: {_text(reply.raw)}"
    return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, message)


def classify_run(reply: ProxyResponse, timeout_ms: int, max_result_bytes: int = MAX_RESULT_BYTES) -> ActivationResponse:
    if reply.oom:
        return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, OOM)
    if reply.timed_out:
        return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, timeout_message(timeout_ms, during_init=False))
    if reply.status == 0:
        return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, ABNORMAL_RUN)
    if len(reply.raw) > max_result_bytes:
        return ActivationResponse.error(
            StatusCode.APPLICATION_ERROR,
            f"The action produced a response that exceeded the allowed length: {len(reply.raw)} > "
            f"{max_result_bytes} bytes. The truncated response was: {_text(reply.raw[:max_result_bytes])}")
    body = reply.body
    invalid = f"The action did not produce a valid JSON or JSON Array response: {_text(reply.raw)}"
    if reply.status != 200:
        error = body["error"] if isinstance(body, dict) and "error" in body else invalid
        return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, error)
    if isinstance(body, dict) and "error" in body:
        return ActivationResponse.error(StatusCode.APPLICATION_ERROR, body["error"])
    if isinstance(body, (dict, list)):
        return ActivationResponse.ok(body)
    return ActivationResponse.error(StatusCode.DEVELOPER_ERROR, invalid)


def with_size(response: ActivationResponse) -> ActivationResponse:
    """The response with `size`: bytes of its compact JSON result."""
    encoded = json.dumps(response.result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return ActivationResponse(response.status_code, response.result, len(encoded))


def env_string(value: JSON) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _default_api_key(invocation: Invocation) -> str | None:
    return invocation.init_env.get("__OW_API_KEY")


@dataclass(frozen=True, slots=True)
class _Outcome:
    start_ms: int
    end_ms: int
    response: ActivationResponse
    logs: tuple[str, ...] = ()
    timed_out: bool = False
    init_time_ms: int | None = None


class ActionInvoker:
    """Implements base.Invoker over a ContainerPool. Never raises for action or runtime failures.

    `api_key_of` supplies the caller's `uuid:key` for actions annotated provide-api-key (the
    store only keeps key hashes); by default it is taken from `invocation.init_env`.
    """

    def __init__(self, pool: ContainerPool, *, clock: Clock = SYSTEM_CLOCK,
                 max_result_bytes: int = MAX_RESULT_BYTES,
                 api_key_of: Callable[[Invocation], str | None] = _default_api_key) -> None:
        self._pool = pool
        self._clock = clock
        self._max_result_bytes = max_result_bytes
        self._api_key_of = api_key_of

    async def invoke(self, invocation: Invocation) -> Activation:
        action = invocation.action
        try:
            async with self._pool.lease(invocation.namespace, action) as lease:
                outcome = await self._activate(invocation, lease)
        except UnsupportedKind as exc:
            logger.info("activation %s of %s: %s", invocation.activation_id, action.fqn, exc)
            now = self._clock.now_ms()
            outcome = _Outcome(now, now, ActivationResponse.error(StatusCode.DEVELOPER_ERROR, str(exc)))
        except (ActionRuntimeError, OSError) as exc:
            logger.warning("activation %s of %s: runtime failure: %s", invocation.activation_id, action.fqn, exc)
            now = self._clock.now_ms()
            outcome = _Outcome(now, now, ActivationResponse.error(StatusCode.WHISK_ERROR, RESOURCE_ERROR))
        record = self._record(invocation, outcome)
        # debug only: the engine logs the one "activation ... ended" line once the record is stored
        logger.debug("activation %s of %s finished: %s", invocation.activation_id, action.fqn,
                     record.response.status_code.text)
        return record

    async def _activate(self, invocation: Invocation, lease: Lease) -> _Outcome:
        limits = invocation.action.limits
        log_limit_bytes = limits.logs_mb * 1024 * 1024
        start_ms = self._clock.now_ms()
        init_time_ms: int | None = None
        if lease.needs_init:
            value = self.init_value(invocation, deadline_ms=start_ms + limits.timeout_ms)
            reply = await lease.runtime.init(value, limits.timeout_ms)
            init_time_ms = self._clock.now_ms() - start_ms
            failure = classify_init(reply, limits.timeout_ms)
            if failure is not None:
                end_ms = self._clock.now_ms()
                await lease.destroy()
                logs = await lease.runtime.logs(log_limit_bytes)
                return _Outcome(start_ms, end_ms, failure, tuple(logs), reply.timed_out, init_time_ms)
            lease.mark_initialized()
        body = self.run_body(invocation, deadline_ms=self._clock.now_ms() + limits.timeout_ms)
        reply = await lease.runtime.run(body, limits.timeout_ms)
        end_ms = self._clock.now_ms()
        response = classify_run(reply, limits.timeout_ms, self._max_result_bytes)
        if reply.status == 0 or reply.oom or reply.timed_out:
            await lease.destroy()  # killed first, so collecting its logs does not wait for sentinels
        logs = await lease.runtime.logs(log_limit_bytes)
        return _Outcome(start_ms, end_ms, response, tuple(logs), reply.timed_out, init_time_ms)

    def _provides_api_key(self, invocation: Invocation) -> bool:
        return bool(annotation(invocation.action.annotations, "provide-api-key", False))

    def init_value(self, invocation: Invocation, deadline_ms: int) -> dict[str, JSON]:
        """The /init `value`: code plus env (init parameters and the __OW_* context)."""
        action = invocation.action
        env = {k: v for k, v in invocation.init_env.items() if k != "__OW_API_KEY"}
        env.update({p.key: env_string(p.value) for p in action.parameters if p.init})
        api_key = self._api_key_of(invocation) if self._provides_api_key(invocation) else None
        if api_key is not None:
            env["__OW_API_KEY"] = api_key
        env.update({
            "__OW_NAMESPACE": invocation.namespace, "__OW_ACTION_NAME": str(action.fqn),
            "__OW_ACTION_VERSION": action.version, "__OW_ACTIVATION_ID": invocation.activation_id,
            "__OW_TRANSACTION_ID": invocation.transaction_id, "__OW_DEADLINE": str(deadline_ms),
        })
        return {"name": action.name, "main": action.exec.main or "main", "binary": action.exec.binary,
                "code": action.exec.code or "", "env": env}

    def run_body(self, invocation: Invocation, deadline_ms: int) -> dict[str, JSON]:
        """The /run body; init parameters are not repeated in `value`."""
        action = invocation.action
        value = invocation.args
        init_keys = {p.key for p in action.parameters if p.init}
        if isinstance(value, dict) and init_keys:
            value = {k: v for k, v in value.items() if k not in init_keys}
        body: dict[str, JSON] = {
            "value": value if value is not None else {}, "namespace": invocation.namespace,
            "action_name": str(action.fqn), "action_version": action.version,
            "activation_id": invocation.activation_id, "transaction_id": invocation.transaction_id,
            "deadline": str(deadline_ms),
            **(NO_DELIVERY_ENVIRONMENT if invocation.delivery is None else invocation.delivery.run_environment()),
        }
        api_key = self._api_key_of(invocation) if self._provides_api_key(invocation) else None
        if api_key is not None:
            body["api_key"] = api_key
        traceparent = traceparent_of(invocation.extra_annotations)
        if traceparent is not None:  # the proxies export every /run key but value as __OW_<KEY>
            body["traceparent"] = traceparent
        return body

    def _record(self, invocation: Invocation, outcome: _Outcome) -> Activation:
        action = invocation.action
        annotations = [
            Parameter("path", invocation.path_annotation or action.fqn.path + "/" + action.name),
            Parameter("kind", action.exec.kind),
            Parameter("limits", action.limits.to_json()),
            Parameter("timeout", outcome.timed_out),
            Parameter("waitTime", max(0, outcome.start_ms - invocation.accepted_ms)),
        ]
        if outcome.init_time_ms is not None:
            annotations.append(Parameter("initTime", outcome.init_time_ms))
        if invocation.binding:
            annotations.append(Parameter("binding", invocation.binding))
        return Activation(
            namespace=invocation.namespace, name=action.name, subject=invocation.subject,
            activation_id=invocation.activation_id, start_ms=outcome.start_ms, end_ms=outcome.end_ms,
            response=with_size(outcome.response), logs=outcome.logs,
            annotations=tuple(annotations) + invocation.extra_annotations,
            version=action.version, cause=invocation.cause)
