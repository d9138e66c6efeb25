"""The API's outermost error layer: a fault in a handler becomes a JSON answer carrying the request
id, logged exactly once with that id; store and bus outages are 503, not 500.

Faults are injected through `create_app`'s extra routes (the seam the CLI uses for /hooks and the
admin routes), in front of a real engine on a SQLite store, over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.plugins.hub import hub_config
from tests.plugins.store import sqlite_url
from triggerhub.api.app import create_app
from triggerhub.engine.bootstrap import ensure_subjects
from triggerhub.engine.core import Engine
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.entities import Entities
from triggerhub.errors import AUTH_MISSING, NOT_FOUND, BusError, RevisionConflict, StoreError
from triggerhub.model import Activation, Invocation
from triggerhub.store.sql import SqlStore


class NoInvoker:
    """No route here runs an action."""

    async def invoke(self, invocation: Invocation) -> Activation:
        raise AssertionError(f"unexpected invocation {invocation.activation_id}")


async def broken_handler(request: web.Request) -> web.Response:
    raise KeyError("a bug in a handler")


async def store_down(request: web.Request) -> web.Response:
    raise StoreError("connection to the database refused (127.0.0.1:1)")


async def bus_down(request: web.Request) -> web.Response:
    raise BusError("publishing to topic 'invocations' failed: broker unreachable")


async def clash(request: web.Request) -> web.Response:
    raise RevisionConflict("revision 3 of /guest/a is now 4")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = SqlStore(sqlite_url(tmp_path / "store.db"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def base_url(tmp_path: Path, store: SqlStore) -> AsyncIterator[str]:
    config = hub_config(tmp_path / "home")
    routes = [web.get("/api/v1/fault/bug", broken_handler), web.get("/api/v1/fault/store", store_down),
              web.post("/api/v1/fault/bus", bus_down), web.put("/api/v1/fault/clash", clash)]
    engine = Engine(config=config, store=store, invoker=NoInvoker(), dispatcher=LocalDispatcher(store),
                    entities=Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes))
    async with engine:
        runner = web.AppRunner(create_app(engine, routes), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


async def fetch(method: str, url: str, request_id: str, **headers: str) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers={"X-Request-ID": request_id, **headers}) as response:
            return response.status, await response.json(), response.headers["X-Request-ID"]


async def test_a_handler_bug_is_a_json_500_logged_once_with_the_request_id(
        base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, echoed = await fetch("GET", f"{base_url}/api/v1/fault/bug", "req-bug-1f3a")
    assert (status, echoed) == (500, "req-bug-1f3a")
    assert body == {"error": "The server encountered an internal error; report the request id in 'code'.",
                    "code": "req-bug-1f3a"}
    mentions = [r for r in caplog.records if "req-bug-1f3a" in r.getMessage()]
    assert [(r.name, r.levelno, r.getMessage()) for r in mentions] == [
        ("triggerhub.api.middleware", logging.ERROR, "request req-bug-1f3a GET /api/v1/fault/bug failed")]
    assert mentions[0].exc_info is not None and "a bug in a handler" in caplog.text
    assert caplog.text.count("req-bug-1f3a") == 1


@pytest.mark.parametrize(("method", "path", "part", "cause"), [
    ("GET", "store", "store", "connection to the database refused (127.0.0.1:1)"),
    ("POST", "bus", "event bus", "publishing to topic 'invocations' failed: broker unreachable"),
])
async def test_store_and_bus_outages_are_503(base_url: str, caplog: pytest.LogCaptureFixture, method: str,
                                             path: str, part: str, cause: str) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, _ = await fetch(method, f"{base_url}/api/v1/fault/{path}", f"req-{path}-77")
    assert (status, body) == (503, {
        "error": "The service is temporarily unavailable (store or event bus unreachable); retry later.",
        "code": f"req-{path}-77"})
    assert [r.getMessage() for r in caplog.records if f"req-{path}-77" in r.getMessage()] == [
        f"request req-{path}-77 {method} /api/v1/fault/{path}: {part} unavailable: {cause}"]
    assert caplog.text.count(f"req-{path}-77") == 1


async def test_a_revision_conflict_is_409(base_url: str) -> None:
    status, body, _ = await fetch("PUT", f"{base_url}/api/v1/fault/clash", "req-clash")
    assert (status, body) == (409, {"error": "Concurrent modification to resource detected.", "code": "req-clash"})


async def test_a_real_store_outage_on_a_real_route_is_503(base_url: str, store: SqlStore,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await store.close()  # the database is gone: every read raises StoreError
    token = base64.b64encode(b"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:key").decode()
    status, body, _ = await fetch("GET", f"{base_url}/api/v1/namespaces/_/actions", "req-gone-1",
                                  Authorization=f"Basic {token}")
    assert (status, body) == (503, {
        "error": "The service is temporarily unavailable (store or event bus unreachable); retry later.",
        "code": "req-gone-1"})
    assert caplog.text.count("req-gone-1") == 1


async def test_entity_routes_answer_their_methods_and_a_json_405_for_any_other(
        base_url: str, store: SqlStore, tmp_path: Path) -> None:
    """One handler per method: a method no handler serves is 405 in the error shape (after auth,
    with the API's CORS headers), HEAD included; the served ones reach their handlers."""
    guest = (await ensure_subjects(store, tmp_path / "home"))["guest"]
    auth = {"Authorization": "Basic " + base64.b64encode(guest.encode()).decode()}
    url = f"{base_url}/api/v1/namespaces/_/actions/hello"
    async with aiohttp.ClientSession() as session:
        async with session.patch(url, headers={"X-Request-ID": "req-patch"}) as response:
            assert (response.status, await response.json()) == (401, {"error": AUTH_MISSING, "code": "req-patch"})
        for path in ("actions/hello", "actions/pkg/hello", "triggers/t", "rules/r", "packages/p"):
            async with session.patch(f"{base_url}/api/v1/namespaces/_/{path}",
                                     headers={"X-Request-ID": "req-patch", **auth}) as response:
                assert (path, response.status, await response.json()) == (path, 405, {"error": "Method Not Allowed",
                                                                                "code": "req-patch"})
                assert response.headers["Access-Control-Allow-Origin"] == "*"
        async with session.head(url, headers=auth) as response:
            assert response.status == 405
        async with session.get(url, headers={"X-Request-ID": "req-get", **auth}) as response:
            assert (response.status, await response.json()) == (404, {"error": NOT_FOUND, "code": "req-get"})
        async with session.put(url, json={"exec": {"kind": "python:3.11", "code": "def main(a): return a"}},
                               headers=auth) as response:
            assert (response.status, (await response.json())["name"]) == (200, "hello")
        async with session.delete(url, headers=auth) as response:
            assert (response.status, (await response.json())["name"]) == (200, "hello")
