"""`triggerhub alarms preview`: when would an alarm feed fire? Computed locally, no hub needed."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from triggerhub.errors import ApiError
from triggerhub.feeds import alarms as alarm_feeds
from triggerhub.model import now_ms


@click.group()
def alarms() -> None:
    """Alarm (cron, interval, once) helpers."""


@alarms.command("preview")
@click.option("--cron", default=None, help="5 or 6 fields, e.g. '*/5 * * * *'")
@click.option("--minutes", type=int, default=None, help="interval in minutes instead of --cron")
@click.option("--date", default=None, help="a one-off date (ISO-8601 or epoch ms) instead of --cron")
@click.option("--timezone", default=None, help="IANA zone for --cron, e.g. Europe/Berlin (default UTC)")
@click.option("--start-date", default=None)
@click.option("--stop-date", default=None)
@click.option("--strict", is_flag=True, help="--cron fires on the second, without the per-trigger offset")
@click.option("--trigger", "trigger_name", default="/guest/preview", show_default=True,
              help="the trigger, /namespace/name or name in guest: a non-strict cron's offset depends on it")
@click.option("--next", "count", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def preview(click_ctx: click.Context, cron: str | None, minutes: int | None, date: str | None, timezone: str | None,
            start_date: str | None, stop_date: str | None, strict: bool, trigger_name: str, count: int,
            as_json: bool) -> None:
    """Print the next instants an alarm with these parameters fires (DST changes called out).

    Without --strict, a 5-field --cron fires a fixed 0-59 s after each instant, the offset derived
    from the trigger's name (OpenWhisk spreads load this way); the output says which offset."""
    as_json = as_json or bool(getattr(click_ctx.find_object(object), "as_json", False))
    chosen = [name for name, value in (("--cron", cron), ("--minutes", minutes), ("--date", date)) if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --cron, --minutes or --date")
    params: dict[str, Any] = {}
    if cron is not None:
        kind, params["cron"] = alarm_feeds.AlarmKind.ALARM, cron
    elif minutes is not None:
        kind, params["minutes"] = alarm_feeds.AlarmKind.INTERVAL, minutes
    else:
        kind, params["date"] = alarm_feeds.AlarmKind.ONCE, date
    for key, value in (("timezone", timezone), ("startDate", start_date), ("stopDate", stop_date)):
        if value is not None:
            params[key] = value
    if strict:
        params["strict"] = True
    trigger = trigger_name if trigger_name.startswith("/") else f"/guest/{trigger_name}"
    now = now_ms()
    try:
        config = alarm_feeds.parse_alarm_config(kind, trigger, params, now, require_future=False)
    except ApiError as exc:
        raise click.ClickException(exc.message) from exc
    rows = alarm_feeds.preview(config, next=count, now_ms=now)
    offset_s = config.offset_ms() // 1000
    if as_json:
        click.echo(json.dumps([{"instant": r.instant_ms, "utc": r.utc, "local": r.local, "note": r.note,
                                "offsetS": offset_s} for r in rows], indent=2))
        return
    if offset_s:
        click.echo(f"each instant + {offset_s} s: the fixed offset of trigger {trigger} (not strict: OpenWhisk "
                   "spreads alarms over the minute); --strict fires on the second, --trigger shows another's offset")
    table = Table(title=f"next {len(rows)} firings")
    for column in ("utc", "local", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.utc, row.local, row.note)
    Console().print(table)
