"""Manifests deployed to a real hub through its REST API, read back and compared field by field
with what OpenWhisk creates for the same wskdeploy manifest; updates, undeploy and rollback."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt_client
import pytest
from click.testing import CliRunner

from tests.plugins.hub import HubClient
from tests.plugins.manifests import EXAMPLES, FIXTURES
from tests.plugins.waiting import wait_records
from triggerhub import errors
from triggerhub.feeds.pg_slots import lsn_int
from triggerhub.manifests.client import HttpWhiskClient
from triggerhub.manifests.commands import deploy as deploy_command
from triggerhub.manifests.deployer import Outcome, deploy_manifest, undeploy_manifest
from triggerhub.manifests.plan import Change, FieldDiff
from triggerhub.manifests.project import DesiredEntity
from triggerhub.model import Collection

FIXTURE_ENV = {"ENV_STAGE": "dev", "ENV_GREETING": "hi", "ENV_PORT": "8080"}
MANIFESTS = sorted(p.name for p in FIXTURES.glob("*.yaml") if "deployment" not in p.name)
WEB_ON = {"web-export": True, "raw-http": False, "final": True}


@pytest.fixture
async def client(hub: HubClient) -> AsyncIterator[HttpWhiskClient]:
    async with HttpWhiskClient(hub.apihost, hub.auth) as whisk:
        yield whisk


async def get(hub: HubClient, collection: str, name: str) -> tuple[int, Any]:
    return await hub.call("GET", f"namespaces/_/{collection}/{name}")


async def require_feed(hub: HubClient, feed: str) -> None:
    """The hub's own feed action must be there (bootstrapped under whisk.system)."""
    namespace, _, rest = feed.lstrip("/").partition("/")
    status, body = await hub.call("GET", f"namespaces/{namespace}/actions/{rest}")
    assert status == 200, f"the hub does not provide the feed {feed}: {status} {body}"


FEED_OF = {"11_feed_alarm.yaml": "/whisk.system/alarms/alarm", "12_dependencies.yaml": "/whisk.system/alarms/alarm"}


