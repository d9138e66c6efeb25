"""`triggerhub status`: one screen on the health of every component of a running hub.

Reads `GET /api/v1/status` (see triggerhub/api/status.py); exits 1 unless every component is ok.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from triggerhub.cli.client import ClientError
from triggerhub.cli.context import Column, Ctx, console, emit, fitted_table, pass_ctx, run

_DETAIL_SKIP = {"status", "probe_ms", "feeds"}


@click.command()
@pass_ctx
@run
def status(ctx: Ctx) -> None:
    """Health of the hub: store, streams (Kafka lag when distributed), container pool, feeds."""
    try:
        body = ctx.client.request("GET", "status").body
    except ClientError as exc:
        if exc.status != 503 or not isinstance(exc.body, dict) or "components" not in exc.body:
            raise
        body = exc.body
    if ctx.as_json:
        emit(ctx, body)
    else:
        _render(ctx, body)
    if body["status"] != "ok":
        sys.exit(1)


def _render(ctx: Ctx, body: dict[str, Any]) -> None:
    click.echo(f"hub {ctx.client.apihost}: {body['status']} ({body['mode']} mode, version {body['version']}, "
               f"namespace {body['namespace']})")
    rows = [[name, component["status"], _detail(component)] for name, component in body["components"].items()]
    console.print(fitted_table("components", [Column("component", keep=True), Column("status", keep=True),
                                              Column("detail", min_width=10)], rows))
    feeds = body["components"].get("feeds", {}).get("feeds", [])
    if feeds:
        feed_rows = [[f["trigger"], f["status"], f"{f['received']}/{f['fired']}/{f['rejected']}", f["feed"],
                      f.get("reason", ""), ", ".join(f"{k}={v}" for k, v in f.get("gauges", {}).items())]
                     for f in feeds]
        console.print(fitted_table("feeds", [Column("trigger", keep=True), Column("status", min_width=6),
                                             Column("recv/fired/rej", min_width=8), Column("feed", min_width=10),
                                             Column("reason", min_width=6), Column("source", min_width=6)],
                                   feed_rows))


def _detail(component: dict[str, Any]) -> str:
    parts = [f"{key}={value}" for key, value in component.items()
             if key not in _DETAIL_SKIP and value not in ("", None) and not isinstance(value, (list, dict))]
    return ", ".join(parts)
