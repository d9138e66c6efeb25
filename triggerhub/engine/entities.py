"""Entity create/update/get/delete with OpenWhisk's semantics (reference 1.4, 2).

Everything that writes entities — the REST API, manifests through it, bootstrap — comes here.
Bodies are the REST PUT bodies; results are model entities (the API renders them).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from collections.abc import Callable, Sequence
from typing import Any

from triggerhub.config import LimitsConfig
from triggerhub.errors import (
    ALREADY_EXISTS, CONCURRENT_MODIFICATION, FORBIDDEN, NOT_FOUND, WRONG_COLLECTION, BadRequest, Conflict,
    Forbidden, NotFound, PayloadTooLarge, RevisionConflict,
)
from triggerhub.model import (
    Action, ActionLimits, Binding, Collection, Entity, Exec, FullyQualifiedName, Identity, Package,
    Parameter, Parameters, ReducedRule, Rule, RuleStatus, Trigger, annotation, bump_version,
    collection_of, is_valid_name, now_ms, params_from_json, with_annotation,
)
from triggerhub.engine import kinds
from triggerhub.engine.resolve import check_read, check_write, not_authorized, package_readable
from triggerhub.rules.pattern import compile_filter
from triggerhub.rules.transform import compile_transform
from triggerhub.store.base import Store

EXEC_LIMIT_BYTES = 48 * 1024 * 1024
ANNOTATIONS_LIMIT_BYTES = 1024 * 1024


CACHE_MAX_ENTRIES = 10_000
MAX_MEMBERS = 100_000  # reading "all" of a package's or namespace's entities


class Entities:
    """`cache_ttl_s=None` caches reads until this process writes the entity (one writer: embedded
    mode); with several writing processes, give a TTL to bound staleness."""

    def __init__(self, store: Store, limits: LimitsConfig, *, cache_ttl_s: float | None = None) -> None:
        self.store = store
        self.limits = limits
        self._cache_ttl_s = cache_ttl_s
        self._cache: dict[tuple[str, str], tuple[Entity | None, float]] = {}

    async def lookup(self, path: str, name: str) -> Entity | None:
        """A cached read for the hot paths (invoke, fire); writes always read the store."""
        key = (path, name)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        entity = await self.store.get_entity(path, name)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (entity, now + self._cache_ttl_s if self._cache_ttl_s is not None else math.inf)
        return entity

    def forget(self, entities: list[Entity]) -> None:
        for entity in entities:
            self._cache.pop((entity.namespace, entity.name), None)

    # ------------------------------------------------------------------ generic
    async def get(self, identity: Identity, fqn: FullyQualifiedName, collection: Collection) -> Entity:
        entity = await self.lookup(fqn.path, fqn.name)
        package = entity if isinstance(entity, Package) and fqn.package is None else await self._package_of(fqn)
        check_read(identity, fqn, package)
        if fqn.namespace != identity.namespace and not package_readable(identity, package,
                                                                        await self.bound_package(package)):
            raise Forbidden(FORBIDDEN)  # a published binding of a package the caller may not read
        if entity is None:
            raise NotFound(NOT_FOUND)
        if collection_of(entity) is not collection:
            raise Conflict(WRONG_COLLECTION)
        return entity

    async def find(self, fqn: FullyQualifiedName, collection: Collection) -> Entity | None:
        entity = await self.lookup(fqn.path, fqn.name)
        if entity is None or collection_of(entity) is not collection:
            return None
        return entity

    async def check_references(self, identity: Identity,
                               references: Sequence[tuple[FullyQualifiedName, Collection]]) -> None:
        """403 unless the caller may read every entity a request names (a rule's trigger and
        action, sequence components, a binding's package, a trigger's feed), as OpenWhisk's
        `referencedEntities` check does. It runs before any existence check, so another
        namespace's private entity and an absent one get the same answer."""
        refused = [fqn for fqn, collection in references if not await self._readable(identity, fqn, collection)]
        if refused:
            raise not_authorized(refused)

    async def _readable(self, identity: Identity, fqn: FullyQualifiedName, collection: Collection) -> bool:
        if fqn.namespace == identity.namespace:
            return True
        if collection is Collection.PACKAGES and fqn.package is None:
            package_name = fqn.name
        elif collection is Collection.ACTIONS and fqn.package is not None:
            package_name = fqn.package
        else:  # another namespace's triggers, rules and actions outside packages are never shared
            return False
        package = await self._package_entity(fqn.namespace, package_name)
        return package_readable(identity, package, await self.bound_package(package))

    async def bound_package(self, package: Package | None) -> Package | None:
        """The package a binding binds (None when `package` is no binding or the target is gone)."""
        if package is None or package.binding is None:
            return None
        return await self._package_entity(package.binding.namespace, package.binding.name)

    async def delete(self, identity: Identity, fqn: FullyQualifiedName, collection: Collection,
                     force: bool = False) -> Entity:
        check_write(identity, fqn)
        entity = await self.store.get_entity(fqn.path, fqn.name)
        if entity is None:
            raise NotFound(NOT_FOUND)
        if collection_of(entity) is not collection:
            raise Conflict(WRONG_COLLECTION)
        if fqn.package is not None:
            await self._refuse_binding(fqn)
        deletes: list[Entity] = [entity]
        puts: list[Entity] = []
        if isinstance(entity, Package):
            members = await self.store.list_entities(Collection.ACTIONS, fqn.namespace, package=fqn.name, limit=MAX_MEMBERS)
            if members and not force:
                raise Conflict(f"Package not empty (contains {len(members)} entities). "
                               "Set force param or delete package contents.")
            deletes = [*members, entity]
        elif isinstance(entity, Rule):
            trigger = await self.find(entity.trigger, Collection.TRIGGERS)
            rule_key = f"{fqn.path}/{fqn.name}"
            if isinstance(trigger, Trigger) and rule_key in trigger.rules:
                rules = {k: v for k, v in trigger.rules.items() if k != rule_key}
                puts.append(replace(trigger, rules=rules))
        await self._write(puts, deletes)
        return entity

    async def listing(self, identity: Identity, collection: Collection, namespace: str, package: str | None,
                      skip: int, limit: int) -> Sequence[Entity]:
        """A namespace's entities (all of a foreign one's published packages), or a package's
        actions (through a binding, the bound package's)."""
        if package is not None:
            pkg = await self._package_entity(namespace, package)
            if pkg is None and namespace == identity.namespace:
                raise NotFound(NOT_FOUND)
            if pkg is None or not package_readable(identity, pkg, await self.bound_package(pkg)):
                raise Forbidden(FORBIDDEN)
            if pkg.binding is not None:
                namespace, package = pkg.binding.namespace, pkg.binding.name
            return await self.store.list_entities(collection, namespace, package=package, skip=skip, limit=limit)
        if namespace == identity.namespace:
            return await self.store.list_entities(collection, namespace, skip=skip, limit=limit)
        if collection is not Collection.PACKAGES:
            raise Forbidden(FORBIDDEN)
        return (await self._published_packages(namespace))[skip:skip + limit]

    async def count(self, identity: Identity, collection: Collection, namespace: str) -> int:
        if namespace == identity.namespace:
            return await self.store.count_entities(collection, namespace)
        if collection is not Collection.PACKAGES:
            raise Forbidden(FORBIDDEN)
        return len(await self._published_packages(namespace))

    async def _published_packages(self, namespace: str) -> list[Entity]:
        packages = await self.store.list_entities(Collection.PACKAGES, namespace, limit=MAX_MEMBERS)
        return [p for p in packages if isinstance(p, Package) and p.publish and p.binding is None]

    # ------------------------------------------------------------------ actions
    async def put_action(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any],
                         overwrite: bool) -> Action:
        check_write(identity, fqn)
        if fqn.package is not None:
            await self._refuse_binding(fqn)
            if await self._package_entity(fqn.namespace, fqn.package) is None:
                raise NotFound(NOT_FOUND)
        exec_body = body.get("exec")
        new_exec = self._parse_exec(exec_body, fqn) if exec_body else None
        if new_exec is not None and new_exec.kind == kinds.SEQUENCE:
            await self.check_references(identity, [(FullyQualifiedName.parse(c, fqn.namespace), Collection.ACTIONS)
                                                   for c in new_exec.components])
        old = await self._existing(fqn, Collection.ACTIONS, overwrite)
        assert old is None or isinstance(old, Action)  # narrowed by _existing
        if old is None and new_exec is None:
            raise BadRequest("exec undefined")
        exec_ = new_exec or old.exec  # type: ignore[union-attr]
        if exec_.kind == kinds.SEQUENCE:
            await self._check_sequence(fqn, exec_.components)
        parameters = _params(body, "parameters", old.parameters if old else ())
        if exec_.kind == kinds.SEQUENCE:
            parameters = (Parameter("_actions", list(exec_.components)),)
        limits = self._parse_limits(body.get("limits"), old.limits if old else ActionLimits())
        annotations = _annotations(body, old.annotations if old else ())
        annotations = with_annotation(annotations, "exec", exec_.kind)
        if old is None and annotation(annotations, "provide-api-key") is None:
            annotations = annotations + (Parameter("provide-api-key", False),)
        action = Action(
            namespace=fqn.path, name=fqn.name, exec=exec_,
            version=_version(body, old), publish=bool(body.get("publish", old.publish if old else False)),
            parameters=parameters, annotations=annotations, limits=limits, updated_ms=now_ms(),
            revision=old.revision if old else 0,
        )
        return await self._write_one(action)  # type: ignore[return-value]

    async def put_builtin(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any]) -> Action:
        """Write a hub-internal action (a feed provider); not reachable through the REST API."""
        check_write(identity, fqn)
        old = await self.find(fqn, Collection.ACTIONS)
        annotations = with_annotation(_annotations(body, ()), "exec", kinds.BUILTIN)
        action = Action(namespace=fqn.path, name=fqn.name, exec=Exec(kind=kinds.BUILTIN, code=str(fqn)),
                        version=bump_version(old.version) if old else "0.0.1", annotations=annotations,
                        updated_ms=now_ms(), revision=old.revision if old else 0)
        return await self._write_one(action)  # type: ignore[return-value]

    def _parse_exec(self, body: Any, fqn: FullyQualifiedName) -> Exec:
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            raise BadRequest("exec malformed: expected an object with a 'kind' string")
        kind = kinds.resolve_kind(body["kind"])
        if kind == kinds.SEQUENCE:
            components = body.get("components")
            if not components:
                raise BadRequest("No component specified for the sequence.")
            if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
                raise BadRequest("exec malformed: sequence components must be a list of action names")
            try:
                resolved = tuple(str(FullyQualifiedName.parse(c, fqn.namespace)) for c in components)
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            return Exec(kind=kind, components=resolved)
        code = body.get("code")
        image = body.get("image")
        if kind == kinds.BLACKBOX:
            if not isinstance(image, str) or not image:
                raise BadRequest("exec malformed: a blackbox action needs an 'image'")
            if code is not None and not isinstance(code, str):
                raise BadRequest(f"exec malformed: a blackbox action's 'code' must be a base64 zip as a string, "
                                 f"got {json.dumps(code)[:100]}")
        elif not isinstance(code, str):
            raise BadRequest(f"exec malformed: kind '{kind}' needs 'code' as a string")
        if code is not None and len(code.encode()) > EXEC_LIMIT_BYTES:
            raise PayloadTooLarge(f"exec larger than allowed: {len(code.encode())} > {EXEC_LIMIT_BYTES} bytes.")
        main = body.get("main")
        if main is not None and not isinstance(main, str):
            raise BadRequest(f"exec malformed: 'main' must be a string naming the entry point, got "
                             f"{json.dumps(main)[:100]}")
        binary = kinds.is_binary_code(code) if isinstance(code, str) else False
        return Exec(kind=kind, code=code, binary=binary, main=main if isinstance(main, str) and main else None,
                    image=image if isinstance(image, str) else None)

    def _parse_limits(self, body: Any, old: ActionLimits) -> ActionLimits:
        if body is None:
            return old
        if not isinstance(body, dict):
            raise BadRequest("limits malformed: expected an object")
        lim = self.limits
        checks = (("timeout", lim.min_timeout_ms, lim.max_timeout_ms, "milliseconds"),
                  ("memory", lim.min_memory_mb, lim.max_memory_mb, "MB"),
                  ("logs", lim.min_logs_mb, lim.max_logs_mb, "MB"),
                  ("concurrency", 1, 1, "activations"))
        values = old.to_json()
        for key, low, high, unit in checks:
            if key not in body or body[key] is None:
                continue
            value = body[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise BadRequest(f"{key} limit {value!r} is not in the range of {low} to {high} {unit}.")
            values[key] = value
        return ActionLimits.from_json(values)

    async def _check_sequence(self, fqn: FullyQualifiedName, components: tuple[str, ...]) -> None:
        own = str(fqn)
        atomic = 0
        stack: list[tuple[str, int]] = [(c, 0) for c in components]
        seen_depth = 0
        while stack:
            name, depth = stack.pop()
            if name == own:
                raise BadRequest("Sequence may not refer to itself.")
            seen_depth = max(seen_depth, depth)
            if depth > self.limits.sequence_max_length:
                raise BadRequest("Too many actions in the sequence.")
            component = await self.find(FullyQualifiedName.parse(name, fqn.namespace), Collection.ACTIONS)
            if component is None:
                component = await self._through_binding(FullyQualifiedName.parse(name, fqn.namespace))
            if not isinstance(component, Action):
                raise BadRequest("Sequence component does not exist.")
            if component.exec.kind == kinds.SEQUENCE:
                stack.extend((c, depth + 1) for c in component.exec.components)
            else:
                atomic += 1
            if atomic > self.limits.sequence_max_length:
                raise BadRequest("Too many actions in the sequence.")

    async def _through_binding(self, fqn: FullyQualifiedName) -> Entity | None:
        if fqn.package is None:
            return None
        pkg = await self._package_entity(fqn.namespace, fqn.package)
        if pkg is None or pkg.binding is None:
            return None
        bound = FullyQualifiedName(pkg.binding.namespace, fqn.name, pkg.binding.name)
        return await self.find(bound, Collection.ACTIONS)

    # ------------------------------------------------------------------ triggers
    async def put_trigger(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any],
                          overwrite: bool) -> Trigger:
        check_write(identity, fqn)
        if fqn.package is not None:
            raise BadRequest("Triggers cannot be created inside a package.")
        old = await self._existing(fqn, Collection.TRIGGERS, overwrite)
        assert old is None or isinstance(old, Trigger)
        annotations = _annotations(body, old.annotations if old else ())
        feed = annotation(annotations, "feed")
        if feed is not None:
            try:
                feed_fqn = FullyQualifiedName.parse(str(feed), fqn.namespace)
            except ValueError as exc:
                raise BadRequest("Feed name is not valid") from exc
            await self.check_references(identity, [(feed_fqn, Collection.ACTIONS)])
        trigger = Trigger(
            namespace=fqn.path, name=fqn.name, version=_version(body, old),
            publish=bool(body.get("publish", old.publish if old else False)),
            parameters=_params(body, "parameters", old.parameters if old else ()),
            annotations=annotations, rules=dict(old.rules) if old else {}, updated_ms=now_ms(),
            revision=old.revision if old else 0,
        )
        return await self._write_one(trigger)  # type: ignore[return-value]

    # ------------------------------------------------------------------ rules
    async def put_rule(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any],
                       overwrite: bool) -> Rule:
        check_write(identity, fqn)
        trigger_ref, action_ref = body.get("trigger"), body.get("action")
        named_trigger = _entity_ref(trigger_ref, fqn.namespace) if trigger_ref else None
        named_action = _entity_ref(action_ref, fqn.namespace) if action_ref else None
        await self.check_references(identity, [(ref, collection) for ref, collection in (
            (named_trigger, Collection.TRIGGERS), (named_action, Collection.ACTIONS)) if ref is not None])
        old = await self._existing(fqn, Collection.RULES, overwrite)
        assert old is None or isinstance(old, Rule)
        if old is None and (named_trigger is None or named_action is None):
            raise BadRequest("rule requires a valid trigger and a valid action")
        trigger_fqn = named_trigger or old.trigger  # type: ignore[union-attr]
        action_fqn = named_action or old.action  # type: ignore[union-attr]
        trigger = await self.find(trigger_fqn, Collection.TRIGGERS)
        if not isinstance(trigger, Trigger):
            raise BadRequest(f"trigger {trigger_fqn} does not exist")
        if await self.find(action_fqn, Collection.ACTIONS) is None and await self._through_binding(action_fqn) is None:
            raise BadRequest(f"action {action_fqn} does not exist")
        rule_key = f"{fqn.path}/{fqn.name}"
        status = RuleStatus.ACTIVE
        puts: list[Entity] = []
        if old is not None and old.trigger != trigger_fqn:
            old_trigger = await self.find(old.trigger, Collection.TRIGGERS)
            if isinstance(old_trigger, Trigger) and rule_key in old_trigger.rules:
                puts.append(replace(old_trigger, rules={k: v for k, v in old_trigger.rules.items() if k != rule_key}))
        elif old is not None and rule_key in trigger.rules:
            status = trigger.rules[rule_key].status
        filter_ = _routing(body, "filter", old.filter if old else None, compile_filter)
        transform = _routing(body, "transform", old.transform if old else None, compile_transform)
        rules = dict(trigger.rules)
        rules[rule_key] = ReducedRule(action_fqn, status, filter_, transform)
        puts.append(replace(trigger, rules=rules))
        rule = Rule(
            namespace=fqn.path, name=fqn.name, trigger=trigger_fqn, action=action_fqn,
            version=_version(body, old), publish=bool(body.get("publish", old.publish if old else False)),
            annotations=_annotations(body, old.annotations if old else ()), updated_ms=now_ms(),
            revision=old.revision if old else 0, filter=filter_, transform=transform,
        )
        written = await self._write([rule, *puts], [])
        return written[0]  # type: ignore[return-value]

    async def set_rule_status(self, identity: Identity, fqn: FullyQualifiedName, body: Any) -> Rule:
        check_write(identity, fqn)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("active", "inactive"):
            raise BadRequest(f"'{status}' is not a recognized rule state, must be one of ['active', 'inactive']")
        rule = await self.get(identity, fqn, Collection.RULES)
        assert isinstance(rule, Rule)
        trigger = await self.find(rule.trigger, Collection.TRIGGERS)
        if not isinstance(trigger, Trigger):
            raise NotFound("Only rules with existing triggers can be activated")
        rules = dict(trigger.rules)
        rules[f"{fqn.path}/{fqn.name}"] = ReducedRule(rule.action, RuleStatus(status), rule.filter, rule.transform)
        await self._write([replace(trigger, rules=rules)], [])
        return rule

    async def rule_status(self, rule: Rule) -> RuleStatus:
        trigger = await self.find(rule.trigger, Collection.TRIGGERS)
        if isinstance(trigger, Trigger):
            link = trigger.rules.get(f"{rule.namespace}/{rule.name}")
            if link is not None:
                return link.status
        return RuleStatus.INACTIVE

    # ------------------------------------------------------------------ packages
    async def put_package(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any],
                          overwrite: bool) -> Package:
        check_write(identity, fqn)
        if fqn.name == "default":
            raise BadRequest("Package name 'default' is reserved.")
        old = await self._existing(fqn, Collection.PACKAGES, overwrite)
        assert old is None or isinstance(old, Package)
        binding = old.binding if old else None
        raw_binding = body.get("binding")
        if raw_binding:
            if old is not None and old.binding is None:
                raise Conflict("Resource is a package and cannot be converted into a binding.")
            binding = await self._check_binding(identity, raw_binding)
        elif raw_binding == {} and old is not None and old.binding is not None:
            raise Conflict("Resource is a binding and cannot be converted into a package.")
        annotations = _annotations(body, old.annotations if old else ())
        if binding is not None:
            annotations = with_annotation(annotations, "binding", {"namespace": binding.namespace, "name": binding.name})
        package = Package(
            namespace=fqn.path, name=fqn.name, version=_version(body, old),
            publish=bool(body.get("publish", old.publish if old else False)), binding=binding,
            parameters=_params(body, "parameters", old.parameters if old else ()),
            annotations=annotations, updated_ms=now_ms(), revision=old.revision if old else 0,
        )
        return await self._write_one(package)  # type: ignore[return-value]

    async def _check_binding(self, identity: Identity, raw: Any) -> Binding:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise BadRequest("binding malformed: expected {\"namespace\": ..., \"name\": ...}")
        namespace = raw.get("namespace") or identity.namespace
        namespace = identity.namespace if namespace == "_" else namespace
        if not isinstance(namespace, str) or not is_valid_name(namespace) or not is_valid_name(raw["name"]):
            raise BadRequest(f"binding malformed: '{namespace}/{raw['name']}' is not a valid package name")
        await self.check_references(identity, [(FullyQualifiedName(namespace, raw["name"]), Collection.PACKAGES)])
        target = await self.store.get_entity(namespace, raw["name"])
        if target is None:
            raise BadRequest("Binding references a package that does not exist.")
        if not isinstance(target, Package):
            raise Conflict("Cannot bind to a resource that is not a package.")
        if target.binding is not None:
            raise BadRequest("Cannot bind to another package binding.")
        return Binding(namespace, target.name)

    async def _package_entity(self, namespace: str, name: str) -> Package | None:
        entity = await self.lookup(namespace, name)
        return entity if isinstance(entity, Package) else None

    async def _package_of(self, fqn: FullyQualifiedName) -> Package | None:
        return await self._package_entity(fqn.namespace, fqn.package) if fqn.package else None

    async def _refuse_binding(self, fqn: FullyQualifiedName) -> None:
        package = await self._package_of(fqn)
        if package is not None and package.binding is not None:
            raise BadRequest("Operation not permitted on package binding.")

    # ------------------------------------------------------------------ writes
    async def _existing(self, fqn: FullyQualifiedName, collection: Collection, overwrite: bool) -> Entity | None:
        if not is_valid_name(fqn.name):
            raise BadRequest("The name of the entity contains illegal characters.")
        old = await self.store.get_entity(fqn.path, fqn.name)
        if old is None:
            return None
        if collection_of(old) is not collection:
            raise Conflict(WRONG_COLLECTION)
        if not overwrite:
            raise Conflict(ALREADY_EXISTS)
        return old

    async def _write_one(self, entity: Entity) -> Entity:
        return (await self._write([entity], []))[0]

    async def _write(self, puts: list[Entity], deletes: list[Entity]) -> list[Entity]:
        for entity in puts:
            _check_sizes(entity)
        self.forget([*puts, *deletes])
        try:
            return await self.store.put_entities(puts, deletes)
        except RevisionConflict as exc:
            raise Conflict(CONCURRENT_MODIFICATION) from exc
        finally:
            self.forget([*puts, *deletes])