def as_map(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


def overlay_of(name: str) -> Path | None:
    path = FIXTURES / name.replace(".yaml", ".deployment.yaml")
    return path if path.exists() else None


async def read_back(hub: HubClient, entity: DesiredEntity) -> dict[str, Any]:
    status, doc = await get(hub, entity.collection.value, entity.name)
    assert status == 200, f"{entity.collection.value}/{entity.name}: {status} {doc}"
    return doc


def check_like_openwhisk(entity: DesiredEntity, doc: dict[str, Any]) -> None:
    """The entity the hub stored is what OpenWhisk stores for the same PUT (reference section 2)."""
    body = entity.body
    namespace, _, name = ("guest/" + entity.name).rpartition("/")
    assert (doc["namespace"], doc["name"], doc["publish"]) == (namespace, name, body["publish"])
    annotations = as_map(doc["annotations"])
    for key, value in as_map(body["annotations"]).items():
        assert annotations[key] == value, key
    if entity.collection is Collection.ACTIONS:
        assert annotations["exec"] == body["exec"]["kind"]
        assert annotations["provide-api-key"] is False
        assert doc["exec"]["kind"] == body["exec"]["kind"]
        if entity.is_sequence:
            assert doc["exec"]["components"] == body["exec"]["components"]
            assert doc["parameters"] == [{"key": "_actions", "value": body["exec"]["components"]}]
        else:
            for key in ("code", "image", "main"):
                assert doc["exec"].get(key) == body["exec"].get(key), key
            assert doc["exec"]["binary"] is body["exec"]["binary"]
            assert doc["parameters"] == body["parameters"]
            assert doc["limits"] == body["limits"]
    elif entity.collection is Collection.RULES:
        assert doc["status"] == "active"
        for field in ("trigger", "action"):
            path, _, target = body[field].lstrip("/").rpartition("/")
            assert doc[field] == {"path": path, "name": target}
    elif entity.collection is Collection.PACKAGES and body.get("binding"):
        assert doc["binding"] == body["binding"]
        assert as_map(doc["parameters"]).items() >= as_map(body["parameters"]).items()
    else:
        assert doc["parameters"] == body["parameters"]


@pytest.mark.parametrize("name", MANIFESTS)
async def test_fixture_manifest_deploys_like_openwhisk(hub: HubClient, client: HttpWhiskClient, name: str) -> None:
    if name in FEED_OF:
        await require_feed(hub, FEED_OF[name])
    outcome = await deploy_manifest(client, FIXTURES / name, deployment=overlay_of(name), env=FIXTURE_ENV)

    assert [s.change for s in outcome.plan.steps] == [Change.CREATE] * len(outcome.project.entities)
    for entity in outcome.project.entities:
        check_like_openwhisk(entity, await read_back(hub, entity))
    again = await deploy_manifest(client, FIXTURES / name, deployment=overlay_of(name), env=FIXTURE_ENV)
    assert again.plan.steps == () and again.plan.route_steps == () and again.applied == ()

    gone = await undeploy_manifest(client, FIXTURES / name, deployment=overlay_of(name), env=FIXTURE_ENV)

    assert len(gone.applied) == len(outcome.project.entities) + len(outcome.project.routes)
    for entity in outcome.project.entities:
        assert (await get(hub, entity.collection.value, entity.name))[0] == 404


async def test_kinds_resolve_to_the_hubs_defaults(hub: HubClient, client: HttpWhiskClient) -> None:
    await deploy_manifest(client, FIXTURES / "03_runtimes.yaml")

    kinds = {n: (await get(hub, "actions", f"kinds/{n}"))[1]["exec"]["kind"] for n in ("by-kind", "by-runtime",
                                                                                     "inferred-js")}
    assert kinds == {"by-kind": "python:3.11", "by-runtime": "nodejs:20", "inferred-js": "nodejs:20"}


async def test_web_true_gives_web_export_raw_http_false_final_true(hub: HubClient, client: HttpWhiskClient) -> None:
    await deploy_manifest(client, FIXTURES / "04_web.yaml")

    public = as_map((await get(hub, "actions", "webby/public"))[1]["annotations"])
    raw = as_map((await get(hub, "actions", "webby/raw"))[1]["annotations"])
    assert {k: public[k] for k in WEB_ON} == WEB_ON
    assert {k: raw[k] for k in WEB_ON} == {"web-export": True, "raw-http": True, "final": True}
    status, result = await hub.call("GET", "web/guest/webby/public.json", name="Ada")
    assert (status, result) == (200, {"greeting": "Hello, Ada!"})


async def test_deployed_trigger_rule_action_runs_on_fire(hub: HubClient, client: HttpWhiskClient) -> None:
    await deploy_manifest(client, FIXTURES / "10_trigger_rule.yaml")

    status, fired = await hub.call("POST", "namespaces/_/triggers/bell", {"extra": 1})

    assert status == 202 and len(fired["activationId"]) == 32


async def test_edit_then_deploy_shows_the_changed_fields(tmp_path: Path, hub: HubClient,
                                                          client: HttpWhiskClient) -> None:
    shutil.copytree(FIXTURES / "src", tmp_path / "src")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text((FIXTURES / "10_trigger_rule.yaml").read_text())
    await deploy_manifest(client, manifest)
    manifest.write_text(manifest.read_text().replace("name: door", "name: gate\n          floor: 2")
                        .replace("function: src/hello.py", "function: src/hello.py\n        web: true"))

    preview = await deploy_manifest(client, manifest, dry_run=True)

    assert [(s.change, s.kind_word, s.name, s.diffs) for s in preview.plan.steps] == [
        (Change.UPDATE, "action", "handle", (FieldDiff("annotations.final", None, True),
                                             FieldDiff("annotations.raw-http", None, False),
                                             FieldDiff("annotations.web-export", None, True))),
        (Change.UPDATE, "trigger", "bell", (FieldDiff("parameters.floor", None, 2),
                                            FieldDiff("parameters.name", "door", "gate"))),
    ]
    assert preview.plan.render()[-1] == "0 to create, 2 to update, 0 to delete, 1 unchanged"
    assert as_map((await get(hub, "triggers", "bell"))[1]["parameters"]) == {"name": "door"}

    applied = await deploy_manifest(client, manifest)

    assert applied.applied == ("updated action handle", "updated trigger bell")
    trigger = (await get(hub, "triggers", "bell"))[1]
    assert (as_map(trigger["parameters"]), trigger["version"]) == ({"name": "gate", "floor": 2}, "0.0.2")
    assert (await deploy_manifest(client, manifest, dry_run=True)).plan.steps == ()
    rule = (await get(hub, "rules", "ring"))[1]
    assert rule["status"] == "active"


async def test_edit_then_deploy_shows_and_applies_the_changed_feed_fields(tmp_path: Path, hub: HubClient,
                                                                     client: HttpWhiskClient) -> None:
    await require_feed(hub, "/whisk.system/alarms/alarm")
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "nightly-cron", project)
    await deploy_manifest(client, project / "manifest.yaml")
    manifest = project / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("value: 30", "value: 14").replace('"0 2 * * *"', '"30 1 * * *"'))

    preview = await deploy_manifest(client, manifest, dry_run=True)

    assert [(s.change, s.kind_word, s.name, s.diffs) for s in preview.plan.steps] == [
        (Change.UPDATE, "action", "nightly/cleanup-report", (FieldDiff("parameters.keepDays", 30, 14),)),
        (Change.UPDATE, "trigger", "every-night", (FieldDiff("feed.cron", "0 2 * * *", "30 1 * * *"),)),
    ]
    assert as_map((await get(hub, "actions", "nightly/cleanup-report"))[1]["parameters"]) == {"keepDays": 30}

    applied = await deploy_manifest(client, manifest)

    assert applied.applied == ("updated action nightly/cleanup-report", "updated trigger every-night")
    action = (await get(hub, "actions", "nightly/cleanup-report"))[1]
    assert (as_map(action["parameters"]), action["version"]) == ({"keepDays": 14}, "0.0.2")
    final = await deploy_manifest(client, manifest, dry_run=True)
    assert final.plan.steps == ()


