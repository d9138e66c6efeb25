"""`triggerhub package ...`: packages and bindings."""

from __future__ import annotations

from typing import Any

import click

from triggerhub.cli.context import (
    Ctx, add_get_command, annotation_option, key_values, listing, param_option, pass_ctx, run, say,
)


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
    """Create package NAME (--shared yes: readable by every namespace)."""
    body: dict[str, Any] = {"parameters": key_values(params), "annotations": key_values(annotations)}
    if shared:
        body["publish"] = shared == "yes"
    ctx.client.request("PUT", ctx.client.entity_path("packages", name), body)
    say(ctx, f"ok: created package {name}", {"ok": True, "package": name})


@package.command("bind")
@click.argument("source")
@click.argument("name")
@param_option
@pass_ctx
@run
def package_bind(ctx: Ctx, source: str, name: str, params: Any) -> None:
    """Bind package SOURCE (/namespace/package) as NAME with your -p parameters."""
    parts = source.strip("/").split("/")
    binding = {"namespace": parts[0], "name": parts[1]} if len(parts) == 2 else {"namespace": "_", "name": parts[0]}
    ctx.client.request("PUT", ctx.client.entity_path("packages", name), {"binding": binding, "parameters": key_values(params)})
    say(ctx, f"ok: created binding {name}", {"ok": True, "package": name})


add_get_command(package, "packages", help_text="Print package NAME (actions, parameters, binding) as JSON.")


@package.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True)
@pass_ctx
@run
def package_delete(ctx: Ctx, name: str, force: bool) -> None:
    """Delete package NAME (--force: with its actions)."""
    ctx.client.request("DELETE", ctx.client.entity_path("packages", name), query={"force": force} if force else None)
    say(ctx, f"ok: deleted package {name}", {"ok": True, "package": name})


@package.command("list")
@click.argument("namespace", required=False)
@pass_ctx
@run
def package_list(ctx: Ctx, namespace: str | None) -> None:
    """List the packages of your namespace (or of NAMESPACE: its shared ones)."""
    ns = (namespace or "_").strip("/")
    listing(ctx, "packages", ctx.client.request("GET", f"namespaces/{ns}/packages").body)
