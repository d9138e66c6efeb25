"""Entity create/update/get/delete with OpenWhisk's semantics (reference 1.4, 2).

Everything that writes entities — the REST API, manifests through it, bootstrap — comes here.
Bodies are the REST PUT bodies, parsed by `bodies`; results are model entities (the API renders them).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.config import LimitsConfig
from triggerhub.errors import (
    ALREADY_EXISTS, CONCURRENT_MODIFICATION, FORBIDDEN, NOT_FOUND, WRONG_COLLECTION, BadRequest, Conflict,
    Forbidden, NotFound, RevisionConflict, StoreError,
)
from triggerhub.model import (
    JSON, Action, ActionLimits, Binding, Collection, Entity, Exec, FullyQualifiedName, Identity, Kind, Package,
    Parameter, ReducedRule, Rule, RuleCounts, RuleStatus, Trigger, annotation, bump_version, is_valid_name, now_ms,
    with_annotation,
)
from triggerhub.engine.ordering import check_ordering_key
from triggerhub.engine import bodies
from triggerhub.engine.generation import EntityGeneration
from triggerhub.engine.shared_loads import SharedLoads
from triggerhub.engine.resolve import bound_parameters, check_read, check_write, not_authorized, package_readable
from triggerhub.rules import correlate
from triggerhub.rules.pattern import compile_filter
from triggerhub.rules.transform import compile_transform
from triggerhub.store.base import Store

CACHE_MAX_ENTRIES = 10_000
MAX_MEMBERS = 100_000  # reading "all" of a package's or namespace's entities

E = TypeVar("E", Action, Trigger, Rule, Package)


@dataclass(frozen=True, slots=True)
class PackageContents:
    """What a package shows: its own actions or, through a binding, the bound package's."""

    actions: tuple[Action, ...]
    parameters: dict[str, Any] | None  # a binding's, over its bound package's; None otherwise


