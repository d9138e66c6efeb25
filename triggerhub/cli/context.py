"""What every `wsk`-shaped command shares: the client context, output, option and error helpers."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from triggerhub.cli.client import ClientError, WhiskClient
from triggerhub.manifests.client import ClientTls
from triggerhub.rules.match import compile_routing

console = Console()
KIND_BY_SUFFIX = {".js": "nodejs:default", ".py": "python:default"}


class Ctx:
    def __init__(self, apihost: str | None, auth: str | None, as_json: bool, *, trust: ClientTls | None = None) -> None:
        self._apihost, self._auth, self.as_json = apihost, auth, as_json
        self.trust = trust or ClientTls.from_settings()
        self._client: WhiskClient | None = None
        self.local_hub = local_hub  # `triggerhub deploy` with no hub configured runs one in-process
        self.check_routing = check_routing  # manifests check rule filters/transforms with the hub's compiler


    @property
    def client(self) -> WhiskClient:
        if self._client is None:
            self._client = WhiskClient.from_settings(self._apihost, self._auth, trust=self.trust)
        return self._client


pass_ctx = click.make_pass_decorator(Ctx)


check_routing = compile_routing  # a manifest rule's `filter` or `transform`, compiled as the hub does


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


def listing(ctx: Ctx, collection: str, items: list[dict[str, Any]], extra: str | None = None) -> None:
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
