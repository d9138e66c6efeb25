"""Read the hub's current state, and carry out a Plan through the REST API with rollback.

Each step pushes its inverse onto an undo list as soon as it succeeded; when a REST call fails,
the undo list runs backwards so the hub is left as it was, then the error is raised with the
entity it concerned. Feed triggers follow wskdeploy: PUT the trigger with a `feed` annotation,
invoke the feed action blocking with lifecycleEvent CREATE; on undeploy DELETE the feed first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from triggerhub import errors
from triggerhub.manifests import routes as R
from triggerhub.manifests.client import WhiskClient
from triggerhub.manifests.plan import Change, EntityKey, Plan, RouteStep, Snapshot, Step
from triggerhub.manifests.project import MANAGED_KEY, FeedSpec, Project, entity_path
from triggerhub.model import JSON, Collection

log = logging.getLogger(__name__)
Undo = Callable[[], Awaitable[Any]]


async def resolve_namespace(client: WhiskClient) -> str:
    names = await client.get("/namespaces")
    if not names:
        raise errors.Forbidden("the hub lists no namespace for these credentials")
    return str(names[0])


# --------------------------------------------------------------------------- reading


async def take_snapshot(client: WhiskClient, project: Project) -> Snapshot:
    ns = project.namespace
    docs: dict[EntityKey, JSON] = {}
    for entity in project.entities:
        doc = await _get_or_none(client, entity.path(ns))
        if doc is not None:
            docs[entity.key] = doc
    owned: set[EntityKey] = set()
    if project.name is not None:
        for key, summary in (await _list_all(client, ns)).items():
            if _owner(summary) == project.name:
                owned.add(key)
                if key not in docs:
                    docs[key] = await _get_or_none(client, entity_path(ns, *key)) or summary
    feed_inputs: dict[str, dict[str, JSON]] = {}
    for (collection, name), doc in docs.items():
        feed = _feed_of(doc) if collection is Collection.TRIGGERS else None
        if feed is not None:
            config = await _read_feed(client, ns, name, feed)
            if config is not None:
                feed_inputs[name] = config
    routes = await R.fetch_routes(client, ns) if project.routes or project.managed else []
    return Snapshot(docs, feed_inputs, frozenset(owned), tuple(routes))


async def _list_all(client: WhiskClient, ns: str) -> dict[EntityKey, JSON]:
    found: dict[EntityKey, JSON] = {}
    packages = await client.list(f"/namespaces/{ns}/packages")
    for collection in (Collection.ACTIONS, Collection.TRIGGERS, Collection.RULES):
        for item in await client.list(f"/namespaces/{ns}/{collection.value}"):
            found[(collection, _relative_name(item))] = item
    for package in packages:
        found[(Collection.PACKAGES, package["name"])] = package
        if not package.get("binding"):
            for item in await client.list(f"/namespaces/{ns}/actions/{package['name']}/"):
                found[(Collection.ACTIONS, _relative_name(item))] = item
    return found


def _relative_name(item: JSON) -> str:
    _, _, package = str(item.get("namespace", "")).partition("/")
    return f"{package}/{item['name']}" if package else item["name"]


def _owner(doc: JSON) -> str | None:
    for item in doc.get("annotations") or []:
        value = item.get("value")
        if item.get("key") == MANAGED_KEY and isinstance(value, dict):
            project = value.get("projectName")
            return None if project is None else str(project)
    return None


def _feed_of(doc: JSON) -> str | None:
    for item in (doc or {}).get("annotations") or []:
        value = item.get("value")
        if item.get("key") == "feed" and isinstance(value, str):
            return value
    return None


async def _get_or_none(client: WhiskClient, path: str) -> JSON:
    try:
        return await client.get(path)
    except errors.NotFound:
        return None


async def _read_feed(client: WhiskClient, ns: str, trigger: str, feed: str) -> dict[str, JSON] | None:
    """The feed's view of the trigger's config (lifecycleEvent READ), or None if it gives none."""
    try:
        record = await client.invoke(FeedSpec(feed).invoke_path, _feed_args("READ", ns, trigger, client, {}))
    except errors.ApiError as exc:
        log.info("feed %s READ for trigger %s failed: %s", feed, trigger, exc.message)
        return None
    result = ((record or {}).get("response") or {}).get("result") or {}
    config = result.get("config") if isinstance(result, dict) else None
    return config if isinstance(config, dict) else None


def _feed_args(event: str, ns: str, trigger: str, client: WhiskClient, inputs: dict[str, JSON]) -> JSON:
    return {**inputs, "lifecycleEvent": event, "triggerName": f"/{ns}/{trigger}", "authKey": client.auth_key}


# --------------------------------------------------------------------------- writing


Progress = Callable[[int, int, str], None]  # (step number from 1, steps in all, "create action a/b")


@dataclass(slots=True)
class Applier:
    client: WhiskClient
    namespace: str
    undo: list[tuple[str, Undo]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    on_step: Progress = field(default=lambda number, total, what: None)  # hears each step as it starts

    async def run(self, plan: Plan) -> list[str]:
        """Apply every step or none; returns one line per step done. Routes go before the
        entities they call are deleted, and after the entities they call are created."""
        route_deletes = [s for s in plan.route_steps if s.change is Change.DELETE]
        route_puts = [s for s in plan.route_steps if s.change is not Change.DELETE]
        steps = ([(self._route_words(s), partial(self._route_step, s)) for s in route_deletes]
                 + [(f"{s.change.value} {s.kind_word} {s.name}", partial(self._step, s)) for s in plan.steps]
                 + [(self._route_words(s), partial(self._route_step, s)) for s in route_puts])
        for number, (what, action) in enumerate(steps, start=1):
            self.on_step(number, len(steps), what)
            try:
                await action()
            except errors.ApiError as exc:
                await self._rollback()
                failed = type(exc)(f"{what} failed: {exc.message}; "
                                   f"nothing was changed (rolled back {len(self.done)} step(s))")
                failed.status = exc.status
                raise failed from exc
            verb, _, rest = what.partition(" ")
            self.done.append(f"{verb}d {rest}")
        return self.done

    @staticmethod
    def _route_words(step: RouteStep) -> str:
        return f"{step.change.value} route {R.describe(step.route)}"

    async def _route_step(self, step: RouteStep) -> None:
        if step.change is Change.DELETE:
            await R.delete_route(self.client, step.route)
            self._push(f"recreate route {R.describe(step.route)}", partial(R.create_route, self.client, step.route))
            return
        await R.create_route(self.client, step.route)
        if step.current is None:
            self._push(f"delete route {R.describe(step.route)}", partial(R.delete_route, self.client, step.route))
        else:
            self._push(f"restore route {R.describe(step.current)}", partial(R.create_route, self.client, step.current))

    async def _step(self, step: Step) -> None:
        path = entity_path(self.namespace, step.collection, step.name)
        desired = step.desired
        if step.change is Change.CREATE and desired is not None:
            await self._put(path, desired.body, overwrite=False, previous=None)
            if desired.feed is not None:
                await self._feed_create(step.name, desired.feed)
        elif step.change is Change.UPDATE and desired is not None:
            old_feed = _feed_of(step.current)
            if desired.feed is not None and old_feed is not None:
                await self._feed_delete(step.name, old_feed, step.current_feed_inputs)
            await self._put(path, _dropping_routing(desired.body, step.current), overwrite=True, previous=step.current)
            if desired.feed is not None:
                await self._feed_create(step.name, desired.feed)
        else:
            feed = _feed_of(step.current) if step.collection is Collection.TRIGGERS else None
            if feed is not None:
                await self._feed_delete(step.name, feed, step.current_feed_inputs)
            await self._delete(path, step)

    async def _put(self, path: str, body: JSON, *, overwrite: bool, previous: JSON) -> None:
        await self.client.put(path, body, {"overwrite": "true" if overwrite else "false"})
        if previous is None:
            self._push(f"delete {path}", lambda: self.client.delete(path))
        else:
            old_body = put_body(previous)
            self._push(f"restore {path}", lambda: self.client.put(path, old_body, {"overwrite": "true"}))

    async def _delete(self, path: str, step: Step) -> None:
        await self.client.delete(path)
        if step.current is not None:
            old_body = put_body(step.current)
            self._push(f"recreate {path}", lambda: self.client.put(path, old_body, {"overwrite": "false"}))

    async def _feed_create(self, trigger: str, feed: FeedSpec) -> None:
        await self.client.invoke(feed.invoke_path, _feed_args("CREATE", self.namespace, trigger, self.client,
                                                              feed.inputs))
        self._push(f"feed DELETE {trigger}", lambda: self.client.invoke(
            feed.invoke_path, _feed_args("DELETE", self.namespace, trigger, self.client, {})))

    async def _feed_delete(self, trigger: str, feed_name: str, old_inputs: dict[str, JSON] | None) -> None:
        feed = FeedSpec(feed_name, dict(old_inputs or {}))
        try:
            await self.client.invoke(feed.invoke_path, _feed_args("DELETE", self.namespace, trigger, self.client, {}))
        except errors.ApiError as exc:  # like `wsk trigger delete`: a feed that forgot us is not fatal
            log.warning("feed %s DELETE for trigger %s failed: %s", feed_name, trigger, exc.message)
            return
        if old_inputs is not None:
            self._push(f"feed CREATE {trigger}", lambda: self.client.invoke(
                feed.invoke_path, _feed_args("CREATE", self.namespace, trigger, self.client, feed.inputs)))

    def _push(self, what: str, undo: Undo) -> None:
        self.undo.append((what, undo))

    async def _rollback(self) -> None:
        while self.undo:
            what, undo = self.undo.pop()
            try:
                await undo()
            except errors.ApiError as exc:
                log.error("rollback step '%s' failed: %s", what, exc.message)


ROUTING_KEYS = ("filter", "transform", "retry", "deadLetter")


def _dropping_routing(body: dict[str, JSON], current: JSON) -> dict[str, JSON]:
    """A rule update without `filter`/`transform`/`retry`/`deadLetter` removes the hub's (a
    left-out key would keep it); without `shadow`, a shadow rule becomes a running one."""
    dropped: dict[str, JSON] = {key: None for key in ROUTING_KEYS if key in (current or {}) and key not in body}
    if (current or {}).get("shadow") and "shadow" not in body:
        dropped["shadow"] = False
    return {**body, **dropped} if "trigger" in body else body


def put_body(doc: JSON) -> dict[str, JSON]:
    """The PUT body that recreates an entity as GET returned it."""
    body: dict[str, JSON] = {"publish": doc.get("publish", False),
                             "annotations": [a for a in doc.get("annotations") or []
                                             if a.get("key") not in ("exec", "binding")]}
    if "exec" in doc:
        body["exec"] = dict(doc["exec"])
        body["limits"] = doc.get("limits") or {}
    if "trigger" in doc:
        body["trigger"] = f"/{doc['trigger']['path']}/{doc['trigger']['name']}"
        body["action"] = f"/{doc['action']['path']}/{doc['action']['name']}"
        body.update({key: doc.get(key) for key in ROUTING_KEYS})  # null removes one the failed update added
        body["shadow"] = bool(doc.get("shadow", False))
    else:
        body["parameters"] = doc.get("parameters") or []
    if doc.get("binding"):
        body["binding"] = doc["binding"]
    return body


async def deploy(client: WhiskClient, project: Project, plan: Plan) -> list[str]:
    return await Applier(client, project.namespace).run(plan)
