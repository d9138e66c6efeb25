"""SQLAlchemy Core descriptions of the tables that migrations.py creates, for building queries.

They describe the schema after the latest migration; migrations.py is the source of truth.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

metadata = MetaData()

subjects = Table(
    "subjects", metadata,
    Column("uuid", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("doc", Text, nullable=False),
)

entities = Table(
    "entities", metadata,
    Column("path", Text, primary_key=True),  # `guest` or `guest/pkg`
    Column("name", Text, primary_key=True),
    Column("collection", Text, nullable=False),
    Column("namespace", Text, nullable=False),  # root namespace
    Column("package", Text, nullable=False),  # "" outside a package
    Column("revision", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),
)

activations = Table(
    "activations", metadata,
    Column("activation_id", Text, primary_key=True),
    Column("namespace", Text, nullable=False),  # the invoking namespace
    Column("name", Text, nullable=False),  # "action" or "pkg/action", the list filter form
    Column("start_ms", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),
    Column("event_id", Text, nullable=True),  # the trigger event it descends from (migration 8)
)

pending = Table(
    "pending", metadata,
    Column("activation_id", Text, primary_key=True),
    Column("accepted_ms", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Text, primary_key=True),  # CloudEvent id
    Column("trigger_fqn", Text, nullable=False),  # "/guest/t" or "/guest/pkg/t"
    Column("time_ms", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),
)

feeds = Table(
    "feeds", metadata,
    Column("trigger_fqn", Text, primary_key=True),
    Column("namespace", Text, nullable=False),
    Column("doc", Text, nullable=False),
)

rule_counts = Table(
    "rule_counts", metadata,
    Column("rule", Text, primary_key=True),  # "guest/r"
    Column("matched", BigInteger, nullable=False),
    Column("filtered", BigInteger, nullable=False),
)

cursors = Table(
    "cursors", metadata,
    Column("feed_id", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

api_routes = Table(
    "api_routes", metadata,
    Column("namespace", Text, primary_key=True),
    Column("base_path", Text, primary_key=True),
    Column("rel_path", Text, primary_key=True),
    Column("verb", Text, primary_key=True),
    Column("doc", Text, nullable=False),
)

retries = Table(
    "retries", metadata,
    Column("activation_id", Text, primary_key=True),  # the next attempt's activation id
    Column("rule", Text, nullable=False),  # "guest/r"
    Column("due_ms", BigInteger, nullable=False),
    Column("lease_owner", Text, nullable=False),  # "" until claimed
    Column("lease_until_ms", BigInteger, nullable=False),  # 0 until claimed
    Column("doc", Text, nullable=False),  # the next attempt's invocation (codec.invocation_to_doc)
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("id", Text, primary_key=True),  # derived from (rule, event)
    Column("rule", Text, nullable=False),  # "guest/r"
    Column("created_ms", BigInteger, nullable=False),
    Column("doc", Text, nullable=False),  # codec.dead_letter_to_doc
    Column("redriven_by", Text),  # the activation id of the redrive under way (migration 13)
)

replays = Table(
    "replays", metadata,
    Column("rule", Text, primary_key=True),  # "guest/r"
    Column("event_id", Text, primary_key=True),
    Column("event_ms", BigInteger, nullable=False),
    Column("runs", BigInteger, nullable=False),  # 1, plus one per forced replay
    Column("activation_id", Text, nullable=False),  # of the latest replayed run
    Column("replayed_ms", BigInteger, nullable=False),
)

entity_generation = Table(
    "entity_generation", metadata,
    Column("id", Integer, primary_key=True),  # the one row: 1
    Column("generation", BigInteger, nullable=False),  # entity-writing transactions so far
)