async def test_undeploy_removes_exactly_what_the_project_created(hub: HubClient, client: HttpWhiskClient) -> None:
    status, _ = await hub.call("PUT", "namespaces/_/actions/bystander",
                               {"exec": {"kind": "python:3.11", "code": "def main(a):\n    return a\n"}})
    assert status == 200
    before = {c: await hub.call("GET", f"namespaces/_/{c}") for c in ("actions", "triggers", "rules", "packages")}
    await deploy_manifest(client, FIXTURES / "14_managed_project.yaml")

    gone = await undeploy_manifest(client, FIXTURES / "14_managed_project.yaml")

    assert gone.applied == ("deleted rule poke-keep", "deleted trigger poke", "deleted action managed/drop",
                            "deleted action managed/keep", "deleted package managed")
    after = {c: await hub.call("GET", f"namespaces/_/{c}") for c in ("actions", "triggers", "rules", "packages")}
    assert after == before


async def test_managed_redeploy_deletes_dropped_entities(tmp_path: Path, hub: HubClient,
                                                         client: HttpWhiskClient) -> None:
    shutil.copytree(FIXTURES / "src", tmp_path / "src")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text((FIXTURES / "14_managed_project.yaml").read_text())
    await deploy_manifest(client, manifest)
    manifest.write_text(manifest.read_text().replace("        drop:\n          function: src/hello.js\n", ""))

    outcome = await deploy_manifest(client, manifest)

    assert outcome.applied == ("deleted action managed/drop",)
    assert (await get(hub, "actions", "managed/drop"))[0] == 404
    assert (await get(hub, "actions", "managed/keep"))[0] == 200


async def test_rest_failure_rolls_back_the_whole_manifest(tmp_path: Path, hub: HubClient,
                                                          client: HttpWhiskClient) -> None:
    shutil.copy(FIXTURES / "src" / "hello.py", tmp_path / "hello.py")
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n  doomed:\n    actions:\n      a: {function: hello.py}\n    triggers:\n      t: {}\n"
        "    rules:\n      r: {trigger: t, action: /guest/elsewhere/missing}\n")

    with pytest.raises(errors.BadRequest) as caught:
        await deploy_manifest(client, tmp_path / "manifest.yaml")

    assert caught.value.message.startswith("create rule r failed: ")
    assert caught.value.message.endswith("; nothing was changed (rolled back 3 step(s))")
    for collection, name in (("packages", "doomed"), ("actions", "doomed/a"), ("triggers", "t"), ("rules", "r")):
        assert (await get(hub, collection, name))[0] == 404


