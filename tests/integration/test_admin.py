"""`triggerhub admin` on a real store: the embedded SQLite home and PostgreSQL ($TRIGGERHUB_STORE_URL)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from triggerhub.cli import main
from triggerhub.engine.auth import key_matches
from triggerhub.model import Subject
from triggerhub.store.sql import SqlStore

AUTH_KEY = re.compile(r"\A([0-9a-f-]{36}):([A-Za-z0-9]{64})\Z")


@pytest.fixture(params=["sqlite-home", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment `triggerhub admin` and the hub share: a home, plus a PostgreSQL URL or not."""
    env = {"TRIGGERHUB_HOME": str(tmp_path / "home")}
    if request.param == "postgresql":
        env["TRIGGERHUB_STORE_URL"] = str(request.getfixturevalue("fresh_pg_url"))
    return env


def admin(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["admin", *args], env=env)


def stored(env: dict[str, str]) -> dict[str, Subject]:
    """Subjects as the store holds them, by subject name and namespace."""
    url = env.get("TRIGGERHUB_STORE_URL") or f"sqlite+aiosqlite:///{Path(env['TRIGGERHUB_HOME']) / 'triggerhub.db'}"

    async def read() -> list[Subject]:
        store = SqlStore(url)
        await store.open()
        try:
            return await store.list_subjects()
        finally:
            await store.close()

    return {f"{s.subject}@{s.namespace}": s for s in asyncio.run(read())}


def created(result: Result) -> tuple[str, str]:
    assert result.exit_code == 0, result.output
    match = AUTH_KEY.match(result.output.strip())
    assert match is not None, result.output
    return match.group(1), match.group(2)


def test_user_lifecycle_keeps_only_digests(store_env: dict[str, str]) -> None:
    uuid, key = created(admin(store_env, "user", "create", "alice", "-ns", "team-a"))
    alice = stored(store_env)["alice@team-a"]
    assert (alice.uuid, alice.blocked, alice.limits) == (uuid, False, {})
    assert key not in alice.key_hash and key_matches(key, alice.key_hash)
    if "TRIGGERHUB_STORE_URL" not in store_env:
        assert key.encode() not in (Path(store_env["TRIGGERHUB_HOME"]) / "triggerhub.db").read_bytes()

    again = admin(store_env, "user", "create", "alice", "-ns", "team-a")
    assert (again.exit_code, again.output) == (1, (
        f"Error: subject 'alice' already has namespace 'team-a' (uuid {uuid}); "
        "for a new key run `triggerhub admin user rotate alice -ns team-a`\n"))

    blocked = admin(store_env, "user", "block", "alice")
    assert (blocked.exit_code, blocked.output) == (0, f"blocked alice in namespace team-a, uuid {uuid} (blocked)\n")
    assert stored(store_env)["alice@team-a"].blocked is True
    unblocked = admin(store_env, "user", "unblock", "alice", "-ns", "team-a")
    assert (unblocked.exit_code, unblocked.output) == (0, f"unblocked alice in namespace team-a, uuid {uuid}\n")
    assert stored(store_env)["alice@team-a"].blocked is False

    new_uuid, new_key = created(admin(store_env, "user", "rotate", "alice"))
    rotated = stored(store_env)["alice@team-a"]
    assert new_uuid == uuid and new_key != key
    assert key_matches(new_key, rotated.key_hash) and not key_matches(key, rotated.key_hash)

    deleted = admin(store_env, "user", "delete", "alice")
    assert (deleted.exit_code, deleted.output) == (0, f"deleted alice in namespace team-a, uuid {uuid}\n")
    assert "alice@team-a" not in stored(store_env)
    missing = admin(store_env, "user", "block", "alice")
    assert (missing.exit_code, missing.output) == (1, "Error: no subject 'alice'; see `triggerhub admin user list`\n")


