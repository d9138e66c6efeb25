"""`triggerhub activation ...`: list, get, logs, result and poll activation records, as `wsk` does.

`list` shows full ids; `get`/`logs`/`result` take a full id, a unique prefix of one, or `--last`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from triggerhub.cli.client import ClientError
from triggerhub.cli.context import CliFailure, Column, Ctx, emit, fitted_table, pass_ctx, run

ID_LENGTH = 32
PREFIX_SCAN_LIMIT = 200
STATUS = {0: "success", 1: "application error", 2: "developer error", 3: "internal error"}


@click.group()
def activation() -> None:
    """Inspect activation records."""


def resolve_id(ctx: Ctx, activation_id: str | None, *, last: bool) -> str:
    """A full id from an id, a unique prefix of a recent one (a trailing `…` is ignored) or --last."""
    if last:
        latest = ctx.client.request("GET", "namespaces/_/activations", query={"limit": 1}).body
        if not latest:
            raise CliFailure("there are no activations yet, so --last names none",
                             hint="fire a trigger or invoke an action first")
        return str(latest[0]["activationId"])
    if not activation_id:
        raise click.UsageError("give an ACTIVATION_ID (or a unique prefix of one), or --last")
    wanted = activation_id.rstrip("…").rstrip(".")
    if len(wanted) >= ID_LENGTH:
        return wanted
    recent = ctx.client.request("GET", "namespaces/_/activations", query={"limit": PREFIX_SCAN_LIMIT}).body
    matches = sorted({item["activationId"] for item in recent if item["activationId"].startswith(wanted)})
    if len(matches) == 1:
        return str(matches[0])
    if matches:
        raise CliFailure(f"activation id prefix '{wanted}' matches {len(matches)} activations "
                                   f"({', '.join(matches[:3])}{', …' if len(matches) > 3 else ''}); give more of the id")
    raise ClientError(404, "The requested resource does not exist.", resource=f"activation {wanted}")


id_argument = click.argument("activation_id", required=False)
last_option = click.option("-l", "--last", is_flag=True, help="the most recent activation")


@activation.command("list")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=30, show_default=True, help="how many (at most 200)")
@click.option("--skip", type=int, default=0, help="skip the newest N")
@click.option("--since", type=int, default=None, help="only those started after this epoch ms")
@click.option("--upto", type=int, default=None, help="only those started before this epoch ms")
@pass_ctx
@run
def activation_list(ctx: Ctx, name: str | None, limit: int, skip: int, since: int | None, upto: int | None) -> None:
    """List recent activations, newest first (of NAME only, when given), with full ids."""
    items = ctx.client.request("GET", "namespaces/_/activations",
                               query={"name": name, "limit": limit, "skip": skip, "since": since, "upto": upto}).body
    columns = [Column("activation id", keep=True), Column("status", min_width=7), Column("entity", min_width=10),
               Column("start", min_width=8), Column("duration", min_width=6), Column("kind", min_width=6)]
    rows = []
    for item in items:
        kind = next((a["value"] for a in item.get("annotations", []) if a["key"] == "kind"), "trigger")
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item["start"] / 1000))
        duration = f"{item['duration']}ms" if "duration" in item else ""
        rows.append([item["activationId"], STATUS.get(item.get("statusCode", 0), "?"), item["name"], start,
                     duration, str(kind)])
    emit(ctx, items, fitted_table("activations", columns, rows))


@activation.command("get")
@id_argument
@last_option
@pass_ctx
@run
def activation_get(ctx: Ctx, activation_id: str | None, last: bool) -> None:
    """Print one activation record (response, logs, annotations) as JSON."""
    full_id = resolve_id(ctx, activation_id, last=last)
    emit(ctx, ctx.client.request("GET", f"namespaces/_/activations/{full_id}").body)


@activation.command("logs")
@id_argument
@last_option
@pass_ctx
@run
def activation_logs(ctx: Ctx, activation_id: str | None, last: bool) -> None:
    """Print the log lines an activation wrote (stdout and stderr, timestamped)."""
    full_id = resolve_id(ctx, activation_id, last=last)
    body = ctx.client.request("GET", f"namespaces/_/activations/{full_id}/logs").body
    if ctx.as_json:
        emit(ctx, body)
    else:
        for line in body.get("logs", []):
            click.echo(line)


@activation.command("result")
@id_argument
@last_option
@pass_ctx
@run
def activation_result(ctx: Ctx, activation_id: str | None, last: bool) -> None:
    """Print the result an activation returned."""
    full_id = resolve_id(ctx, activation_id, last=last)
    emit(ctx, ctx.client.request("GET", f"namespaces/_/activations/{full_id}/result").body.get("result"))


@activation.command("poll")
@click.argument("name", required=False)
@click.option("--exit", "exit_after_s", type=int, default=0, help="stop after N seconds (0: never)")
@click.option("--since-seconds", type=int, default=0, help="start with activations of the last N seconds")
@click.option("--interval-s", type=float, default=1.0, show_default=True, help="seconds between two looks")
@pass_ctx
@run
def activation_poll(ctx: Ctx, name: str | None, exit_after_s: int, since_seconds: int, interval_s: float) -> None:
    """Stream new activations and their logs as they arrive (JSON Lines under --json)."""
    since = int(time.time() * 1000) - since_seconds * 1000
    seen: set[str] = set()
    deadline = time.monotonic() + exit_after_s if exit_after_s else None
    if not ctx.as_json:
        click.echo("Enter Ctrl-c to exit.\nPolling for activation logs")
    try:
        while deadline is None or time.monotonic() < deadline:
            items = ctx.client.request("GET", "namespaces/_/activations",
                                       query={"name": name, "since": since, "docs": True, "limit": 200}).body
            for item in reversed(items):
                if item["activationId"] not in seen:
                    seen.add(item["activationId"])
                    _print_polled(ctx, item)
            time.sleep(interval_s if deadline is None else max(0.0, min(interval_s, deadline - time.monotonic())))
    except KeyboardInterrupt:  # Ctrl-c is how a poll ends: not an error
        return


def _print_polled(ctx: Ctx, item: dict[str, Any]) -> None:
    if ctx.as_json:
        click.echo(json.dumps(item))
        return
    click.echo(f"\nActivation: '{item['name']}' ({item['activationId']})")
    for line in item.get("logs", []):
        click.echo(line)