async def test_feed_trigger_registers_with_the_feed_and_undeploy_deletes_it(hub: HubClient,
                                                                            client: HttpWhiskClient) -> None:
    await require_feed(hub, "/whisk.system/alarms/alarm")
    await deploy_manifest(client, FIXTURES / "11_feed_alarm.yaml")
    read = {"lifecycleEvent": "READ", "triggerName": "/guest/every-night", "authKey": hub.auth}

    status, record = await hub.call("POST", "namespaces/whisk.system/actions/alarms/alarm", read, blocking=True)
    assert status == 200 and record["response"]["result"]["config"]["cron"] == "0 2 * * *"

    await undeploy_manifest(client, FIXTURES / "11_feed_alarm.yaml")

    status, _ = await hub.call("POST", "namespaces/whisk.system/actions/alarms/alarm", read, blocking=True)
    assert status != 200


FEED_RECORDER = """\
def main(args):
    return {"event": args.get("lifecycleEvent"), "trigger": args.get("triggerName"),
            "hasKey": ":" in str(args.get("authKey", "")), "cron": args.get("cron")}
"""


async def test_feed_lifecycle_with_a_user_feed_action(tmp_path: Path, hub: HubClient, client: HttpWhiskClient) -> None:
    status, _ = await hub.call("PUT", "namespaces/_/packages/feeds", {})
    assert status == 200
    status, _ = await hub.call("PUT", "namespaces/_/actions/feeds/recorder",
                               {"exec": {"kind": "python:3.11", "code": FEED_RECORDER},
                                "annotations": [{"key": "feed", "value": True}]})
    assert status == 200
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n  default:\n    triggers:\n      ticker:\n        feed: /guest/feeds/recorder\n"
        "        inputs:\n          cron: '*/5 * * * *'\n")

    created = await deploy_manifest(client, tmp_path / "manifest.yaml")
    removed = await undeploy_manifest(client, tmp_path / "manifest.yaml")

    assert (created.applied, removed.applied) == (("created trigger ticker",), ("deleted trigger ticker",))
    status, records = await hub.call("GET", "namespaces/_/activations", name="feeds/recorder", docs=True)
    assert status == 200
    results = sorted((r["response"]["result"] for r in records), key=lambda r: str(r["event"]))
    assert results == [
        {"event": "CREATE", "trigger": "/guest/ticker", "hasKey": True, "cron": "*/5 * * * *"},
        {"event": "DELETE", "trigger": "/guest/ticker", "hasKey": True, "cron": None},
        {"event": "READ", "trigger": "/guest/ticker", "hasKey": True, "cron": None},
    ]
    assert (await get(hub, "triggers", "ticker"))[0] == 404


# --------------------------------------------------------------------------- example manifests


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(deploy_command, list(args), env=env, catch_exceptions=False)


async def test_nightly_cron_example_through_the_cli(hub: HubClient) -> None:
    await require_feed(hub, "/whisk.system/alarms/alarm")
    folder = str(EXAMPLES / "nightly-cron")
    hub_args = ("--apihost", hub.apihost, "--auth", hub.auth)

    dry = await asyncio.to_thread(run_cli, "-p", folder, "--dry-run", *hub_args)
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "create  package  nightly", "create  action   nightly/cleanup-report", "create  trigger  every-night",
        "create  rule     run-nightly-cleanup", "4 to create, 0 to update, 0 to delete, 0 unchanged",
        "dry run: nothing was changed"]
    assert (await get(hub, "packages", "nightly"))[0] == 404

    done = await asyncio.to_thread(run_cli, "-p", folder, *hub_args)

    assert done.exit_code == 0, done.output
    trigger = (await get(hub, "triggers", "every-night"))[1]
    assert as_map(trigger["annotations"])["feed"] == "/whisk.system/alarms/alarm"
    assert trigger["parameters"] == []


