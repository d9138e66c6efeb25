"""ActionInvoker records, with a scripted runtime at the RuntimeFactory seam and a fake ms clock."""

from __future__ import annotations

from collections.abc import Callable

from tests.plugins.clock import TestClock
from triggerhub.errors import ActionRuntimeError
from triggerhub.invoker.activation import ActionInvoker
from triggerhub.invoker.base import ProxyResponse, RuntimeSpec
from triggerhub.invoker.pool import ContainerPool, PoolConfig
from triggerhub.model import JSON, ActivationResponse, Parameter, StatusCode
from tests.plugins.invoker import make_action, make_invocation

Handler = Callable[[str, dict[str, JSON]], ProxyResponse]


class TickingClock(TestClock):
    """Each reading of now_ms advances 10 ms, so start/end/initTime are exact."""

    def __init__(self, start_ms: int = 1_000) -> None:
        super().__init__(start_ms / 1000)

    def now_ms(self) -> int:
        self.jump(0.010)
        return super().now_ms()


class ScriptedRuntime:
    def __init__(self, spec: RuntimeSpec, handler: Handler) -> None:
        self.spec = spec
        self.handler = handler
        self.calls: list[str] = []

    async def init(self, value: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        self.calls.append("init")
        return self.handler("/init", value)

    async def run(self, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        self.calls.append("run")
        return self.handler("/run", body)

    async def logs(self, limit_bytes: int) -> list[str]:
        self.calls.append("logs")
        return [f"log of call {len(self.calls)}"]

    async def pause(self) -> None:
        self.calls.append("pause")

    async def resume(self) -> None:
        self.calls.append("resume")

    async def destroy(self) -> None:
        self.calls.append("destroy")


class ScriptedFactory:
    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.created: list[ScriptedRuntime] = []

    async def create(self, spec: RuntimeSpec) -> ScriptedRuntime:
        if self.handler is None:
            raise ActionRuntimeError("no engine")
        runtime = ScriptedRuntime(spec, self.handler)
        self.created.append(runtime)
        return runtime

    async def cleanup_orphans(self) -> int:
        return 0


def ok(path: str, body: dict[str, JSON]) -> ProxyResponse:
    return ProxyResponse(200, {"ok": True} if path == "/init" else {"echo": body["value"]}, b"{}")


def invoker_with(factory: ScriptedFactory) -> tuple[ActionInvoker, ContainerPool]:
    pool = ContainerPool(factory, PoolConfig())
    return ActionInvoker(pool, clock=TickingClock()), pool


async def test_cold_then_warm_records() -> None:
    factory = ScriptedFactory(ok)
    invoker, pool = invoker_with(factory)
    action = make_action("python:3.11", "code")
    cold = await invoker.invoke(make_invocation(action, {"n": 1}, accepted_ms=1_005, activation_id="c" * 32,
                                                cause="d" * 32, binding="guest/bound",
                                                path_annotation="guest/pkg/hello",
                                                extra_annotations=(Parameter("causedBy", "sequence"),)))
    assert (cold.namespace, cold.name, cold.subject, cold.activation_id, cold.cause, cold.version) == (
        "guest", "hello", "guest", "c" * 32, "d" * 32, "0.0.1")
    assert (cold.start_ms, cold.end_ms, cold.logs) == (1_010, 1_040, ("log of call 3",))
    assert cold.response == ActivationResponse(StatusCode.SUCCESS, {"echo": {"n": 1}}, 16)
    assert [(a.key, a.value) for a in cold.annotations] == [
        ("path", "guest/pkg/hello"), ("kind", "python:3.11"),
        ("limits", {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}),
        ("timeout", False), ("waitTime", 5), ("initTime", 10), ("binding", "guest/bound"),
        ("causedBy", "sequence")]
    warm = await invoker.invoke(make_invocation(action, {"n": 2}, accepted_ms=1_000))
    assert [a.key for a in warm.annotations] == ["path", "kind", "limits", "timeout", "waitTime"]
    assert [a.value for a in warm.annotations][0] == "guest/hello"
    assert factory.created[0].calls == ["init", "run", "logs", "run", "logs"]
    await pool.close()


async def test_init_failure_destroys_runtime_and_next_invoke_is_cold() -> None:
    def failing_init(path: str, body: dict[str, JSON]) -> ProxyResponse:
        if path == "/init":
            return ProxyResponse(502, {"error": "Initialization has failed due to: SyntaxError: x"}, b"{}")
        return ok(path, body)

    factory = ScriptedFactory(failing_init)
    invoker, pool = invoker_with(factory)
    action = make_action("nodejs:20", "code")
    record = await invoker.invoke(make_invocation(action))
    assert record.response == ActivationResponse(
        StatusCode.DEVELOPER_ERROR, {"error": "Initialization has failed due to: SyntaxError: x"}, 60)
    assert record.logs == ("log of call 3",)
    assert [a.key for a in record.annotations][-1] == "initTime"
    await invoker.invoke(make_invocation(action))
    assert [r.calls for r in factory.created] == [["init", "destroy", "logs"], ["init", "destroy", "logs"]]
    await pool.close()


async def test_run_timeout_destroys_runtime_and_marks_timeout() -> None:
    def slow_run(path: str, body: dict[str, JSON]) -> ProxyResponse:
        return ok(path, body) if path == "/init" else ProxyResponse(0, None, timed_out=True)

    factory = ScriptedFactory(slow_run)
    invoker, pool = invoker_with(factory)
    record = await invoker.invoke(make_invocation(make_action("python:3.11", "code", timeout_ms=100)))
    assert record.response.result == {"error": "The action exceeded its time limits of 100 milliseconds."}
    assert record.response.status_code is StatusCode.DEVELOPER_ERROR
    assert ("timeout", True) in [(a.key, a.value) for a in record.annotations]
    assert factory.created[0].calls == ["init", "run", "destroy", "logs"]
    assert pool.statistics().warm == 0
    await pool.close()


async def test_application_error_keeps_the_runtime_warm() -> None:
    def app_error(path: str, body: dict[str, JSON]) -> ProxyResponse:
        return ok(path, body) if path == "/init" else ProxyResponse(200, {"error": "division by zero"}, b"{}")

    factory = ScriptedFactory(app_error)
    invoker, pool = invoker_with(factory)
    record = await invoker.invoke(make_invocation(make_action("python:3.11", "code")))
    assert record.response == ActivationResponse(StatusCode.APPLICATION_ERROR, {"error": "division by zero"}, 28)
    assert pool.statistics().warm == 1
    await pool.close()


async def test_runtime_that_cannot_start_is_a_whisk_error_record() -> None:
    invoker, pool = invoker_with(ScriptedFactory(None))
    record = await invoker.invoke(make_invocation(make_action("python:3.11", "code"), accepted_ms=1_000))
    assert record.response == ActivationResponse(
        StatusCode.WHISK_ERROR, {"error": "Failed to provision resources to run the action."}, 60)
    assert (record.start_ms, record.end_ms, record.logs) == (1_010, 1_010, ())
    assert [(a.key, a.value) for a in record.annotations][3:] == [("timeout", False), ("waitTime", 10)]
    await pool.close()
