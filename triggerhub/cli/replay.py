"""`triggerhub rule replay NAME`: run stored events of the rule's trigger through the rule as it is now."""

from __future__ import annotations

from typing import Any

import click

from triggerhub.cli.context import Ctx, pass_ctx, run, say


def _time(value: str | None) -> Any:
    """Digits are epoch milliseconds; anything else goes as written (ISO-8601, checked by the hub)."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


@click.command("replay")
@click.argument("name")
@click.option("--from", "from_", default=None, help="window start: ISO-8601 with a zone, or epoch ms (inclusive)")
@click.option("--to", default=None, help="window end: ISO-8601 with a zone, or epoch ms (inclusive)")
@click.option("--id", "ids", multiple=True, help="a stored event id instead of a window (repeatable)")
@click.option("--force", is_flag=True, help="run events that were replayed through this rule before again")
@pass_ctx
@run
def rule_replay(ctx: Ctx, name: str, from_: str | None, to: str | None, ids: tuple[str, ...], force: bool) -> None:
    """Run stored events of rule NAME's trigger through its current filter, transform and action,
    each event once unless --force."""
    if bool(ids) == (from_ is not None or to is not None):
        raise click.UsageError(f"give --from and --to, or --id (one or more), not {'both' if ids else 'neither'}")
    if not ids and (from_ is None or to is None):
        raise click.UsageError("a window needs both --from and --to")
    body: dict[str, Any] = {"ids": list(ids)} if ids else {"from": _time(from_), "to": _time(to)}
    if force:
        body["force"] = True
    answer = ctx.client.request("POST", ctx.client.entity_path("rules", name) + "/replay", body).body
    say(ctx, f"replayed rule {name}: {answer['events']} events, {answer['matched']} matched, {answer['run']} run, "
             f"{answer['skipped']} skipped (replayed before), {answer['filtered']} filtered out, "
             f"{answer['failed']} failed", answer)
    for error in answer.get("errors", []):
        click.echo(f"  {error}")