async def test_cli_reports_manifest_problems_with_positions(tmp_path: Path, hub: HubClient) -> None:
    (tmp_path / "manifest.yaml").write_text("packages:\n  p:\n    actions:\n      a: {code: 'x'}\n")

    result = await asyncio.to_thread(
        lambda: CliRunner().invoke(deploy_command, ["-m", str(tmp_path / "manifest.yaml"), "--apihost",
                                                    hub.apihost, "--auth", hub.auth]))

    assert result.exit_code == 1
    assert result.output == (f"{(tmp_path / 'manifest.yaml').as_posix()}:4:11 packages.p.actions.a.code: inline "
                             f"'code' needs 'runtime', one this hub runs: nodejs:20, python:3.11\n")


async def test_webhook_to_sequence_example(hub: HubClient, client: HttpWhiskClient) -> None:
    await require_feed(hub, "/whisk.system/webhook/webhook")
    outcome = await deploy_manifest(client, EXAMPLES / "webhook-to-sequence" / "manifest.yaml",
                                    env={"WEBHOOK_TOKEN": "s3cret"})

    for entity in outcome.project.entities:
        check_like_openwhisk(entity, await read_back(hub, entity))
    status, result = await hub.call("POST", "namespaces/_/actions/orders/process-order",
                                    {"id": "o-1", "lines": [{"price": 2.5, "quantity": 2}]},
                                    blocking=True, result=True)
    assert (status, result) == (200, {"orderId": "o-1", "items": 1, "total": 5.0, "currency": "EUR"})


@pytest.mark.mqtt
async def test_iot_temperature_example(hub: HubClient, client: HttpWhiskClient,
                                       mqtt_broker: tuple[str, int]) -> None:
    await require_feed(hub, "/whisk.system/mqtt/subscribe")
    host, port = mqtt_broker

    outcome = await deploy_manifest(client, EXAMPLES / "iot-temperature-alert" / "manifest.yaml",
                                    params={"url": f"mqtt://{host}:{port}"})

    for entity in outcome.project.entities:
        check_like_openwhisk(entity, await read_back(hub, entity))
    publisher = mqtt_client.Client(mqtt_client.CallbackAPIVersion.VERSION2, client_id="example-sensor")
    publisher.connect(host, port)
    publisher.loop_start()
    try:
        info = publisher.publish("sensors/s1/temperature", json.dumps({"celsius": 31.5}), qos=1)
        await asyncio.to_thread(info.wait_for_publish, 10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    records = await wait_records(hub, "iot/check-temperature", 1)
    assert records[0]["response"]["result"] == {"sensor": "s1", "celsius": 31.5, "threshold": 30.0, "alert": True}
    await undeploy_manifest(client, EXAMPLES / "iot-temperature-alert" / "manifest.yaml")


@pytest.mark.postgres
async def test_db_change_example(hub: HubClient, client: HttpWhiskClient, fresh_pg_url: str) -> None:
    await require_feed(hub, "/whisk.system/postgres/changes")
    dsn = fresh_pg_url.replace("+asyncpg", "")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
        outcome: Outcome = await deploy_manifest(client, EXAMPLES / "db-change-notification" / "manifest.yaml",
                                                 env={"DATABASE_URL": dsn})
        for entity in outcome.project.entities:
            check_like_openwhisk(entity, await read_back(hub, entity))
        await connection.execute("INSERT INTO orders VALUES (7, 1)")
        records = await wait_records(hub, "db/notify-change", 1)
        assert records[0]["response"]["result"] == {"channel": "ops-alerts", "text": "insert on public.orders (id 7)"}
        await undeploy_manifest(client, EXAMPLES / "db-change-notification" / "manifest.yaml")
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_db_logical_changes_example(hub: HubClient, client: HttpWhiskClient, fresh_pg_url: str) -> None:
    await require_feed(hub, "/whisk.system/postgres/changes")
    dsn = fresh_pg_url.replace("+asyncpg", "")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)")
        await connection.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
        outcome: Outcome = await deploy_manifest(client, EXAMPLES / "db-logical-changes" / "manifest.yaml",
                                                 env={"PG_LOGICAL_URL": dsn})
        for entity in outcome.project.entities:
            check_like_openwhisk(entity, await read_back(hub, entity))
        await connection.execute("INSERT INTO orders VALUES (1, 'apple', 3)")
        await connection.execute("UPDATE orders SET qty = 4 WHERE id = 1")
        # In commit order: the two actions run concurrently, so their start times need not be.
        records = sorted(await wait_records(hub, "ledger/describe-change", 2), key=lambda r: lsn_int(r["response"]["result"]["lsn"]))
        results = [r["response"]["result"] for r in records]
        lsns = [result.pop("lsn") for result in results]
        assert results == [
            {"text": "insert on public.orders (key {'id': 1})", "before": None,
             "after": {"id": 1, "item": "apple", "qty": 3}},
            {"text": "update on public.orders (key {'id': 1})", "before": {"id": 1, "item": "apple", "qty": 3},
             "after": {"id": 1, "item": "apple", "qty": 4}}]
        assert all(isinstance(lsn, str) and "/" in lsn for lsn in lsns) and lsns[0] != lsns[1]
        await undeploy_manifest(client, EXAMPLES / "db-logical-changes" / "manifest.yaml")
        assert await connection.fetch("SELECT slot_name FROM pg_replication_slots "
                                      "WHERE database = current_database()") == []
    finally:
        await connection.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                 "WHERE database = current_database()")
        await connection.close()


