"""The OpenAPI document and the aiohttp router list the same routes under /api/v1, /hooks and
/metrics."""

from __future__ import annotations

from pathlib import Path

from tests.plugins.hub import hub_config
from triggerhub.api.app import create_app
from triggerhub.api.hooks import webhook_routes
from triggerhub.api.api_docs import document
from triggerhub.cli.feed_kinds import FEED_KINDS
from triggerhub.engine.core import Engine
from triggerhub.engine.dispatch import LocalDispatcher
from triggerhub.engine.entities import Entities
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.model import Activation, Invocation, TriggerEvent
from triggerhub.store.sql import SqlStore

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


class NoInvoker:
    async def invoke(self, invocation: Invocation) -> Activation:
        raise AssertionError("the router is only inspected")


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}")

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        raise AssertionError("the router is only inspected")

    config = hub_config(tmp_path / "home")
    engine = Engine(config=config, store=store, invoker=NoInvoker(), dispatcher=LocalDispatcher(store),
                    entities=Entities(store, config.limits, max_code_bytes=config.api.max_code_bytes))
    app = create_app(engine, webhook_routes(FeedManager(store, fire, kinds=FEED_KINDS)))
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
            and route.resource.canonical.startswith(("/api/v1", "/hooks", "/metrics"))}


def documented_routes() -> set[tuple[str, str]]:
    """(method, aiohttp canonical path) of every operation; '*' for routes taking every method, and
    for an entity route's 405 handler of every other method."""
    out: set[tuple[str, str]] = set()
    for path, item in document()["paths"].items():
        methods = {m for m in item if m in METHODS}
        assert methods, f"{path} documents no operation"
        for route in [item.get("x-aiohttp-route", path), *item.get("x-aiohttp-aliases", [])]:
            out |= {("*", route)} if item.get("x-aiohttp-any-method") else {(m.upper(), route) for m in methods}
            if item.get("x-aiohttp-refuses-other-methods"):
                out.add(("*", route))  # one handler answering 405 for every method not listed
    return out


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path: Path) -> None:
    served = served_routes(tmp_path)
    documented = documented_routes()
    assert served - documented == set(), "served but not in the OpenAPI document"
    assert documented - served == set(), "documented but not served"
    assert ("GET", "/api/v1/api-docs") in served and ("POST", "/hooks/{namespace}/{trigger}") in served
    assert ("GET", "/metrics") in served


def test_every_path_parameter_is_declared_and_every_reference_resolves() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        in_template = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == in_template, path
    text = repr(doc)
    for name in {chunk.split("'")[0] for chunk in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name

