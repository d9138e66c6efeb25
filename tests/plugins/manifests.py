"""Fixtures for manifest tests: a small in-memory WhiskClient (seam fake) and fixture paths.

The fake keeps entity docs by REST path and does what an OpenWhisk controller does to them on
PUT (409 without overwrite, version bump, `exec` annotation, sequence `_actions`, rule links);
feed actions are answered by a handler function the test passes in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from triggerhub import errors
from triggerhub.model import bump_version

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "manifests"
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "manifests"
GUEST_AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:" + "k" * 64

FeedHandler = Callable[[str, dict[str, Any]], Any]  # (feed action path, args) -> result or raises ApiError
Failure = Callable[[str, str], errors.ApiError | None]  # (method, path) -> error to raise


def _feed_ok(path: str, args: dict[str, Any]) -> Any:
    return {"config": {k: v for k, v in args.items() if k not in ("lifecycleEvent", "triggerName", "authKey")}}


@dataclass
class FakeWhisk:
    namespace: str = "guest"
    feed_handler: FeedHandler = _feed_ok
    fail: Failure = lambda method, path: None
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    feed_configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # triggerName -> inputs

    @property
    def auth_key(self) -> str:
        return GUEST_AUTH

    async def info(self) -> Any:
        raise errors.NotFound(errors.NOT_FOUND)  # the fake has no runtimes list: OpenWhisk's table applies

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        self._call("GET", path)
        if path == "/namespaces":
            return [self.namespace]
        if path not in self.docs:
            raise errors.NotFound(errors.NOT_FOUND)
        return copy.deepcopy(self.docs[path])

    async def put(self, path: str, body: Any, query: Mapping[str, str] | None = None) -> Any:
        self._call("PUT", path)
        exists = path in self.docs
        if exists and (query or {}).get("overwrite") != "true":
            raise errors.Conflict(errors.ALREADY_EXISTS)
        collection, namespace, name = self._parts(path)
        doc = {"namespace": namespace, "name": name, "publish": False, "annotations": [], "parameters": [],
               **copy.deepcopy(body)}
        doc["version"] = bump_version(self.docs[path]["version"]) if exists else "0.0.1"
        if collection == "actions":
            self._amend_action(doc)
        if collection == "rules":
            doc = self._rule(doc)
        if collection == "triggers":
            doc.setdefault("limits", {})
            doc["rules"] = self.docs.get(path, {}).get("rules", {})
        self.docs[path] = doc
        return copy.deepcopy(doc)

    async def delete(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        self._call("DELETE", path)
        if path not in self.docs:
            raise errors.NotFound(errors.NOT_FOUND)
        return self.docs.pop(path)

    async def list(self, path: str) -> list[Any]:
        self._call("LIST", path)
        prefix = path.rstrip("/") + "/"
        nested = path.endswith("/")
        return [copy.deepcopy(doc) for p, doc in sorted(self.docs.items())
                if p.startswith(prefix) and (nested or p.count("/") == prefix.count("/"))]

    async def invoke(self, path: str, args: Any, blocking: bool = True) -> Any:
        self._call("POST", path)
        self.invocations.append((path, copy.deepcopy(args)))
        result = self.feed_handler(path, args)
        event, trigger = args.get("lifecycleEvent"), args.get("triggerName")
        if event == "CREATE":
            self.feed_configs[trigger] = result.get("config", {}) if isinstance(result, dict) else {}
        elif event == "DELETE":
            self.feed_configs.pop(trigger, None)
        elif event == "READ":
            result = {"config": self.feed_configs[trigger]} if trigger in self.feed_configs else {}
        return {"activationId": "0" * 32, "response": {"status": "success", "success": True, "result": result}}

    def entity(self, collection: str, name: str) -> dict[str, Any]:
        return self.docs[f"/namespaces/{self.namespace}/{collection}/{name}"]

    def names(self, collection: str) -> list[str]:
        prefix = f"/namespaces/{self.namespace}/{collection}/"
        return sorted(p.removeprefix(prefix) for p in self.docs if p.startswith(prefix))

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("PUT", "DELETE", "POST")]

    def _call(self, method: str, path: str) -> None:
        self.calls.append((method, path))
        failure = self.fail(method, path)
        if failure is not None:
            raise failure

    def _parts(self, path: str) -> tuple[str, str, str]:
        _, _, namespace, collection, *rest = path.split("/")
        package = f"/{rest[0]}" if len(rest) == 2 else ""
        return collection, namespace + package, rest[-1]

    def _amend_action(self, doc: dict[str, Any]) -> None:
        annotations = [a for a in doc["annotations"] if a["key"] != "exec"]
        if not any(a["key"] == "provide-api-key" for a in annotations):
            annotations.append({"key": "provide-api-key", "value": False})
        doc["annotations"] = annotations + [{"key": "exec", "value": doc["exec"]["kind"]}]
        if doc["exec"]["kind"] == "sequence":
            doc["parameters"] = [{"key": "_actions", "value": doc["exec"]["components"]}]

    def _rule(self, doc: dict[str, Any]) -> dict[str, Any]:
        refs = {}
        for field_name in ("trigger", "action"):
            _, ns, *rest = doc[field_name].split("/")
            refs[field_name] = {"path": "/".join([ns, *rest[:-1]]), "name": rest[-1]}
            target = f"/namespaces/{ns}/{field_name}s/{'/'.join(rest)}"
            if ns == self.namespace and target not in self.docs:
                raise errors.BadRequest(f"{field_name} {doc[field_name]} does not exist")
        doc.update(refs)
        doc["status"] = "active"
        doc.pop("parameters", None)
        for key in ("filter", "transform"):  # null removes one; the hub shows them only when set
            if doc.get(key) is None:
                doc.pop(key, None)
        if not doc.get("shadow"):  # the hub shows `shadow` only when true
            doc.pop("shadow", None)
        return doc


@pytest.fixture
def fake_whisk() -> FakeWhisk:
    return FakeWhisk()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
