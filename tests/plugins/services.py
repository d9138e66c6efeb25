"""Fixtures for external services (Mosquitto, PostgreSQL, Kafka) on 127.0.0.1.

scripts/services/<name>.sh start each service and record how to reach it in .cache/services.env
(scripts/test starts them all); a variable of the same name in the environment wins. A service
that is missing or does not answer fails the test when CI is set, and skips it with the reason
otherwise.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICES_ENV_PATH = PROJECT_ROOT / ".cache" / "services.env"

PG_URL_KEY = "TRIGGERHUB_TEST_PG_URL"
MQTT_KEY = "TRIGGERHUB_TEST_MQTT"
KAFKA_KEY = "TRIGGERHUB_TEST_KAFKA"

PROBE_TIMEOUT_S = 5.0

T = TypeVar("T")


def read_services_env(path: Path = SERVICES_ENV_PATH) -> dict[str, str]:
    """KEY=VALUE lines written by the service scripts; blank lines and # comments ignored."""
    if not path.exists():
        return {}
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            settings[key.strip()] = value.strip()
    return settings


def service_setting(key: str) -> str | None:
    """The environment's value for key, else the one in .cache/services.env, else None."""
    return os.environ.get(key) or read_services_env().get(key)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def service_missing(reason: str) -> NoReturn:
    """Fail under CI (a required service did not start), skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def not_configured(key: str, script: str) -> str:
    return (
        f"{key} is set neither in the environment nor in {SERVICES_ENV_PATH}; "
        f"start the service with scripts/services/{script} start (scripts/test does this)"
    )


def parse_host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        service_missing(f"{key}={value!r} is not host:port; rerun the service script to rewrite it")
    return host, int(port)


def run_in_thread(make_coro: Callable[[], Awaitable[T]]) -> T:
    """Runs a coroutine to completion on a private loop in a worker thread.

    Sync fixtures must not touch the loop pytest-asyncio gives each test, so each database chore
    gets its own loop in its own thread.
    """
    outcome: dict[str, T | BaseException] = {}

    async def main() -> T:
        return await make_coro()

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="services-fixture")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


# ---------------------------------------------------------------- PostgreSQL


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """postgresql+asyncpg://... (SQLAlchemy) -> postgresql://... (asyncpg.connect)."""
    parts = urlsplit(sqlalchemy_url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def describe_pg(url: str) -> str:
    """host:port/database of a URL, without the password (never put secrets in messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}{parts.path}"


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=PROBE_TIMEOUT_S)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database(admin_url: str, prefix: str) -> str:
    """Creates an empty database with a unique name and returns its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    run_in_thread(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"'))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    run_in_thread(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the service's own `triggerhub` database, checked with a query; used to create others."""
    url = service_setting(PG_URL_KEY)
    if not url:
        service_missing(not_configured(PG_URL_KEY, "postgres.sh"))
    try:
        run_in_thread(lambda: _execute(url, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        service_missing(
            f"PostgreSQL at {describe_pg(url)} does not answer ({type(exc).__name__}: {exc}); "
            "run scripts/services/postgres.sh start"
        )
    return url


@pytest.fixture(scope="session")
def postgres_url(pg_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL (postgresql+asyncpg://) of a database created empty for this test session."""
    url = create_database(pg_admin_url, "th_session")
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a database created empty for this one test and dropped after it."""
    url = create_database(pg_admin_url, "th_test")
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def pg_dsn(fresh_pg_url: str) -> str:
    """The same database as `fresh_pg_url`, as the DSN asyncpg connects with."""
    return asyncpg_dsn(fresh_pg_url)


# ---------------------------------------------------------------- Mosquitto

# MQTT 3.1.1 CONNECT with an empty client id and a clean session, then the CONNACK it must get.
_MQTT_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_MQTT_CONNACK_ACCEPTED = bytes([0x20, 2, 0, 0])
_MQTT_DISCONNECT = bytes([0xE0, 0])


def mqtt_answers(host: str, port: int) -> str | None:
    """None when the broker accepts an MQTT connection, else why not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(_MQTT_CONNECT)
            reply = sock.recv(4)
            sock.sendall(_MQTT_DISCONNECT)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if reply != _MQTT_CONNACK_ACCEPTED:
        return f"CONNECT answered with {reply.hex()} instead of CONNACK accepted (20020000)"
    return None


@pytest.fixture(scope="session")
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of the Mosquitto broker (anonymous, persistence on)."""
    value = service_setting(MQTT_KEY)
    if not value:
        service_missing(not_configured(MQTT_KEY, "mosquitto.sh"))
    host, port = parse_host_port(value, MQTT_KEY)
    problem = mqtt_answers(host, port)
    if problem is not None:
        service_missing(
            f"Mosquitto at {host}:{port} does not answer ({problem}); "
            "run scripts/services/mosquitto.sh start"
        )
    return host, port


# ---------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap address "host:port" of the single-node KRaft Kafka broker."""
    value = service_setting(KAFKA_KEY)
    if not value:
        service_missing(not_configured(KAFKA_KEY, "kafka.sh"))
    host, port = parse_host_port(value, KAFKA_KEY)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        service_missing(
            f"Kafka at {host}:{port} does not accept connections ({type(exc).__name__}: {exc}); "
            "run scripts/services/kafka.sh start"
        )
    return f"{host}:{port}"
