"""`triggerhub action ...`: create, update, get, list, delete and invoke actions."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import click

from triggerhub.cli.context import (
    Ctx, KIND_BY_SUFFIX, add_delete_command, annotation_option, emit, key_values, listing, param_file_option,
    param_option, pass_ctx, run, say,
)


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
    """Create action NAME from SOURCE (.js, .py or .zip), --sequence or --docker."""
    _put_action(ctx, name, source, overwrite=False, **options)


@action.command("update")
@_action_options
@pass_ctx
@run
def action_update(ctx: Ctx, name: str, source: str | None, **options: Any) -> None:
    """Change action NAME (code, parameters, limits); creates it when absent."""
    _put_action(ctx, name, source, overwrite=True, **options)


def _put_action(ctx: Ctx, name: str, source: str | None, *, overwrite: bool, **o: Any) -> None:
    body = _action_body(source, o["kind"], o["main"], o["sequence"], o["docker"], o["params"], o["param_file"],
                        o["annotations"], o["timeout"], o["memory"], o["logsize"], o["web"])
    result = ctx.client.request("PUT", ctx.client.entity_path("actions", name), body, {"overwrite": overwrite}).body
    say(ctx, f"ok: {'updated' if overwrite else 'created'} action {name}", result)


@action.command("get")
@click.argument("name")
@click.option("--summary", is_flag=True)
@pass_ctx
@run
def action_get(ctx: Ctx, name: str, summary: bool) -> None:
    """Print action NAME as JSON (--summary: without its code)."""
    emit(ctx, ctx.client.request("GET", ctx.client.entity_path("actions", name), query={"code": not summary}).body)


add_delete_command(action, "actions", "action")


@action.command("list")
@click.argument("package", required=False)
@click.option("--limit", type=int, default=30)
@click.option("--skip", type=int, default=0)
@pass_ctx
@run
def action_list(ctx: Ctx, package: str | None, limit: int, skip: int) -> None:
    """List the actions of your namespace (or of PACKAGE)."""
    path = f"namespaces/_/actions/{package}/" if package else "namespaces/_/actions"
    listing(ctx, "actions", ctx.client.request("GET", path, query={"limit": limit, "skip": skip}).body)


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
    """Run action NAME; -b waits for the record, -r prints only its result."""
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