async def test_sqlite_change_example(hub: HubClient, client: HttpWhiskClient, tmp_path: Path) -> None:
    import sqlite3

    await require_feed(hub, "/whisk.system/sqlite/changes")
    database = tmp_path / "notes.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    conn.close()
    outcome: Outcome = await deploy_manifest(client, EXAMPLES / "sqlite-change-log" / "manifest.yaml",
                                             env={"SQLITE_DATABASE": str(database)})
    for entity in outcome.project.entities:
        check_like_openwhisk(entity, await read_back(hub, entity))
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('hello')")
    conn.close()
    records = await wait_records(hub, "notes/log-change", 1)
    assert records[0]["response"]["result"] == {"text": "insert on notes (key {'id': 1})", "note": "hello"}
    await undeploy_manifest(client, EXAMPLES / "sqlite-change-log" / "manifest.yaml")
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'triggerhub%'").fetchall() == []
    conn.close()


@pytest.mark.kafka
async def test_kafka_order_totals_example(hub: HubClient, client: HttpWhiskClient, kafka_bootstrap: str) -> None:
    import uuid

    from aiokafka import AIOKafkaProducer

    from tests.integration.test_feed_kafka import make_topic

    await require_feed(hub, "/whisk.system/kafka/consume")
    topic = f"orders-{uuid.uuid4().hex[:10]}"  # the example's `orders`, made unique for this test
    await make_topic(kafka_bootstrap, topic, 1)
    outcome: Outcome = await deploy_manifest(client, EXAMPLES / "kafka-order-totals" / "manifest.yaml",
                                             params={"topics": topic}, env={"KAFKA_BROKERS": kafka_bootstrap})
    for entity in outcome.project.entities:
        check_like_openwhisk(entity, await read_back(hub, entity))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for amount in (12.5, 7.5):
            await producer.send(topic, json.dumps({"amount": amount}).encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    records = await wait_records(hub, "shop/total-orders", 1)
    totals = [r["response"]["result"] for r in records]
    assert sum(t["records"] for t in totals) == 2 and sum(t["total"] for t in totals) == 20.0
    await undeploy_manifest(client, EXAMPLES / "kafka-order-totals" / "manifest.yaml")


async def test_deploy_directory_deploys_each_example_and_reports_failures(
        tmp_path: Path, hub: HubClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from triggerhub.manifests.deploy import deploy_directory

    await require_feed(hub, "/whisk.system/alarms/alarm")
    await require_feed(hub, "/whisk.system/webhook/webhook")
    for example in ("nightly-cron", "webhook-to-sequence"):
        shutil.copytree(EXAMPLES / example, tmp_path / example)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.yaml").write_text("packages:\n  b:\n    actions:\n      a: {}\n")
    monkeypatch.setenv("WEBHOOK_TOKEN", "s3cret")

    results = await deploy_directory(tmp_path, hub.apihost, hub.auth)

    assert sorted(results) == ["broken", "nightly-cron", "webhook-to-sequence"]
    assert isinstance(results["broken"], errors.ManifestError)
    assert [len(r.applied) for n, r in sorted(results.items()) if isinstance(r, Outcome)] == [4, 6]
    assert (await get(hub, "actions", "orders/process-order"))[1]["exec"]["kind"] == "sequence"
