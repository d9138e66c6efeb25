"""Prebuilt SQLAlchemy Core statements for SqlStore and the row dicts they take; no I/O.

Statements are built once per store; SQLAlchemy caches their compiled form.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from triggerhub.model import JSON, Activation, Collection, Entity, Invocation, TriggerEvent, annotation, collection_of
from triggerhub.store import codec
from triggerhub.store.base import ActivationQuery
from triggerhub.store.tables import (
    activations, api_routes, cursors, entities, entity_generation, events, feeds, pending, rule_counts, subjects,
)


class Statements:
    """The statements whose shape differs per dialect (conflict clauses) or that run hot."""

    def __init__(self, dialect: str) -> None:
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        self.select_subject = select(subjects.c.doc).where(subjects.c.uuid == bindparam("uuid"))
        self.delete_subject = delete(subjects).where(subjects.c.uuid == bindparam("uuid"))
        self.select_entity = (select(entities.c.collection, entities.c.revision, entities.c.doc)
                              .where(entities.c.path == bindparam("path"), entities.c.name == bindparam("name")))
        self.select_activation = select(activations.c.doc).where(
            activations.c.activation_id == bindparam("activation_id"),
            activations.c.namespace == bindparam("namespace"))
        self.insert_entity = insert(entities).on_conflict_do_nothing(index_elements=["path", "name"])
        self.update_entity = (
            update(entities)
            .where(entities.c.path == bindparam("b_path"), entities.c.name == bindparam("b_name"),
                   entities.c.collection == bindparam("b_collection"),
                   entities.c.revision == bindparam("b_revision"))
            .values(revision=bindparam("new_revision"), updated_ms=bindparam("new_updated_ms"),
                    doc=bindparam("new_doc")))
        # an upsert, so that a table emptied by hand (tests truncate tables) starts counting again
        bump = insert(entity_generation).values(id=1, generation=1)
        self.bump_entity_generation = bump.on_conflict_do_update(
            index_elements=["id"], set_={"generation": entity_generation.c.generation + 1})
        self.select_entity_generation = select(entity_generation.c.generation).where(entity_generation.c.id == 1)
        self.delete_entity = delete(entities).where(
            entities.c.path == bindparam("path"), entities.c.name == bindparam("name"),
            entities.c.collection == bindparam("collection"), entities.c.revision == bindparam("revision"))
        self.insert_events = (insert(events).on_conflict_do_nothing(index_elements=["id"])
                              .returning(events.c.id))
        self.insert_activations = (insert(activations).on_conflict_do_nothing(index_elements=["activation_id"])
                                   .returning(activations.c.activation_id))
        self.delete_pending = delete(pending).where(pending.c.activation_id.in_(bindparam("ids", expanding=True)))
        upsert_subject = insert(subjects)
        self.upsert_subject = upsert_subject.on_conflict_do_update(index_elements=["uuid"], set_={
            "subject": upsert_subject.excluded.subject, "namespace": upsert_subject.excluded.namespace,
            "doc": upsert_subject.excluded.doc})
        upsert_feed = insert(feeds)
        self.upsert_feed = upsert_feed.on_conflict_do_update(index_elements=["trigger_fqn"], set_={
            "namespace": upsert_feed.excluded.namespace, "doc": upsert_feed.excluded.doc})
        upsert_counts = insert(rule_counts)
        self.add_rule_counts = upsert_counts.on_conflict_do_update(index_elements=["rule"], set_={
            "matched": rule_counts.c.matched + upsert_counts.excluded.matched,
            "filtered": rule_counts.c.filtered + upsert_counts.excluded.filtered})
        upsert_route = insert(api_routes)
        self.upsert_route = upsert_route.on_conflict_do_update(
            index_elements=["namespace", "base_path", "rel_path", "verb"], set_={"doc": upsert_route.excluded.doc})
        upsert_cursor = insert(cursors)
        self.upsert_cursor = upsert_cursor.on_conflict_do_update(index_elements=["feed_id"], set_={
            "value": upsert_cursor.excluded.value, "updated_ms": upsert_cursor.excluded.updated_ms})


def entity_row(entity: Entity) -> dict[str, Any]:
    namespace, _, package = entity.namespace.partition("/")
    return {"path": entity.namespace, "name": entity.name, "collection": collection_of(entity).value,
            "namespace": namespace, "package": package, "revision": entity.revision,
            "updated_ms": entity.updated_ms, "doc": codec.dumps(codec.entity_to_doc(entity))}


def entity_update(old: Entity, new: Entity) -> dict[str, Any]:
    return {"b_path": new.namespace, "b_name": new.name, "b_collection": collection_of(new).value,
            "b_revision": old.revision, "new_revision": new.revision, "new_updated_ms": new.updated_ms,
            "new_doc": codec.dumps(codec.entity_to_doc(new))}


def entity_filter(collection: Collection, namespace: str, package: str | None) -> list[Any]:
    conditions = [entities.c.namespace == namespace, entities.c.collection == collection.value]
    if package is not None:
        conditions.append(entities.c.package == package)
    return conditions


def activation_filter(query: ActivationQuery) -> list[Any]:
    conditions = [activations.c.namespace == query.namespace]
    if query.name is not None:
        conditions.append(activations.c.name == query.name)
    if query.since_ms is not None:
        conditions.append(activations.c.start_ms >= query.since_ms)
    if query.upto_ms is not None:
        conditions.append(activations.c.start_ms <= query.upto_ms)
    return conditions


def activation_list_name(activation: Activation) -> str:
    """The `name` filter form: the `path` annotation without its namespace, else the name."""
    path = annotation(activation.annotations, "path")
    if isinstance(path, str) and "/" in path:
        return path.split("/", 1)[1]
    return activation.name


def activation_row(activation: Activation) -> dict[str, Any]:
    return {"activation_id": activation.activation_id, "namespace": activation.namespace,
            "name": activation_list_name(activation), "start_ms": activation.start_ms,
            "doc": codec.dumps(codec.activation_to_doc(activation)), "event_id": activation_event_id(activation)}


def activation_event_id(activation: Activation) -> str | None:
    """The trigger event a record is filed under: a delivery attempt's (`attempt` annotation) `event`,
    or an explicit `eventId`. Records that lineage finds by key (rule activations, sequence
    components) are not filed: an index on random keys would cost every insert a random B-tree write."""
    annotations = activation.annotations
    value = annotation(annotations, "eventId")
    if value is None and annotation(annotations, "attempt") is not None:
        value = annotation(annotations, "event")
    return value if isinstance(value, str) else None


def pending_row(invocation: Invocation) -> dict[str, Any]:
    return {"activation_id": invocation.activation_id, "accepted_ms": invocation.accepted_ms,
            "doc": codec.dumps(codec.invocation_to_doc(invocation))}


def event_row(trigger_event: TriggerEvent, decisions: tuple[dict[str, JSON], ...] | None = None) -> dict[str, Any]:
    """`decisions`: the event's rule decisions when they are not in `trigger_event` (Acceptance.decisions)."""
    doc = codec.event_to_doc(trigger_event)
    if decisions is not None:
        doc["decisions"] = list(decisions)
    return {"id": trigger_event.id, "trigger_fqn": str(trigger_event.trigger), "time_ms": trigger_event.time_ms,
            "doc": codec.dumps(doc)}
