"""`triggerhub trigger ...` and `triggerhub rule ...` (feeds follow wsk: PUT, then the feed's CREATE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from triggerhub.cli.client import ClientError
from triggerhub.cli.context import (
    Column, Ctx, add_delete_command, add_get_command, annotation_option, emit, fitted_table, key_values, listing,
    param_file_option, param_option, pass_ctx, run, say,
)


@click.group()
def trigger() -> None:
    """Create, fire and manage triggers (with feeds)."""


def _feed_invoke(ctx: Ctx, feed: str, trigger_name: str, event: str, params: list[dict[str, Any]]) -> Any:
    payload = {p["key"]: p["value"] for p in params}
    payload.update({"lifecycleEvent": event, "triggerName": f"/_/{trigger_name}", "authKey": ctx.client.auth})
    response = ctx.client.request("POST", ctx.client.entity_path("actions", feed), payload, {"blocking": True})
    result = response.body.get("response", {}).get("result") if isinstance(response.body, dict) else None
    if response.status >= 400:
        error = result.get("error") if isinstance(result, dict) else result
        raise ClientError(response.status, f"feed {feed} {event} failed: {error}", response.body)
    return result


@trigger.command("create")
@click.argument("name")
@param_option
@param_file_option
@annotation_option
@click.option("-f", "--feed", default=None, help="feed action, e.g. /whisk.system/alarms/alarm")
@click.option("--derive", default=None, help='derived trigger (JSON), e.g. \'{"kind": "absence", "from": "heartbeat", '
                                              '"key": "$.data.deviceId", "forS": 120}\'')
@pass_ctx
@run
def trigger_create(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any, feed: str | None,
                   derive: str | None) -> None:
    """Create trigger NAME; with --feed, also start the feed with the -p parameters; with --derive, a
    trigger fired from other triggers' events (README: correlation and absence)."""
    declared = _json_value(derive, None, "derive")
    _put_trigger(ctx, name, params, param_file, annotations, feed, overwrite=False,
                 extra={"derive": declared} if declared is not None else {})


@trigger.command("update")
@click.argument("name")
@param_option
@param_file_option
@annotation_option
@click.option("--derive", default=None, help="replace the derived trigger's declaration (JSON; null removes it)")
@pass_ctx
@run
def trigger_update(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any,
                   derive: str | None) -> None:
    """Replace the parameters and annotations of trigger NAME (and its derive, when given)."""
    _put_trigger(ctx, name, params, param_file, annotations, None, overwrite=True,
                 extra={"derive": _json_value(derive, None, "derive")} if derive is not None else {})


def _put_trigger(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any, feed: str | None,
                 *, overwrite: bool, extra: dict[str, Any] | None = None) -> None:
    """`extra`: more keys of the body (`derive`)."""
    parameters = key_values(params, param_file)
    notes = key_values(annotations)
    body: dict[str, Any] = dict(extra or {})
    if feed:
        notes.append({"key": "feed", "value": feed})
    else:
        body["parameters"] = parameters
    if notes:
        body["annotations"] = notes
    path = ctx.client.entity_path("triggers", name)
    ctx.client.request("PUT", path, body, {"overwrite": overwrite})
    if feed:
        try:
            _feed_invoke(ctx, feed, name, "CREATE", parameters)
        except ClientError:
            ctx.client.request("DELETE", path)  # roll back, as wsk does
            raise
    say(ctx, f"ok: {'updated' if overwrite else 'created'} trigger {name}", {"ok": True, "trigger": name})


add_get_command(trigger, "triggers", help_text="Print trigger NAME (parameters, annotations, rules) as JSON.")


@trigger.command("delete")
@click.argument("name")
@pass_ctx
@run
def trigger_delete(ctx: Ctx, name: str) -> None:
    """Delete trigger NAME, stopping its feed first."""
    path = ctx.client.entity_path("triggers", name)
    current = ctx.client.request("GET", path).body
    feed = next((a["value"] for a in current.get("annotations", []) if a["key"] == "feed"), None)
    if feed:
        try:
            _feed_invoke(ctx, feed, name, "DELETE", [])
        except ClientError as exc:
            click.echo(f"warning: {exc.message}", err=True)
    ctx.client.request("DELETE", path)
    say(ctx, f"ok: deleted trigger {name}", {"ok": True, "trigger": name})


@trigger.command("list")
@click.option("--limit", type=int, default=30)
@pass_ctx
@run
def trigger_list(ctx: Ctx, limit: int) -> None:
    """List the triggers of your namespace."""
    listing(ctx, "triggers", ctx.client.request("GET", "namespaces/_/triggers", query={"limit": limit}).body)