def test_limits_per_namespace_and_listing(store_env: dict[str, str]) -> None:
    created(admin(store_env, "user", "create", "alice", "-ns", "team-a"))
    no_subject = admin(store_env, "limits", "set", "team-b", "--firesPerMinute", "3")
    assert (no_subject.exit_code, no_subject.output) == (1, (
        "Error: namespace 'team-b' has no subject; create one with `triggerhub admin user create SUBJECT -ns team-b`\n"))
    nothing = admin(store_env, "limits", "set", "team-a")
    assert nothing.exit_code == 2 and "give at least one of --invocationsPerMinute" in nothing.output
    negative = admin(store_env, "limits", "set", "team-a", "--firesPerMinute", "-1")
    assert negative.exit_code == 2 and "-1 is not in the range x>=0" in negative.output

    result = admin(store_env, "limits", "set", "team-a", "--invocationsPerMinute", "7", "--firesPerMinute", "3")
    assert (result.exit_code, json.loads(result.output)) == (0, {"invocationsPerMinute": 7, "firesPerMinute": 3})
    result = admin(store_env, "limits", "set", "team-a", "--concurrentInvocations", "2")
    assert json.loads(result.output) == {"invocationsPerMinute": 7, "firesPerMinute": 3, "concurrentInvocations": 2}
    created(admin(store_env, "user", "create", "bob", "-ns", "team-a"))  # a new member gets the namespace's limits
    result = admin(store_env, "limits", "get", "team-a")
    assert (result.exit_code, json.loads(result.output)) == (0, {"invocationsPerMinute": 7, "firesPerMinute": 3,
                                                                 "concurrentInvocations": 2})
    assert stored(store_env)["bob@team-a"].limits == json.loads(result.output)

    listing = CliRunner().invoke(main, ["--json", "admin", "user", "list", "team-a"], env=store_env)
    rows: list[dict[str, Any]] = json.loads(listing.output)
    assert [(r["subject"], r["namespace"], r["blocked"]) for r in rows] == [("alice", "team-a", False),
                                                                           ("bob", "team-a", False)]
    assert "key" not in json.dumps(rows)

    cleared = admin(store_env, "limits", "delete", "team-a")
    assert (cleared.exit_code, cleared.output) == (0, "limits of namespace team-a removed; the hub's defaults apply\n")
    assert json.loads(admin(store_env, "limits", "get", "team-a").output) == {}


@pytest.mark.parametrize(("args", "message"), [
    (["user", "create", "_"], "Error: subject '_' is not a valid name"),
    (["user", "create", "carol", "-ns", "a/b"], "Error: namespace 'a/b' is not a valid name"),
    (["user", "create", "carol", "-u", "nope:key"], "Error: auth key 'nope:…' does not start with a UUID"),
    (["user", "create", "carol", "-u", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:short"],
     "Error: the key of auth key '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:…' is not 64 letters and digits"),
])
def test_bad_input_is_named(tmp_path: Path, args: list[str], message: str) -> None:
    result = admin({"TRIGGERHUB_HOME": str(tmp_path / "home")}, *args)
    assert result.exit_code == 1 and result.output.startswith(message), result.output
    assert stored({"TRIGGERHUB_HOME": str(tmp_path / "home")}) == {}


def test_given_key_is_used(tmp_path: Path) -> None:
    env = {"TRIGGERHUB_HOME": str(tmp_path / "home")}
    given = "8e8b2c39-8b7e-4a3c-9d4f-0a1b2c3d4e5f:" + "k" * 64
    assert created(admin(env, "user", "create", "dave", "-u", given)) == tuple(given.split(":"))
    assert key_matches("k" * 64, stored(env)["dave@dave"].key_hash)
    taken = admin(env, "user", "create", "erin", "-u", given)
    assert (taken.exit_code, taken.output) == (1, (
        "Error: uuid 8e8b2c39-8b7e-4a3c-9d4f-0a1b2c3d4e5f is already in use; give another auth key or leave it out\n"))



def test_user_commands_print_json_under_json(store_env: dict[str, str]) -> None:
    created = CliRunner().invoke(main, ["admin", "user", "create", "carol", "-ns", "team-c", "--json"], env=store_env)
    assert created.exit_code == 0, created.output
    answer = json.loads(created.output)
    assert (answer["subject"], answer["namespace"]) == ("carol", "team-c")
    uuid = answer["auth"].split(":", 1)[0]
    blocked = CliRunner().invoke(main, ["--json", "admin", "user", "block", "carol"], env=store_env)
    assert json.loads(blocked.output) == {"blocked": [
        {"subject": "carol", "namespace": "team-c", "uuid": uuid, "blocked": True}]}
    rotated = CliRunner().invoke(main, ["admin", "user", "rotate", "carol", "--json"], env=store_env)
    (one,) = json.loads(rotated.output)
    assert (one["namespace"], one["auth"].split(":", 1)[0]) == ("team-c", uuid)
    assert one["auth"] != answer["auth"]
