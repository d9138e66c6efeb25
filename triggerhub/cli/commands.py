"""`wsk`-shaped commands: action, trigger, rule, package, activation (talk to a hub over REST)."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from pathlib import Path
from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from triggerhub.cli.client import ClientError, WhiskClient

console = Console()
KIND_BY_SUFFIX = {".js": "nodejs:default", ".py": "python:default"}


class Ctx:
    def __init__(self, apihost: str | None, auth: str | None, as_json: bool) -> None:
        self._apihost, self._auth, self.as_json = apihost, auth, as_json
        self._client: WhiskClient | None = None
        self.local_hub = local_hub  # `triggerhub deploy` with no hub configured runs one in-process


    @property
    def client(self) -> WhiskClient:
        if self._client is None:
            self._client = WhiskClient.from_settings(self._apihost, self._auth)
        return self._client


pass_ctx = click.make_pass_decorator(Ctx)


@contextlib.asynccontextmanager
async def local_hub() -> AsyncIterator[tuple[str, str]]:
    """A hub in this process on an ephemeral loopback port, over $TRIGGERHUB_HOME's store."""
    from triggerhub.cli.compose import running_hub
    from triggerhub.config import load_config

    async with running_hub(load_config(overrides={"PORT": 0, "DEPLOY_EXAMPLES": False})) as hub:
        yield hub.apihost, hub.guest_auth


def emit(ctx: Ctx, value: Any, table: Table | None = None) -> None:
    if table is not None and not ctx.as_json:
        console.print(table)
    else:
        click.echo(json.dumps(value, indent=2))


def key_values(pairs: tuple[tuple[str, str], ...], param_file: str | None = None) -> list[dict[str, Any]]:
    values: dict[str, Any] = {}
    if param_file:
        values.update(json.loads(Path(param_file).read_text()))
    for key, raw in pairs:
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return [{"key": k, "value": v} for k, v in values.items()]