@trigger.command("fire")
@click.argument("name")
@param_option
@param_file_option
@pass_ctx
@run
def trigger_fire(ctx: Ctx, name: str, params: Any, param_file: str | None) -> None:
    """Fire trigger NAME with the -p parameters; its active rules run their actions."""
    payload = {p["key"]: p["value"] for p in key_values(params, param_file)}
    response = ctx.client.request("POST", ctx.client.entity_path("triggers", name), payload)
    if response.status == 204:
        say(ctx, f"ok: trigger {name} has no active rules; nothing fired", {})
        return
    if ctx.as_json:
        click.echo(json.dumps(response.body))
        return
    qualified = name if name.startswith("/") else f"/{ctx.client.current_namespace()}/{name}"
    click.echo(f"ok: triggered {qualified} with id {response.body['activationId']}")


# ------------------------------------------------------------------------------- rules


@click.group()
def rule() -> None:
    """Connect triggers to actions."""


def _json_value(text: str | None, file: str | None, option: str) -> Any:
    """The JSON of `--OPTION '{...}'` or `--OPTION-file F`; None when neither was given."""
    if text is not None and file is not None:
        raise click.UsageError(f"give --{option} or --{option}-file, not both")
    if file is not None:
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint=f"--{option}-file") from exc
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = file or "the option value"
        raise click.BadParameter(f"{where} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                                 param_hint=f"--{option}") from exc


def _rule_body(trigger_name: str, action_name: str, filter_: str | None, filter_file: str | None,
               transform: str | None, transform_file: str | None, shadow: bool | None = None,
               retry: str | None = None, dead_letter: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"trigger": trigger_name, "action": action_name}
    if shadow is not None:
        body["shadow"] = shadow
    for key, value in (("filter", _json_value(filter_, filter_file, "filter")),
                       ("transform", _json_value(transform, transform_file, "transform")),
                       ("retry", _json_value(retry, None, "retry"))):
        if value is not None:
            body[key] = value
    if dead_letter is not None:
        body["deadLetter"] = {"trigger": dead_letter}
    return body


def routing_options(fn: Any) -> Any:
    for option in reversed((
        click.option("--filter", "filter_", default=None, help="event pattern (JSON) the event must match"),
        click.option("--filter-file", default=None, help="file holding the event pattern (JSON)"),
        click.option("--transform", default=None, help="JSON template of the action's parameters"),
        click.option("--transform-file", default=None, help="file holding the transform template (JSON)"),
        click.option("--shadow/--no-shadow", default=None,
                     help="a shadow rule matches, counts and records what it would run, and runs nothing"),
        click.option("--retry", default=None, help='retry policy (JSON), e.g. {"maxAttempts": 3, "initialDelayMs": 200}'),
        click.option("--dead-letter", default=None, help="trigger fired for each event the rule gives up on"),
    )):
        fn = option(fn)
    return fn


def _add_put_rule_command(command: str, *, overwrite: bool, help_text: str) -> None:
    """`rule create` and `rule update`: the same PUT, with overwrite for update."""
    @rule.command(command, help=help_text)
    @click.argument("name")
    @click.argument("trigger_name")
    @click.argument("action_name")
    @routing_options
    @pass_ctx
    @run
    def put_rule(ctx: Ctx, name: str, trigger_name: str, action_name: str, filter_: str | None,
                 filter_file: str | None, transform: str | None, transform_file: str | None,
                 shadow: bool | None, retry: str | None, dead_letter: str | None) -> None:
        body = _rule_body(trigger_name, action_name, filter_, filter_file, transform, transform_file, shadow, retry,
                          dead_letter)
        ctx.client.request("PUT", ctx.client.entity_path("rules", name), body, {"overwrite": True} if overwrite else None)
        say(ctx, f"ok: {'updated' if overwrite else 'created'} rule {name}", {"ok": True, "rule": name})


_add_put_rule_command("create", overwrite=False,
                      help_text="Create rule NAME: events of TRIGGER_NAME run ACTION_NAME (when --filter matches).")
_add_put_rule_command("update", overwrite=True, help_text="Point rule NAME at TRIGGER_NAME and ACTION_NAME; without "
                      "--filter/--transform/--shadow/--retry/--dead-letter it keeps the ones it has.")


@rule.command("explain")
@click.argument("name")
@click.option("--event", "event_file", default=None,
              help='file holding an event: {"data": {...}, "source"?, "type"?, "subject"?} (JSON)')
@click.option("--event-id", default=None, help="id of a stored event (for an API fire, its activation id)")
@pass_ctx
@run
def rule_explain(ctx: Ctx, name: str, event_file: str | None, event_id: str | None) -> None:
    """Why rule NAME matches an event or not, clause by clause; nothing runs."""
    if (event_file is None) == (event_id is None):
        raise click.UsageError("give exactly one of --event FILE or --event-id ID")
    body = {"eventId": event_id} if event_id is not None else _json_value(None, event_file, "event")
    trace = ctx.client.request("POST", ctx.client.entity_path("rules", name) + "/explain", body).body
    if ctx.as_json:
        click.echo(json.dumps(trace, indent=2))
        return
    click.echo(explain_text(name, trace))


def explain_text(name: str, trace: dict[str, Any]) -> str:
    lines = [f"rule {name}: {'MATCH' if trace['matched'] else 'NO MATCH'}"]
    lines += _clause_lines(trace["clauses"], "  ")
    lines.append(f"  params: {json.dumps(trace.get('params'))}")
    if trace.get("error"):
        lines.append(f"  transform error: {trace['error']}")
    if "event" in trace:
        event = trace["event"]
        lines.append(f"event {event['id']} on trigger {event['trigger']}:")
        if trace.get("reason"):
            lines.append(f"  {trace['reason']}")
        for item in trace.get("rules", []):
            detail = f" {item['activationId']}" if item.get("activationId") else f" ({item['error']})" if item.get("error") else ""
            lines.append(f"  rule {item['rule']} [{item['status']}] -> {item['action']}: {item['outcome']}{detail}")
            lines += _clause_lines(item["clauses"], "    ")
    return "\n".join(lines)


def _clause_lines(clauses: list[dict[str, Any]], indent: str) -> list[str]:
    out = []
    for clause in clauses:
        found = json.dumps(clause["value"]) if clause.get("present", True) else "(absent)"
        mark = "ok  " if clause["matched"] else "FAIL"
        out.append(f"{indent}{mark} {clause['path']} = {found}  test {json.dumps(clause['test'])}")
    return out


def _rule_status(ctx: Ctx, name: str, status: str) -> None:
    ctx.client.request("POST", ctx.client.entity_path("rules", name), {"status": status})
    say(ctx, f"ok: {'enabled' if status == 'active' else 'disabled'} rule {name}", {"ok": True, "rule": name, "status": status})


@rule.command("enable")
@click.argument("name")
@pass_ctx
@run
def rule_enable(ctx: Ctx, name: str) -> None:
    """Let rule NAME run its action again."""
    _rule_status(ctx, name, "active")


@rule.command("disable")
@click.argument("name")
@pass_ctx
@run
def rule_disable(ctx: Ctx, name: str) -> None:
    """Stop rule NAME from running its action (events are still recorded)."""
    _rule_status(ctx, name, "inactive")


add_get_command(rule, "rules", help_text="Print rule NAME (trigger, action, status) as JSON.")
add_delete_command(rule, "rules", "rule")


@rule.command("deadletters")
@click.argument("name")
@click.option("--limit", type=click.IntRange(0, 200), default=30, help="letters to show (0: 200)")
@click.option("--skip", type=click.IntRange(min=0), default=0, help="letters to skip, oldest first")
@click.option("--count", is_flag=True, help="print only how many letters the rule has")
@pass_ctx
@run
def rule_deadletters(ctx: Ctx, name: str, limit: int, skip: int, count: bool) -> None:
    """List the events rule NAME gave up on (oldest first): event, last activation, reason."""
    path = ctx.client.entity_path("rules", name) + "/deadletters"
    if count:
        counted = ctx.client.request("GET", path, None, {"count": True}).body
        say(ctx, f"{counted['deadletters']} dead letters", counted)
        return
    letters = ctx.client.request("GET", path, None, {"limit": limit, "skip": skip}).body
    columns = [Column("id", keep=True), Column("last activation", keep=True), Column("reason"), Column("attempts"),
               Column("event")]
    rows = [[item["id"], item["activationId"], item["reason"], str(item["attempts"]), item["eventId"]] for item in letters]
    emit(ctx, letters, fitted_table("dead letters", columns, rows))


@rule.command("redrive")
@click.argument("name")
@click.option("--id", "ids", multiple=True, help="a dead letter to redrive (repeatable; default: all)")
@click.option("--action", default=None, help="run this action instead of the rule's")
@pass_ctx
@run
def rule_redrive(ctx: Ctx, name: str, ids: tuple[str, ...], action: str | None) -> None:
    """Run rule NAME's dead letters again; a letter leaves the list when its new run succeeds."""
    body: dict[str, Any] = {}
    if ids:
        body["ids"] = list(ids)
    if action is not None:
        body["action"] = action
    answer = ctx.client.request("POST", ctx.client.entity_path("rules", name) + "/deadletters/redrive", body).body
    skipped = answer.get("skipped") or []
    note = f"; skipped {len(skipped)} being redriven already" if skipped else ""
    say(ctx, f"ok: redrove {len(answer['activationIds'])} dead letters of rule {name}{note}", answer)


@rule.command("list")
@pass_ctx
@run
def rule_list(ctx: Ctx) -> None:
    """List the rules of your namespace with their status."""
    listing(ctx, "rules", ctx.client.request("GET", "namespaces/_/rules").body, "status")
