"""`triggerhub admin`: namespaces, keys and limits, changed in the store directly (like `wskadmin`).

The store is the one the hub uses: SQLite under --home/$TRIGGERHUB_HOME, or $TRIGGERHUB_STORE_URL.
A new key is printed once and only its digest is kept. Running hubs see every change within
TRIGGERHUB_AUTH_CACHE_S seconds (default 5).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from triggerhub.cli.context import Ctx, emit, say
from triggerhub.config import HubConfig, load_config
from triggerhub.engine import tenants
from triggerhub.errors import BadRequest, TriggerhubError
from triggerhub.model import Subject
from triggerhub.rules import retry_policy
from triggerhub.store.base import Store
from triggerhub.store.sql import SqlStore

T = TypeVar("T")

home_option = click.option("--home", type=click.Path(path_type=Path), default=None,
                           help="the hub's state directory ($TRIGGERHUB_HOME); ignored for the store "
                                "when $TRIGGERHUB_STORE_URL is set")
namespace_option = click.option("-ns", "--namespace", default=None, help="only this namespace")


def _on_store(home: Path | None, change: Callable[[Store, HubConfig], Awaitable[T]]) -> T:
    try:
        config = load_config(overrides={"HOME": home})
    except TriggerhubError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run() -> T:
        if not config.store.url:
            config.home.mkdir(parents=True, exist_ok=True)
        store = SqlStore(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
        await store.open()
        try:
            return await change(store, config)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except TriggerhubError as exc:
        raise click.ClickException(str(exc)) from exc


def _describe(subject: Subject) -> str:
    state = " (blocked)" if subject.blocked else ""
    return f"{subject.subject} in namespace {subject.namespace}, uuid {subject.uuid}{state}"


@click.group()
def admin() -> None:
    """Namespaces, keys and limits, changed in the hub's store directly (like OpenWhisk's wskadmin)."""


@admin.group()
def user() -> None:
    """Subjects: a uuid:key credential for a namespace."""


@user.command("create")
@click.argument("subject")
@namespace_option
@click.option("-u", "--auth", "auth_key", default=None, help="use this uuid:key instead of a new random one")
@home_option
@click.pass_obj
def user_create(ctx: Ctx, subject: str, namespace: str | None, auth_key: str | None, home: Path | None) -> None:
    """Give SUBJECT a key for namespace -ns (default: a namespace named SUBJECT); print uuid:key once."""
    identity = _on_store(home, lambda store, _: tenants.create_user(store, subject, namespace or subject,
                                                                    auth_key=auth_key))
    say(ctx, identity.auth_key, {"subject": subject, "namespace": identity.namespace, "auth": identity.auth_key})


@user.command("rotate")
@click.argument("subject")
@namespace_option
@home_option
@click.pass_obj
def user_rotate(ctx: Ctx, subject: str, namespace: str | None, home: Path | None) -> None:
    """Replace SUBJECT's key (uuid kept; the old key stops working); print the new uuid:key."""
    rotated = _on_store(home, lambda store, config: tenants.rotate_key(store, subject, namespace, home=config.home))
    if ctx.as_json:
        emit(ctx, [{"subject": subject, "namespace": i.namespace, "auth": i.auth_key} for i in rotated])
        return
    for identity in rotated:
        click.echo(identity.auth_key if len(rotated) == 1 else f"{identity.namespace}\t{identity.auth_key}")


@user.command("delete")
@click.argument("subject")
@namespace_option
@home_option
@click.pass_obj
def user_delete(ctx: Ctx, subject: str, namespace: str | None, home: Path | None) -> None:
    """Remove SUBJECT's keys (of namespace -ns only, if given). The namespace's entities stay."""
    _changed(ctx, "deleted", _on_store(home, lambda store, _: tenants.delete_user(store, subject, namespace)))


@user.command("block")
@click.argument("subjects", nargs=-1, required=True)
@namespace_option
@home_option
@click.pass_obj
def user_block(ctx: Ctx, subjects: tuple[str, ...], namespace: str | None, home: Path | None) -> None:
    """Stop SUBJECTS' keys from authenticating (answered 401) until unblocked."""
    _changed(ctx, "blocked", _on_store(home, lambda store, _: tenants.set_blocked(store, subjects, namespace,
                                                                                  blocked=True)))


@user.command("unblock")
@click.argument("subjects", nargs=-1, required=True)
@namespace_option
@home_option
@click.pass_obj
def user_unblock(ctx: Ctx, subjects: tuple[str, ...], namespace: str | None, home: Path | None) -> None:
    """Let blocked SUBJECTS' keys authenticate again."""
    _changed(ctx, "unblocked", _on_store(home, lambda store, _: tenants.set_blocked(store, subjects, namespace,
                                                                                    blocked=False)))


