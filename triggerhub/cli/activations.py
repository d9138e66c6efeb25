"""`triggerhub activation ...`: list, get, logs, result and poll activation records."""

from __future__ import annotations

import time

import click
from rich.table import Table

from triggerhub.cli.context import Ctx, emit, pass_ctx, run


@click.group()
def activation() -> None:
    """Inspect activation records."""


@activation.command("list")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=30)
@click.option("--skip", type=int, default=0)
@click.option("--since", type=int, default=None)
@click.option("--upto", type=int, default=None)
@pass_ctx
@run
def activation_list(ctx: Ctx, name: str | None, limit: int, skip: int, since: int | None, upto: int | None) -> None:
    items = ctx.client.request("GET", "namespaces/_/activations",
                               query={"name": name, "limit": limit, "skip": skip, "since": since, "upto": upto}).body
    table = Table(title="activations")
    for column in ("start", "activation id", "kind", "status", "duration", "entity"):
        table.add_column(column)
    for item in items:
        kind = next((a["value"] for a in item.get("annotations", []) if a["key"] == "kind"), "trigger")
        status = {0: "success", 1: "application error", 2: "developer error", 3: "internal error"}.get(item.get("statusCode", 0))
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item["start"] / 1000))
        table.add_row(start, item["activationId"], str(kind), str(status), f"{item.get('duration', '')}ms" if "duration" in item else "",
                      f"{item['name']}:{item.get('version', '')}")
    emit(ctx, items, table)


@activation.command("get")
@click.argument("activation_id")
@pass_ctx
@run
def activation_get(ctx: Ctx, activation_id: str) -> None:
    emit(ctx, ctx.client.request("GET", f"namespaces/_/activations/{activation_id}").body)


@activation.command("logs")
@click.argument("activation_id")
@pass_ctx
@run
def activation_logs(ctx: Ctx, activation_id: str) -> None:
    body = ctx.client.request("GET", f"namespaces/_/activations/{activation_id}/logs").body
    if ctx.as_json:
        emit(ctx, body)
    else:
        for line in body.get("logs", []):
            click.echo(line)


@activation.command("result")
@click.argument("activation_id")
@pass_ctx
@run
def activation_result(ctx: Ctx, activation_id: str) -> None:
    emit(ctx, ctx.client.request("GET", f"namespaces/_/activations/{activation_id}/result").body.get("result"))


@activation.command("poll")
@click.argument("name", required=False)
@click.option("--exit", "exit_after_s", type=int, default=0, help="stop after N seconds (0: never)")
@pass_ctx
@run
def activation_poll(ctx: Ctx, name: str | None, exit_after_s: int) -> None:
    """Print new activations and their logs as they arrive."""
    since = int(time.time() * 1000)
    seen: set[str] = set()
    deadline = time.monotonic() + exit_after_s if exit_after_s else None
    click.echo("Enter Ctrl-c to exit.")
    while deadline is None or time.monotonic() < deadline:
        items = ctx.client.request("GET", "namespaces/_/activations",
                                   query={"name": name, "since": since, "docs": True, "limit": 200}).body
        for item in reversed(items):
            if item["activationId"] in seen:
                continue
            seen.add(item["activationId"])
            click.echo(f"\nActivation: '{item['name']}' ({item['activationId']})")
            for line in item.get("logs", []):
                click.echo(line)
        time.sleep(1.0)
