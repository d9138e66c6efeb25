"""`triggerhub api ...`: API gateway routes, shaped like `wsk api` (create, get, list, delete).

All four go through OpenWhisk's route management calls (`/api/v1/web/whisk.system/apimgmt/...`),
so they work against any hub or OpenWhisk that answers them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from triggerhub.cli.context import CliFailure, Column, Ctx, emit, fitted_table, pass_ctx, run, say
from triggerhub.model import API_VERBS, ResponseType

MANAGEMENT = "web/whisk.system/apimgmt"


@click.group()
def api() -> None:
    """Expose web actions as API gateway routes."""


@api.command("create")
@click.argument("paths", nargs=-1)
@click.option("-n", "--apiname", default=None, help="friendly API name (defaults to the base path)")
@click.option("--response-type", type=click.Choice([t.value for t in ResponseType]), default="json",
              show_default=True, help="how the action's result becomes the HTTP response")
@click.option("-c", "--config-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="an OpenAPI 2 document whose operations name their actions under x-openwhisk")
@click.option("--cors/--no-cors", default=True, show_default=True, help="answer CORS preflight, add CORS headers")
@pass_ctx
@run
def api_create(ctx: Ctx, paths: tuple[str, ...], apiname: str | None, response_type: str, config_file: Path | None,
               cors: bool) -> None:
    """[BASE_PATH] API_PATH API_VERB ACTION, or --config-file FILE."""
    if config_file is not None:
        apidoc: dict[str, Any] = {"namespace": "_", "swagger": config_file.read_text(encoding="utf-8")}
    elif len(paths) in (3, 4):
        base, rel, verb, action = ("/", *paths) if len(paths) == 3 else paths
        if verb.upper() not in API_VERBS:
            raise click.BadParameter(f"'{verb}' is not an HTTP verb; use one of {', '.join(API_VERBS)}",
                                     param_hint="API_VERB")
        apidoc = {"namespace": "_", "gatewayBasePath": base, "gatewayPath": rel, "gatewayMethod": verb.upper(),
                  "action": {"name": action.lstrip("/") if action.count("/") < 2 else action, "namespace": "_"},
                  "apiName": apiname or "", "cors": cors}
    else:
        raise click.UsageError("give [BASE_PATH] API_PATH API_VERB ACTION, or --config-file FILE")
    created = ctx.client.request("POST", f"{MANAGEMENT}/createApi", {"apidoc": apidoc},
                                 query={"responsetype": response_type}).body
    document = created["apidoc"]
    if ctx.as_json:
        emit(ctx, created)
        return
    for rel_path, operations in document["paths"].items():
        for verb, operation in operations.items():
            target = operation["x-openwhisk"]
            click.echo(f"ok: created API {_join(document['basePath'], rel_path)} {verb.upper()} for action "
                       f"/{target['namespace']}/{_action(target)}")
    click.echo(created["gwApiUrl"] + _join(document["basePath"], ""))


@api.command("get")
@click.argument("base_path_or_name")
@pass_ctx
@run
def api_get(ctx: Ctx, base_path_or_name: str) -> None:
    """Print the OpenAPI document of one base path (or API name)."""
    apis = ctx.client.request("GET", f"{MANAGEMENT}/getApi", query={"basepath": base_path_or_name}).body["apis"]
    if not apis:
        raise CliFailure(f"API '{base_path_or_name}' does not exist", hint="`triggerhub api list` shows what does")
    click.echo(json.dumps(apis[0]["value"]["apidoc"], indent=2))


@api.command("list")
@click.argument("filters", nargs=-1)
@pass_ctx
@run
def api_list(ctx: Ctx, filters: tuple[str, ...]) -> None:
    """[BASE_PATH [API_PATH [API_VERB]]]: one row per route."""
    query = dict(zip(("basepath", "relpath", "operation"), filters))
    apis = ctx.client.request("GET", f"{MANAGEMENT}/getApi", query=query).body["apis"]
    rows = [row for item in apis for row in _rows(item["value"])]
    columns = [Column("url", keep=True), Column("verb", min_width=4), Column("action", min_width=10),
               Column("api name", min_width=8)]
    table = fitted_table("routes", columns, [[r["url"], r["verb"], r["action"], r["apiName"]] for r in rows])
    emit(ctx, rows, table)


@api.command("delete")
@click.argument("base_path")
@click.argument("api_path", required=False)
@click.argument("api_verb", required=False)
@pass_ctx
@run
def api_delete(ctx: Ctx, base_path: str, api_path: str | None, api_verb: str | None) -> None:
    """BASE_PATH [API_PATH [API_VERB]]: delete the matching routes."""
    query = {"basepath": base_path, "relpath": api_path, "operation": api_verb, "force": "true"}
    ctx.client.request("DELETE", f"{MANAGEMENT}/deleteApi", query=query)
    say(ctx, f"ok: deleted API {_join(base_path, api_path or '')}{' ' + api_verb.upper() if api_verb else ''}",
        {"ok": True, "basepath": base_path, "relpath": api_path, "operation": api_verb})


def _rows(value: dict[str, Any]) -> list[dict[str, str]]:
    document = value["apidoc"]
    base = document["basePath"]
    rows = []
    for rel_path, operations in document["paths"].items():
        for verb, operation in operations.items():
            target = operation["x-openwhisk"]
            rows.append({"action": f"/{target['namespace']}/{_action(target)}", "verb": verb.upper(),
                         "apiName": document["info"]["title"], "url": value["gwApiUrl"] + _join(base, rel_path)})
    return rows


def _action(target: dict[str, str]) -> str:
    return target["action"] if target["package"] == "default" else f"{target['package']}/{target['action']}"


def _join(base: str, rel: str) -> str:
    return ("" if base == "/" else "/" + base.strip("/")) + ("/" + rel.strip("/") if rel.strip("/") else "")