def run(fn: Any) -> Any:
    """Turn client errors into a one-line message and exit status 1 (as wsk does)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            detail = f" (code {exc.body.get('code')})" if isinstance(exc.body, dict) and exc.body.get("code") else ""
            click.echo(f"error: {exc.message}{detail}", err=True)
            sys.exit(1 if exc.status else 2)
    return wrapper


param_option = click.option("-p", "--param", "params", multiple=True, type=(str, str), help="parameter KEY VALUE (JSON or text)")
annotation_option = click.option("-a", "--annotation", "annotations", multiple=True, type=(str, str), help="annotation KEY VALUE")
param_file_option = click.option("-P", "--param-file", default=None, help="JSON file of parameters")


def _listing(ctx: Ctx, collection: str, items: list[dict[str, Any]], extra: str | None = None) -> None:
    table = Table(title=collection)
    table.add_column("name")
    if extra:
        table.add_column(extra)
    for item in items:
        row = [f"/{item['namespace']}/{item['name']}"]
        if extra:
            row.append(str(item.get(extra, "")))
        table.add_row(*row)
    emit(ctx, items, table)


# ------------------------------------------------------------------------------- actions


@click.group()
def action() -> None:
    """Create, invoke and manage actions."""


def _action_body(source: str | None, kind: str | None, main: str | None, sequence: str | None, docker: str | None,
                 params: tuple[tuple[str, str], ...], param_file: str | None, annotations: tuple[tuple[str, str], ...],
                 timeout: int | None, memory: int | None, logsize: int | None, web: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if sequence:
        body["exec"] = {"kind": "sequence", "components": [c.strip() for c in sequence.split(",") if c.strip()]}
    elif docker:
        body["exec"] = {"kind": "blackbox", "image": docker}
        if source:
            body["exec"]["code"] = base64.b64encode(Path(source).read_bytes()).decode()
    elif source:
        path = Path(source)
        if not path.is_file():
            raise click.BadParameter(f"'{source}' is not a file; give the action's source file or zip", param_hint="FILE")
        resolved_kind = kind or KIND_BY_SUFFIX.get(path.suffix)
        if resolved_kind is None:
            raise click.BadParameter(f"cannot infer the kind of '{source}'; pass --kind python:default or nodejs:default")
        code = base64.b64encode(path.read_bytes()).decode() if path.suffix == ".zip" else path.read_text()
        body["exec"] = {"kind": resolved_kind, "code": code}
        if main:
            body["exec"]["main"] = main
    if params or param_file:
        body["parameters"] = key_values(params, param_file)
    notes = key_values(annotations)
    if web is not None:
        flag = web.lower()
        notes += [{"key": "web-export", "value": flag in ("true", "yes", "raw")},
                  {"key": "raw-http", "value": flag == "raw"}, {"key": "final", "value": flag in ("true", "yes", "raw")}]
    if notes:
        body["annotations"] = notes
    limits = {k: v for k, v in (("timeout", timeout), ("memory", memory), ("logs", logsize)) if v is not None}
    if limits:
        body["limits"] = limits
    return body


def _action_options(fn: Any) -> Any:
    for option in reversed([
        click.argument("name"), click.argument("source", required=False),
        click.option("--kind", default=None), click.option("--main", default=None),
        click.option("--sequence", default=None, help="comma-separated action names"),
        click.option("--docker", default=None, help="blackbox image"),
        param_option, param_file_option, annotation_option,
        click.option("-t", "--timeout", type=int, default=None, help="ms"),
        click.option("-m", "--memory", type=int, default=None, help="MB"),
        click.option("-l", "--logsize", type=int, default=None, help="MB"),
        click.option("--web", default=None, help="true|false|raw"),
    ]):
        fn = option(fn)
    return fn


@action.command("create")
@_action_options
@pass_ctx
@run
def action_create(ctx: Ctx, name: str, source: str | None, **options: Any) -> None:
    _put_action(ctx, name, source, False, **options)


@action.command("update")
@_action_options
@pass_ctx
@run
def action_update(ctx: Ctx, name: str, source: str | None, **options: Any) -> None:
    _put_action(ctx, name, source, True, **options)


def _put_action(ctx: Ctx, name: str, source: str | None, overwrite: bool, **o: Any) -> None:
    body = _action_body(source, o["kind"], o["main"], o["sequence"], o["docker"], o["params"], o["param_file"],
                        o["annotations"], o["timeout"], o["memory"], o["logsize"], o["web"])
    result = ctx.client.request("PUT", ctx.client.entity_path("actions", name), body, {"overwrite": overwrite}).body
    if ctx.as_json:
        emit(ctx, result)
    else:
        click.echo(f"ok: {'updated' if overwrite else 'created'} action {name}")


@action.command("get")
@click.argument("name")
@click.option("--summary", is_flag=True)
@pass_ctx
@run
def action_get(ctx: Ctx, name: str, summary: bool) -> None:
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("actions", name), query={"code": not summary}).body)


@action.command("delete")
@click.argument("name")
@pass_ctx
@run
def action_delete(ctx: Ctx, name: str) -> None:
    ctx.client.request("DELETE", ctx.client.entity_path("actions", name))
    click.echo(f"ok: deleted action {name}")


@action.command("list")
@click.argument("package", required=False)
@click.option("--limit", type=int, default=30)
@click.option("--skip", type=int, default=0)
@pass_ctx
@run
def action_list(ctx: Ctx, package: str | None, limit: int, skip: int) -> None:
    path = f"namespaces/_/actions/{package}/" if package else "namespaces/_/actions"
    _listing(ctx, "actions", ctx.client.request("GET", path, query={"limit": limit, "skip": skip}).body)


@action.command("invoke")
@click.argument("name")
@param_option
@param_file_option
@click.option("-b", "--blocking", is_flag=True)
@click.option("-r", "--result", "result_only", is_flag=True, help="blocking; print only the result")
@pass_ctx
@run
def action_invoke(ctx: Ctx, name: str, params: tuple[tuple[str, str], ...], param_file: str | None,
                  blocking: bool, result_only: bool) -> None:
    payload = {p["key"]: p["value"] for p in key_values(params, param_file)}
    blocking = blocking or result_only
    response = ctx.client.request("POST", ctx.client.entity_path("actions", name), payload,
                                  {"blocking": blocking, "result": result_only})
    body = response.body
    if response.status == 202:
        click.echo(json.dumps(body) if ctx.as_json else f"ok: invoked {name} with id {body['activationId']}")
        return
    click.echo(json.dumps(body) if result_only else json.dumps(body, indent=2))
    if response.status >= 400:
        sys.exit(1)


# ------------------------------------------------------------------------------- triggers


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
    _put_trigger(ctx, name, params, param_file, annotations, feed, overwrite=False)


@trigger.command("update")
@click.argument("name")
@param_option
@param_file_option
@annotation_option
@pass_ctx
@run
def trigger_update(ctx: Ctx, name: str, params: Any, param_file: str | None, annotations: Any) -> None:
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
    click.echo(f"ok: {'updated' if overwrite else 'created'} trigger {name}")


@trigger.command("get")
@click.argument("name")
@pass_ctx
@run
def trigger_get(ctx: Ctx, name: str) -> None:
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("triggers", name)).body)


@trigger.command("delete")
@click.argument("name")
@pass_ctx
@run
def trigger_delete(ctx: Ctx, name: str) -> None:
    path = ctx.client.entity_path("triggers", name)
    current = ctx.client.request("GET", path).body
    feed = next((a["value"] for a in current.get("annotations", []) if a["key"] == "feed"), None)
    if feed:
        try:
            _feed_invoke(ctx, feed, name, "DELETE", [])
        except ClientError as exc:
            click.echo(f"warning: {exc.message}", err=True)
    ctx.client.request("DELETE", path)
    click.echo(f"ok: deleted trigger {name}")


@trigger.command("list")
@click.option("--limit", type=int, default=30)
@pass_ctx
@run
def trigger_list(ctx: Ctx, limit: int) -> None:
    _listing(ctx, "triggers", ctx.client.request("GET", "namespaces/_/triggers", query={"limit": limit}).body)


@trigger.command("fire")
@click.argument("name")
@param_option
@param_file_option
@pass_ctx
@run
def trigger_fire(ctx: Ctx, name: str, params: Any, param_file: str | None) -> None:
    payload = {p["key"]: p["value"] for p in key_values(params, param_file)}
    response = ctx.client.request("POST", ctx.client.entity_path("triggers", name), payload)
    if response.status == 204:
        click.echo(f"ok: trigger {name} has no active rules; nothing fired")
    else:
        click.echo(json.dumps(response.body) if ctx.as_json else f"ok: triggered /_/{name} with id {response.body['activationId']}")


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
    ctx.client.request("PUT", ctx.client.entity_path("rules", name), {"trigger": trigger_name, "action": action_name})
    click.echo(f"ok: created rule {name}")


@rule.command("update")
@click.argument("name")
@click.argument("trigger_name")
@click.argument("action_name")
@pass_ctx
@run
def rule_update(ctx: Ctx, name: str, trigger_name: str, action_name: str) -> None:
    ctx.client.request("PUT", ctx.client.entity_path("rules", name), {"trigger": trigger_name, "action": action_name},
                       {"overwrite": True})
    click.echo(f"ok: updated rule {name}")


def _rule_status(ctx: Ctx, name: str, status: str) -> None:
    ctx.client.request("POST", ctx.client.entity_path("rules", name), {"status": status})
    click.echo(f"ok: {'enabled' if status == 'active' else 'disabled'} rule {name}")


@rule.command("enable")
@click.argument("name")
@pass_ctx
@run
def rule_enable(ctx: Ctx, name: str) -> None:
    _rule_status(ctx, name, "active")


@rule.command("disable")
@click.argument("name")
@pass_ctx
@run
def rule_disable(ctx: Ctx, name: str) -> None:
    _rule_status(ctx, name, "inactive")


@rule.command("get")
@click.argument("name")
@pass_ctx
@run
def rule_get(ctx: Ctx, name: str) -> None:
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("rules", name)).body)


@rule.command("delete")
@click.argument("name")
@pass_ctx
@run
def rule_delete(ctx: Ctx, name: str) -> None:
    ctx.client.request("DELETE", ctx.client.entity_path("rules", name))
    click.echo(f"ok: deleted rule {name}")


@rule.command("list")
@pass_ctx
@run
def rule_list(ctx: Ctx) -> None:
    _listing(ctx, "rules", ctx.client.request("GET", "namespaces/_/rules").body, "status")


# ------------------------------------------------------------------------------- packages


@click.group()
def package() -> None:
    """Group actions and bind shared packages."""


@package.command("create")
@click.argument("name")
@param_option
@annotation_option
@click.option("--shared", type=click.Choice(["yes", "no"]), default=None)
@pass_ctx
@run
def package_create(ctx: Ctx, name: str, params: Any, annotations: Any, shared: str | None) -> None:
    body: dict[str, Any] = {"parameters": key_values(params), "annotations": key_values(annotations)}
    if shared:
        body["publish"] = shared == "yes"
    ctx.client.request("PUT", ctx.client.entity_path("packages", name), body)
    click.echo(f"ok: created package {name}")


@package.command("bind")
@click.argument("source")
@click.argument("name")
@param_option
@pass_ctx
@run
def package_bind(ctx: Ctx, source: str, name: str, params: Any) -> None:
    parts = source.strip("/").split("/")
    binding = {"namespace": parts[0], "name": parts[1]} if len(parts) == 2 else {"namespace": "_", "name": parts[0]}
    ctx.client.request("PUT", ctx.client.entity_path("packages", name), {"binding": binding, "parameters": key_values(params)})
    click.echo(f"ok: created binding {name}")


@package.command("get")
@click.argument("name")
@pass_ctx
@run
def package_get(ctx: Ctx, name: str) -> None:
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("packages", name)).body)


@package.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True)
@pass_ctx
@run
def package_delete(ctx: Ctx, name: str, force: bool) -> None:
    ctx.client.request("DELETE", ctx.client.entity_path("packages", name), query={"force": force} if force else None)
    click.echo(f"ok: deleted package {name}")


@package.command("list")
@click.argument("namespace", required=False)
@pass_ctx
@run
def package_list(ctx: Ctx, namespace: str | None) -> None:
    ns = (namespace or "_").strip("/")
    _listing(ctx, "packages", ctx.client.request("GET", f"namespaces/{ns}/packages").body)


# ------------------------------------------------------------------------------- activations


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