def _version(body: dict[str, Any], old: Entity | None) -> str:
    if old is not None:
        return bump_version(old.version)
    version = body.get("version")
    return version if isinstance(version, str) and version.count(".") == 2 else "0.0.1"


def _params(body: dict[str, Any], key: str, old: Parameters) -> Parameters:
    if key not in body or body[key] is None:
        return old
    raw = body[key]
    if not isinstance(raw, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str) for p in raw):
        raise BadRequest(f"{key} malformed: expected an array of {{\"key\": string, \"value\": any}}")
    return params_from_json(raw)


def _routing(body: dict[str, Any], key: str, old: Any, compile_: Callable[[Any], object]) -> Any:
    """A rule's `filter` or `transform`: absent keeps the old one, null removes it, anything else
    must compile (PatternError, a 400 naming the JSON path, otherwise)."""
    if key not in body:
        return old
    if body[key] is None:
        return None
    compile_(body[key])
    return body[key]


def _annotations(body: dict[str, Any], old: Parameters) -> Parameters:
    annotations = _params(body, "annotations", old)
    removed = body.get("delAnnotations") or []
    if not isinstance(removed, list) or not all(isinstance(key, str) for key in removed):
        raise BadRequest(f"delAnnotations malformed: expected an array of annotation keys (strings), "
                         f"got {json.dumps(removed)[:100]}")
    if removed:
        annotations = tuple(a for a in annotations if a.key not in set(removed))
    return annotations


def _entity_ref(ref: Any, namespace: str) -> FullyQualifiedName:
    try:
        if isinstance(ref, dict):
            path, name = str(ref.get("path") or namespace), str(ref.get("name"))
            path = namespace if path == "_" else path
            return FullyQualifiedName.from_path(path, name)
        if isinstance(ref, str):
            return FullyQualifiedName.parse(ref, namespace)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    raise BadRequest("rule requires a valid trigger and a valid action")


def _check_sizes(entity: Entity) -> None:
    params = getattr(entity, "parameters", ())
    for field_name, values, limit in (("parameters", params, 1024 * 1024),
                                      ("annotations", entity.annotations, ANNOTATIONS_LIMIT_BYTES)):
        size = len(json.dumps([p.to_json() for p in values]).encode())
        if size > limit:
            raise PayloadTooLarge(f"{field_name} larger than allowed: {size} > {limit} bytes.")