class Entities:
    """`cache_ttl_s=None` caches reads until this process writes the entity (one writer: embedded
    mode); with several writing processes, give a TTL to bound staleness, or a `generation` read
    (the store's count of entity writes) and call `revalidate()` before work that must see every
    write committed so far. With `revalidate_reads` every cached read revalidates first (one
    primary-key read of the generation row): the embedded hub sees another process's entity
    write on its next read after the commit. Within `one_revalidation()` (a fire, a feed event,
    an invoke) the task's reads share one generation read (engine/generation.py)."""

    def __init__(self, store: Store, limits: LimitsConfig, *, max_code_bytes: int,
                 cache_ttl_s: float | None = None, clock: Clock = SYSTEM_CLOCK,
                 generation: Callable[[], Awaitable[int]] | None = None, revalidate_reads: bool = False) -> None:
        self.store = store
        self.limits = limits
        self.max_code_bytes = max_code_bytes
        self._clock = clock
        self._cache_ttl_s = cache_ttl_s
        self._cache: dict[tuple[str, str], tuple[Entity | None, float]] = {}
        self._loads: SharedLoads[tuple[str, str], Entity | None] = SharedLoads()
        self._generation = EntityGeneration(generation) if generation is not None else None
        self._seen_generation: int | None = None
        self._revalidate_reads = revalidate_reads

    @property
    def revalidating_generation(self) -> Callable[[], Awaitable[int]] | None:
        """The generation read every cached read revalidates against (embedded mode), else None."""
        return self._generation if self._revalidate_reads else None

    def one_revalidation(self) -> contextlib.AbstractContextManager[None]:
        """Around work that writes no entity: its task's cached reads and credential checks
        revalidate against one generation read, taken at the first of them."""
        if self._generation is None or not self._revalidate_reads:
            return contextlib.nullcontext()
        return self._generation.once()

    def renew_revalidation(self) -> None:
        """Within `one_revalidation()`, after a wait: the next cached read reads the generation again."""
        if self._generation is not None:
            self._generation.renew()

    async def revalidate(self) -> None:
        """Drop the cache if any process wrote an entity since the last call (one read of the
        store's entity generation): lookups after this see every write committed before it."""
        if self._generation is None:
            return
        generation = await self._generation()
        if generation != self._seen_generation:
            self._cache.clear()
            self._loads.drop()
            self._seen_generation = generation

    async def lookup(self, path: str, name: str) -> Entity | None:
        """A cached read for the hot paths (invoke, fire); writes always read the store."""
        if self._revalidate_reads:
            await self.revalidate()
        key = (path, name)
        hit = self._cache.get(key)
        now = self._clock.monotonic_s()
        if hit is not None and hit[1] > now:
            return hit[0]

        def keep(entity: Entity | None) -> None:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (entity, now + self._cache_ttl_s if self._cache_ttl_s is not None else math.inf)

        # the tasks that miss one key together (a batch of one trigger's events) read it once
        return await self._loads.load(key, lambda: self.store.get_entity(path, name), keep)

    def forget(self, entities: list[Entity]) -> None:
        for entity in entities:
            self._cache.pop((entity.namespace, entity.name), None)
            self._loads.drop((entity.namespace, entity.name))

    # ------------------------------------------------------------------ generic
    async def get(self, identity: Identity, fqn: FullyQualifiedName, kind: type[E]) -> E:
        """The `kind` entity at `fqn` (cached), if `identity` may read it: else 403, 404, or 409
        when `fqn` names an entity of another kind."""
        entity = await self.lookup(fqn.path, fqn.name)
        package = entity if isinstance(entity, Package) and fqn.package is None else await self._package_of(fqn)
        check_read(identity, fqn, package)
        if fqn.namespace != identity.namespace and not package_readable(identity, package,
                                                                        await self.bound_package(package)):
            raise Forbidden(FORBIDDEN)  # a published binding of a package the caller may not read
        if entity is None:
            raise NotFound(NOT_FOUND)
        if not isinstance(entity, kind):
            raise Conflict(WRONG_COLLECTION)
        return entity

    async def find(self, fqn: FullyQualifiedName, kind: type[E]) -> E | None:
        """The `kind` entity at `fqn` (cached, no permission check), or None."""
        entity = await self.lookup(fqn.path, fqn.name)
        return entity if isinstance(entity, kind) else None

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

    async def package_contents(self, package: Package) -> PackageContents:
        """Read fresh from the store (a binding whose target is gone shows no actions)."""
        source, parameters = package, None
        if package.binding is not None:
            bound = await self.store.get_entity(package.binding.namespace, package.binding.name)
            if isinstance(bound, Package):
                source, parameters = bound, bound_parameters(bound, package)
        members = await self.store.list_entities(Collection.ACTIONS, source.namespace, package=source.name,
                                                 limit=MAX_MEMBERS)
        return PackageContents(tuple(m for m in members if isinstance(m, Action)), parameters)

    async def delete(self, identity: Identity, fqn: FullyQualifiedName, kind: type[E], *,
                     force: bool = False) -> E:
        """Delete the `kind` entity at `fqn`; `force` deletes a package with its actions."""
        check_write(identity, fqn)
        entity = await self.store.get_entity(fqn.path, fqn.name)
        if entity is None:
            raise NotFound(NOT_FOUND)
        if not isinstance(entity, kind):
            raise Conflict(WRONG_COLLECTION)
        if fqn.package is not None:
            await self._refuse_binding(fqn)
        puts, deletes = await self._deletion(fqn, entity, force=force)
        await self._write(puts, deletes)
        return entity

    async def _deletion(self, fqn: FullyQualifiedName, entity: Entity, *,
                        force: bool) -> tuple[list[Entity], list[Entity]]:
        """What deleting `entity` writes: (puts, deletes)."""
        deletes: list[Entity] = [entity]
        puts: list[Entity] = []
        if isinstance(entity, Package):
            members = await self.store.list_entities(Collection.ACTIONS, fqn.namespace, package=fqn.name, limit=MAX_MEMBERS)
            if members and not force:
                raise Conflict(f"Package not empty (contains {len(members)} entities). "
                               "Set force param or delete package contents.")
            deletes = [*members, entity]
        elif isinstance(entity, Trigger) and entity.derive is not None:
            puts.extend(await self._source_links(entity, old_sources=_sources_of(entity), new_sources=set()))
        elif isinstance(entity, Rule):
            trigger = await self.find(entity.trigger, Trigger)
            rule_key = f"{fqn.path}/{fqn.name}"
            if trigger is not None and rule_key in trigger.rules:
                rules = {k: v for k, v in trigger.rules.items() if k != rule_key}
                puts.append(replace(trigger, rules=rules))
        return puts, deletes

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
    async def put_action(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any], *,
                         overwrite: bool) -> Action:
        check_write(identity, fqn)
        if fqn.package is not None:
            await self._refuse_binding(fqn)
            if await self._package_entity(fqn.namespace, fqn.package) is None:
                raise NotFound(NOT_FOUND)
        exec_body = body.get("exec")
        new_exec = bodies.parse_exec(exec_body, fqn, max_code_bytes=self.max_code_bytes) if exec_body else None
        if new_exec is not None and new_exec.kind == Kind.SEQUENCE:
            await self.check_references(identity, [(FullyQualifiedName.parse(c, fqn.namespace), Collection.ACTIONS)
                                                   for c in new_exec.components])
        old = await self._existing(fqn, Action, overwrite=overwrite)
        if new_exec is not None:
            exec_ = new_exec
        elif old is not None:
            exec_ = old.exec
        else:
            raise BadRequest("exec undefined")
        if exec_.kind == Kind.SEQUENCE:
            await self._check_sequence(fqn, exec_.components)
        parameters = bodies.parse_params(body, "parameters", old.parameters if old else ())
        if exec_.kind == Kind.SEQUENCE:
            parameters = (Parameter("_actions", list(exec_.components)),)
        limits = bodies.parse_limits(body.get("limits"), old.limits if old else ActionLimits(), self.limits)
        annotations = bodies.parse_annotations(body, old.annotations if old else ())
        annotations = with_annotation(annotations, "exec", exec_.kind)
        if old is None and annotation(annotations, "provide-api-key") is None:
            annotations = annotations + (Parameter("provide-api-key", False),)
        action = Action(
            namespace=fqn.path, name=fqn.name, exec=exec_,
            version=bodies.next_version(body, old), publish=bool(body.get("publish", old.publish if old else False)),
            parameters=parameters, annotations=annotations, limits=limits, updated_ms=now_ms(),
            revision=old.revision if old else 0,
        )
        return await self._write_one(action)

    async def put_builtin(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any]) -> Action:
        """Write a hub-internal action (a feed provider); not reachable through the REST API."""
        check_write(identity, fqn)
        old = await self.find(fqn, Action)
        annotations = with_annotation(bodies.parse_annotations(body, ()), "exec", Kind.BUILTIN)
        action = Action(namespace=fqn.path, name=fqn.name, exec=Exec(kind=Kind.BUILTIN, code=str(fqn)),
                        version=bump_version(old.version) if old else "0.0.1", annotations=annotations,
                        updated_ms=now_ms(), revision=old.revision if old else 0)
        return await self._write_one(action)

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
            component = await self.find(FullyQualifiedName.parse(name, fqn.namespace), Action)
            if component is None:
                component = await self._through_binding(FullyQualifiedName.parse(name, fqn.namespace))
            if component is None:
                raise BadRequest("Sequence component does not exist.")
            if component.exec.kind == Kind.SEQUENCE:
                stack.extend((c, depth + 1) for c in component.exec.components)
            else:
                atomic += 1
            if atomic > self.limits.sequence_max_length:
                raise BadRequest("Too many actions in the sequence.")

    async def _through_binding(self, fqn: FullyQualifiedName) -> Action | None:
        if fqn.package is None:
            return None
        pkg = await self._package_entity(fqn.namespace, fqn.package)
        if pkg is None or pkg.binding is None:
            return None
        bound = FullyQualifiedName(pkg.binding.namespace, fqn.name, pkg.binding.name)
        return await self.find(bound, Action)

    # ------------------------------------------------------------------ triggers
    async def put_trigger(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any], *,
                          overwrite: bool) -> Trigger:
        check_write(identity, fqn)
        if fqn.package is not None:
            raise BadRequest("Triggers cannot be created inside a package.")
        old = await self._existing(fqn, Trigger, overwrite=overwrite)
        annotations = bodies.parse_annotations(body, old.annotations if old else ())
        check_ordering_key(annotations)
        feed = annotation(annotations, "feed")
        if feed is not None:
            try:
                feed_fqn = FullyQualifiedName.parse(str(feed), fqn.namespace)
            except ValueError as exc:
                raise BadRequest("Feed name is not valid") from exc
            await self.check_references(identity, [(feed_fqn, Collection.ACTIONS)])
        derive = await self._derive_body(identity, fqn, body, old)
        trigger = Trigger(
            namespace=fqn.path, name=fqn.name, version=bodies.next_version(body, old),
            publish=bool(body.get("publish", old.publish if old else False)),
            parameters=bodies.parse_params(body, "parameters", old.parameters if old else ()),
            annotations=annotations, rules=dict(old.rules) if old else {}, updated_ms=now_ms(),
            revision=old.revision if old else 0, derive=derive, derived=old.derived if old else (),
        )
        links = await self._source_links(trigger, old_sources=_sources_of(old), new_sources=_sources_of(trigger))
        written = await self._write([trigger, *links], [])
        return _as(written[0], Trigger)

    async def _derive_body(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any],
                           old: Trigger | None) -> JSON:
        """The normalised `derive` of a trigger body (absent: the old one; null: none), checked:
        every source is readable by the caller (403 otherwise), exists, and is no derived trigger."""
        if "derive" not in body:
            return old.derive if old else None
        if body["derive"] is None:
            return None
        try:
            spec = correlate.parse_spec(body["derive"], fqn.namespace)
        except correlate.DeriveError as exc:
            raise BadRequest(str(exc)) from None
        await self.check_references(identity, [(source, Collection.TRIGGERS) for source in spec.sources])
        for source in spec.sources:
            if source == fqn:
                raise BadRequest(f"derive.from names {source}, the trigger itself; name the triggers it derives from")
            found = await self.find(source, Trigger)
            if found is None:
                raise BadRequest(f"derive.from names trigger {source}, which does not exist; create it first")
            if found.derive is not None:
                raise BadRequest(f"derive.from names {source}, itself a derived trigger; derive from the "
                                 "triggers that its sources are")
        if old is not None and old.derived:
            raise BadRequest(f"trigger {fqn} feeds the derived trigger(s) {', '.join(old.derived)}, so it cannot "
                             "be derived itself; delete those first or derive from its sources")
        return spec.to_json()

    async def _source_links(self, trigger: Trigger, *, old_sources: set[str],
                            new_sources: set[str]) -> list[Entity]:
        """The source triggers whose `derived` links change when `trigger` derives from `new_sources`."""
        own = str(trigger.fqn)
        puts: list[Entity] = []
        for source in sorted(old_sources | new_sources):
            found = await self.find(FullyQualifiedName.parse(source, trigger.namespace), Trigger)
            if found is None:
                continue
            links = tuple(sorted((set(found.derived) - {own}) | ({own} if source in new_sources else set())))
            if links != found.derived:
                puts.append(replace(found, derived=links))
        return puts

    # ------------------------------------------------------------------ rules
    async def put_rule(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any], *,
                       overwrite: bool) -> Rule:
        check_write(identity, fqn)
        trigger_ref, action_ref = body.get("trigger"), body.get("action")
        named_trigger = bodies.parse_entity_ref(trigger_ref, fqn.namespace) if trigger_ref else None
        named_action = bodies.parse_entity_ref(action_ref, fqn.namespace) if action_ref else None
        retry, dead_letter, alerted = bodies.parse_delivery(body, fqn.namespace)
        await self.check_references(identity, [(ref, collection) for ref, collection in (
            (named_trigger, Collection.TRIGGERS), (named_action, Collection.ACTIONS),
            (alerted, Collection.TRIGGERS)) if ref is not None])
        old = await self._existing(fqn, Rule, overwrite=overwrite)
        if old is not None:
            trigger_fqn, action_fqn = named_trigger or old.trigger, named_action or old.action
        elif named_trigger is not None and named_action is not None:
            trigger_fqn, action_fqn = named_trigger, named_action
        else:
            raise BadRequest("rule requires a valid trigger and a valid action")
        trigger = await self.find(trigger_fqn, Trigger)
        if trigger is None:
            raise BadRequest(f"trigger {trigger_fqn} does not exist")
        if await self.find(action_fqn, Action) is None and await self._through_binding(action_fqn) is None:
            raise BadRequest(f"action {action_fqn} does not exist")
        rule_key = f"{fqn.path}/{fqn.name}"
        status = RuleStatus.ACTIVE
        puts: list[Entity] = []
        if old is not None and old.trigger != trigger_fqn:
            old_trigger = await self.find(old.trigger, Trigger)
            if old_trigger is not None and rule_key in old_trigger.rules:
                puts.append(replace(old_trigger, rules={k: v for k, v in old_trigger.rules.items() if k != rule_key}))
        elif old is not None and rule_key in trigger.rules:
            status = trigger.rules[rule_key].status
        filter_ = bodies.parse_routing(body, "filter", old.filter if old else None, compile_filter)
        transform = bodies.parse_routing(body, "transform", old.transform if old else None, compile_transform)
        shadow = bodies.parse_shadow(body, old.shadow if old else False)
        rules = dict(trigger.rules)
        retry = old.retry if old is not None and "retry" not in body else retry
        dead_letter = old.dead_letter if old is not None and "deadLetter" not in body else dead_letter
        rules[rule_key] = ReducedRule(action_fqn, status, filter_, transform, retry, dead_letter, shadow=shadow)
        puts.append(replace(trigger, rules=rules))
        rule = Rule(
            namespace=fqn.path, name=fqn.name, trigger=trigger_fqn, action=action_fqn,
            version=bodies.next_version(body, old), publish=bool(body.get("publish", old.publish if old else False)),
            annotations=bodies.parse_annotations(body, old.annotations if old else ()), updated_ms=now_ms(),
            revision=old.revision if old else 0, filter=filter_, transform=transform, retry=retry,
            dead_letter=dead_letter, shadow=shadow,
        )
        written = await self._write([rule, *puts], [])
        return _as(written[0], Rule)

    async def set_rule_status(self, identity: Identity, fqn: FullyQualifiedName, body: Any) -> Rule:
        check_write(identity, fqn)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("active", "inactive"):
            raise BadRequest(f"'{status}' is not a recognized rule state, must be one of ['active', 'inactive']")
        rule = await self.get(identity, fqn, Rule)
        trigger = await self.find(rule.trigger, Trigger)
        if trigger is None:
            raise NotFound("Only rules with existing triggers can be activated")
        rules = dict(trigger.rules)
        rules[f"{fqn.path}/{fqn.name}"] = ReducedRule(rule.action, RuleStatus(status), rule.filter, rule.transform,
                                                      rule.retry, rule.dead_letter, shadow=rule.shadow)
        await self._write([replace(trigger, rules=rules)], [])
        return rule

    async def rule_status(self, rule: Rule) -> RuleStatus:
        trigger = await self.find(rule.trigger, Trigger)
        if trigger is not None:
            link = trigger.rules.get(f"{rule.namespace}/{rule.name}")
            if link is not None:
                return link.status
        return RuleStatus.INACTIVE

    async def rule_counts(self, rule: Rule) -> RuleCounts | None:
        """How many events the rule's filter matched and filtered out (None: the rule has no filter
        and is no shadow)."""
        if rule.filter is None and not rule.shadow:
            return None
        return await self.store.get_rule_counts(f"{rule.namespace}/{rule.name}")

    # ------------------------------------------------------------------ packages
    async def put_package(self, identity: Identity, fqn: FullyQualifiedName, body: dict[str, Any], *,
                          overwrite: bool) -> Package:
        check_write(identity, fqn)
        if fqn.name == "default":
            raise BadRequest("Package name 'default' is reserved.")
        old = await self._existing(fqn, Package, overwrite=overwrite)
        binding = old.binding if old else None
        raw_binding = body.get("binding")
        if raw_binding:
            if old is not None and old.binding is None:
                raise Conflict("Resource is a package and cannot be converted into a binding.")
            binding = await self._check_binding(identity, raw_binding)
        elif raw_binding == {} and old is not None and old.binding is not None:
            raise Conflict("Resource is a binding and cannot be converted into a package.")
        annotations = bodies.parse_annotations(body, old.annotations if old else ())
        if binding is not None:
            annotations = with_annotation(annotations, "binding", {"namespace": binding.namespace, "name": binding.name})
        package = Package(
            namespace=fqn.path, name=fqn.name, version=bodies.next_version(body, old),
            publish=bool(body.get("publish", old.publish if old else False)), binding=binding,
            parameters=bodies.parse_params(body, "parameters", old.parameters if old else ()),
            annotations=annotations, updated_ms=now_ms(), revision=old.revision if old else 0,
        )
        return await self._write_one(package)

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
    async def _existing(self, fqn: FullyQualifiedName, kind: type[E], *, overwrite: bool) -> E | None:
        if not is_valid_name(fqn.name):
            raise BadRequest("The name of the entity contains illegal characters.")
        old = await self.store.get_entity(fqn.path, fqn.name)
        if old is None:
            return None
        if not isinstance(old, kind):
            raise Conflict(WRONG_COLLECTION)
        if not overwrite:
            raise Conflict(ALREADY_EXISTS)
        return old

    async def _write_one(self, entity: E) -> E:
        return _as((await self._write([entity], []))[0], type(entity))

    async def _write(self, puts: list[Entity], deletes: list[Entity]) -> list[Entity]:
        for entity in puts:
            bodies.check_sizes(entity, self.limits)
        self.forget([*puts, *deletes])
        try:
            return await self.store.put_entities(puts, deletes)
        except RevisionConflict as exc:
            raise Conflict(CONCURRENT_MODIFICATION) from exc
        finally:
            self.forget([*puts, *deletes])


def _as(entity: Entity, kind: type[E]) -> E:
    """The store gives back what it was given; anything else is a store defect."""
    if not isinstance(entity, kind):
        raise StoreError(f"the store returned a {type(entity).__name__} for a written {kind.__name__}")
    return entity


def _sources_of(trigger: Trigger | None) -> set[str]:
    """The source triggers a stored (normalised) `derive` names."""
    if trigger is None or not isinstance(trigger.derive, dict):
        return set()
    sources = trigger.derive.get("from")
    return {sources} if isinstance(sources, str) else {str(s) for s in sources} if isinstance(sources, list) else set()