def _changed(ctx: Ctx, verb: str, changed: Any) -> None:
    """One line per subject changed, or under --json the list of their descriptions."""
    if ctx.as_json:
        emit(ctx, {verb: [{"subject": one.subject, "namespace": one.namespace, "uuid": one.uuid,
                           "blocked": one.blocked} for one in changed]})
        return
    for one in changed:
        click.echo(f"{verb} {_describe(one)}")


@user.command("list")
@click.argument("namespace", required=False)
@home_option
@click.pass_obj
def user_list(ctx: Ctx, namespace: str | None, home: Path | None) -> None:
    """The subjects (of NAMESPACE, if given): names, uuids and state; keys are never shown."""
    found = _on_store(home, lambda store, _: tenants.list_users(store, namespace))
    rows: list[dict[str, Any]] = [{"subject": s.subject, "namespace": s.namespace, "uuid": s.uuid, "blocked": s.blocked,
             "limits": tenants.shown_limits(s.limits)} for s in found]
    table = Table(title="subjects")
    for column in ("subject", "namespace", "uuid", "blocked"):
        table.add_column(column)
    for one in found:
        table.add_row(one.subject, one.namespace, one.uuid, "yes" if one.blocked else "no")
    emit(ctx, rows, table)


@admin.group()
def limits() -> None:
    """Per-namespace throttles; a key not set uses the hub's TRIGGERHUB_* default."""


@limits.command("set")
@click.argument("namespace")
@click.option("--invocationsPerMinute", "invocations_per_minute", type=click.IntRange(min=0), default=None)
@click.option("--concurrentInvocations", "concurrent_invocations", type=click.IntRange(min=0), default=None)
@click.option("--firesPerMinute", "fires_per_minute", type=click.IntRange(min=0), default=None)
@click.option("--retryMaxAttempts", "retry_max_attempts", type=click.IntRange(min=1), default=None,
              help="default retry policy of rules without `retry`: attempts, the first included")
@click.option("--retryInitialDelayMs", "retry_initial_delay_ms", type=click.IntRange(min=0), default=None)
@click.option("--retryMaxDelayMs", "retry_max_delay_ms", type=click.IntRange(min=0), default=None)
@click.option("--retryMaxEventAgeS", "retry_max_event_age_s", type=click.IntRange(min=1), default=None)
@click.option("--retryOn", "retry_on", default=None, metavar="OUTCOMES",
              help="outcomes that retry, comma-separated: 'application error,internal error,timeout' (the "
                   "default), 'developer error'")
@home_option
def limits_set(namespace: str, invocations_per_minute: int | None, concurrent_invocations: int | None,
               fires_per_minute: int | None, retry_max_attempts: int | None, retry_initial_delay_ms: int | None,
               retry_max_delay_ms: int | None, retry_max_event_age_s: int | None, retry_on: str | None,
               home: Path | None) -> None:
    """Set NAMESPACE's limits (the others keep their value); print them all."""
    try:
        retry_on_mask = None if retry_on is None else retry_policy.on_mask(retry_on, where="--retryOn")
    except BadRequest as exc:
        raise click.UsageError(exc.message) from None
    given: dict[str, Any] = {"invocationsPerMinute": invocations_per_minute,
                             "concurrentInvocations": concurrent_invocations, "firesPerMinute": fires_per_minute,
                             "retryMaxAttempts": retry_max_attempts, "retryInitialDelayMs": retry_initial_delay_ms,
                             "retryMaxDelayMs": retry_max_delay_ms, "retryMaxEventAgeS": retry_max_event_age_s,
                             "retryOn": retry_on_mask}
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        raise click.UsageError("give at least one of --invocationsPerMinute, --concurrentInvocations, "
                               "--firesPerMinute, --retryMaxAttempts (and the other --retry* options)")
    merged = _on_store(home, lambda store, _: tenants.set_limits(store, namespace, values))
    click.echo(json.dumps(tenants.shown_limits(merged), sort_keys=True))


@limits.command("get")
@click.argument("namespace")
@home_option
def limits_get(namespace: str, home: Path | None) -> None:
    """Print the limits set for NAMESPACE as JSON ({} when it uses the defaults)."""
    limits = _on_store(home, lambda store, _: tenants.get_limits(store, namespace))
    click.echo(json.dumps(tenants.shown_limits(limits), sort_keys=True))


@limits.command("delete")
@click.argument("namespace")
@home_option
def limits_delete(namespace: str, home: Path | None) -> None:
    """Drop NAMESPACE's limits: the hub's defaults apply again."""
    _on_store(home, lambda store, _: tenants.delete_limits(store, namespace))
    click.echo(f"limits of namespace {namespace} removed; the hub's defaults apply")
