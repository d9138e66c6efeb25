"""The logical-mode PostgreSQL feed's pure parts: parameters, the server check, LSNs, snapshots."""

from __future__ import annotations

import pytest

from triggerhub.errors import BadRequest
from triggerhub.feeds.pg_logical import parse_logical_config, slot_name_for
from triggerhub.feeds.pg_slots import ServerFacts, lsn_int, lsn_text, server_problem, visible_in_snapshot

DSN = "postgresql://u:secret@db.example:5432/shop"


def test_wal_level_other_than_logical_is_named_with_the_fix() -> None:
    facts = ServerFacts(wal_level="replica", role="app", can_replicate=True)
    assert server_problem(facts, "db.example:5432/shop") == (
        "PostgreSQL at db.example:5432/shop has wal_level = 'replica'; mode logical needs wal_level = logical "
        "(set it in postgresql.conf and restart the server), or use mode outbox")
    assert server_problem(ServerFacts(wal_level="logical", role="app", can_replicate=True), "x") is None


@pytest.mark.parametrize(("params", "message"), [
    ({"slot": "Bad-Name"}, "slot parameter 'Bad-Name' must be a replication slot name: 1 to 63 lower-case letters, "
                           "digits or underscores"),
    ({"snapshot": "yes"}, "snapshot parameter 'yes' must be true or false"),
    ({"snapshot": True, "table": "public.*"}, "snapshot parameter true needs one table, not 'public.*'; name the table"),
    ({"heartbeatMs": 50}, "heartbeatMs parameter '50' must be a whole number of milliseconds from 100 to 3600000"),
    ({"pollMs": True}, "pollMs parameter 'True' must be a whole number of milliseconds from 10 to 60000"),
    ({"table": "a.b.c"}, "table parameter 'a.b.c' must name a table like orders or public.orders, or every table "
                         "of a schema like public.*"),
    ({"operations": ["TRUNCATE"]}, "operations parameter '['TRUNCATE']' must list some of INSERT, UPDATE, DELETE"),
    ({"dsn": "mysql://u:secret@h/db"}, "dsn parameter 'mysql://u:********@h/db' must be a URL like "
                                       "postgresql://user:password@host:5432/database"),
])
def test_bad_parameters_are_refused_by_name(params: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_logical_config({"dsn": DSN, "table": "orders", **params}, "/guest/t")  # type: ignore[dict-item]
    assert refused.value.message == message


def test_default_slot_is_per_trigger_and_valid() -> None:
    name = slot_name_for("/guest/Orders-EU")
    assert name.startswith("triggerhub_guest_orders_eu_") and len(name) == len("triggerhub_guest_orders_eu_") + 8
    assert slot_name_for("/guest/orders_eu") != name and len(slot_name_for("/n/" + "x" * 300)) <= 63
    config = parse_logical_config({"dsn": DSN, "table": "public.*", "operations": "delete"}, "/guest/t")
    assert (config.slot, config.operations, config.location) == (slot_name_for("/guest/t"), ("DELETE",),
                                                                 "db.example:5432/shop")


def test_lsn_round_trip_and_order() -> None:
    assert lsn_text(lsn_int("16/B374D848")) == "16/B374D848"
    assert lsn_int("0/FFFFFFFF") < lsn_int("1/0")


def test_visible_in_snapshot_across_the_xid_epoch() -> None:
    snap = "100:105:101,103"
    assert [visible_in_snapshot(x, snap) for x in (99, 100, 101, 102, 103, 104, 105)] == [
        True, True, False, True, False, True, False]
    epoch = 1 << 32
    wrapped = f"{epoch + 10}:{epoch + 20}:"
    assert visible_in_snapshot(5, wrapped) and visible_in_snapshot(0xFFFFFFF0, wrapped)  # before the wrap
    assert not visible_in_snapshot(25, wrapped)


def test_the_postgres_feed_offers_both_modes_outbox_by_default() -> None:
    from triggerhub.cli.feed_kinds import FEED_KINDS
    from triggerhub.feeds.kind import ParseContext, with_modes
    from triggerhub.feeds.pg_logical import FEED_KIND as LOGICAL
    from triggerhub.feeds.postgres import FEED_KIND as OUTBOX

    kind = FEED_KINDS["/whisk.system/postgres/changes"]
    ctx = ParseContext(trigger="/guest/t", now_ms=0, require_future=False)
    assert kind.parse({"dsn": DSN, "table": "orders"}, ctx) == {
        "dsn": DSN, "table": "orders", "operations": ["INSERT", "UPDATE", "DELETE"], "columns": None, "mode": "outbox"}
    assert kind.parse({"dsn": DSN, "table": "orders", "mode": "logical"}, ctx) == {
        "dsn": DSN, "table": "orders", "operations": ["INSERT", "UPDATE", "DELETE"], "slot": slot_name_for("/guest/t"),
        "snapshot": False, "heartbeatMs": 10000, "pollMs": 100, "mode": "logical"}
    assert kind.redacted({"dsn": DSN, "mode": "logical"})["dsn"] == "postgresql://u:********@db.example:5432/shop"
    assert kind.catalogue.parameters == ("dsn", "table", "operations", "columns", "mode", "slot", "snapshot",
                                         "heartbeatMs", "pollMs")
    with pytest.raises(ValueError, match="must share one feed name and include the default 'outbox'"):
        with_modes("mode", "outbox", {"logical": LOGICAL})
    assert OUTBOX.fqn == LOGICAL.fqn == kind.fqn
