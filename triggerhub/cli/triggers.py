"""`triggerhub trigger ...` and `triggerhub rule ...` (feeds follow wsk: PUT, then the feed's CREATE)."""

from __future__ import annotations

import json
from typing import Any

import click

from triggerhub.cli.client import ClientError
from triggerhub.cli.context import (
    Ctx, annotation_option, emit, key_values, listing, param_file_option, param_option, pass_ctx, run, say,
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
@pass_ctx
@run
def trigger_create(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any, feed: str | None) -> None:
    """Create trigger NAME; with --feed, also start the feed with the -p parameters."""
    _put_trigger(ctx, name, params, param_file, annotations, feed, overwrite=False)


@trigger.command("update")
@click.argument("name")
@param_option
@param_file_option
@annotation_option
@pass_ctx
@run
def trigger_update(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any) -> None:
    """Replace the parameters and annotations of trigger NAME."""
    _put_trigger(ctx, name, params, param_file, annotations, None, overwrite=True)


def _put_trigger(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any, feed: str | None,
                 overwrite: bool) -> None:
    parameters = key_values(params, param_file)
    notes = key_values(annotations)
    body: dict[str, Any] = {}
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


@trigger.command("get")
@click.argument("name")
@pass_ctx
@run
def trigger_get(ctx: Ctx, name: str) -> None:
    """Print trigger NAME (parameters, annotations, rules) as JSON."""
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("triggers", name)).body)


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


@rule.command("create")
@click.argument("name")
@click.argument("trigger_name")
@click.argument("action_name")
@pass_ctx
@run
def rule_create(ctx: Ctx, name: str, trigger_name: str, action_name: str) -> None:
    """Create rule NAME: events of TRIGGER_NAME run ACTION_NAME."""
    ctx.client.request("PUT", ctx.client.entity_path("rules", name), {"trigger": trigger_name, "action": action_name})
    say(ctx, f"ok: created rule {name}", {"ok": True, "rule": name})


@rule.command("update")
@click.argument("name")
@click.argument("trigger_name")
@click.argument("action_name")
@pass_ctx
@run
def rule_update(ctx: Ctx, name: str, trigger_name: str, action_name: str) -> None:
    """Point rule NAME at TRIGGER_NAME and ACTION_NAME."""
    ctx.client.request("PUT", ctx.client.entity_path("rules", name), {"trigger": trigger_name, "action": action_name},
                       {"overwrite": True})
    say(ctx, f"ok: updated rule {name}", {"ok": True, "rule": name})


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


@rule.command("get")
@click.argument("name")
@pass_ctx
@run
def rule_get(ctx: Ctx, name: str) -> None:
    """Print rule NAME (trigger, action, status) as JSON."""
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("rules", name)).body)


@rule.command("delete")
@click.argument("name")
@pass_ctx
@run
def rule_delete(ctx: Ctx, name: str) -> None:
    """Delete rule NAME."""
    ctx.client.request("DELETE", ctx.client.entity_path("rules", name))
    say(ctx, f"ok: deleted rule {name}", {"ok": True, "rule": name})


@rule.command("list")
@pass_ctx
@run
def rule_list(ctx: Ctx) -> None:
    """List the rules of your namespace with their status."""
    listing(ctx, "rules", ctx.client.request("GET", "namespaces/_/rules").body, "status")
