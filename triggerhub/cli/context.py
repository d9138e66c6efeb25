"""What every `wsk`-shaped command shares: the client context, output, option and error helpers."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
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
    def __init__(self, apihost: str | None = None, auth: str | None = None, *, as_json: bool = False,
                 trust: ClientTls | None = None) -> None:
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


def say(ctx: Ctx, text: str, value: Any) -> None:
    """A confirmation line, or under --json the value it confirms."""
    click.echo(json.dumps(value, indent=2) if ctx.as_json else text)


def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Ctx).as_json = True


json_option = click.Option(["--json"], is_flag=True, expose_value=False, is_eager=True, callback=set_json,
                           help="print JSON only (before or after the subcommand)")


def add_json_option(command: click.Command) -> None:
    """Give every command `--json`, so it works after the subcommand as well as before."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_json_option(sub)
    if not any("--json" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(json_option)


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


class CliFailure(click.ClickException):
    """One readable line, plus a hint when there is something to do; JSON under --json."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 code: Any = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.hint, self.status, self.code, self.exit_code = hint, status, code, exit_code

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("error", self.message), ("status", self.status), ("code", self.code),
                                  ("hint", self.hint)) if v is not None}

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


def failure(exc: ClientError, words: list[str]) -> CliFailure:
    """Name the resource the hub's message is about and say what to do next; the hub's own
    OpenWhisk message stays word for word. `words` is the command below `triggerhub`."""
    code = exc.body.get("code") if isinstance(exc.body, dict) else None
    message = f"{exc.resource}: {exc.message}" if exc.resource else exc.message
    group = words[0] if words else ""
    hint = None
    if exc.status == 409 and len(words) > 1 and words[1] == "create":
        hint = f"it exists already: use `triggerhub {group} update` to change it"
    elif exc.status == 404 and group in {"action", "trigger", "rule", "package", "activation"}:
        hint = f"`triggerhub {group} list` shows what exists"
    elif exc.status in (401, 403):
        hint = "check the key: --auth uuid:key, TRIGGERHUB_AUTH, or `triggerhub auth` on the hub's machine"
    return CliFailure(message + (f" (code {code})" if code else ""), hint=hint, status=exc.status or None, code=code,
                      exit_code=1 if exc.status else 2)  # as before: 2 when no hub answered


def run(fn: Any) -> Any:
    """Turn client errors into a one-line message and exit status 1 (as wsk does)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            words: list[str] = []
            context: click.Context | None = click.get_current_context()
            while context is not None and context.parent is not None:
                words.insert(0, context.info_name or "")
                context = context.parent
            raise failure(exc, words) from exc
    return wrapper


param_option = click.option("-p", "--param", "params", multiple=True, type=(str, str), help="parameter KEY VALUE (JSON or text)")
annotation_option = click.option("-a", "--annotation", "annotations", multiple=True, type=(str, str), help="annotation KEY VALUE")
param_file_option = click.option("-P", "--param-file", default=None, help="JSON file of parameters")


def add_get_command(group: click.Group, collection: str, *, help_text: str) -> None:
    """`<group> get NAME`: prints the entity NAME of `collection` ("triggers") as JSON."""
    @group.command("get", help=help_text)
    @click.argument("name")
    @pass_ctx
    @run
    def get(ctx: Ctx, name: str) -> None:
        emit(ctx, ctx.client.request("GET", ctx.client.entity_path(collection, name)).body)


def add_delete_command(group: click.Group, collection: str, noun: str) -> None:
    """`<group> delete NAME`: deletes the entity NAME of `collection`; says `ok: deleted <noun> NAME`."""
    @group.command("delete", help=f"Delete {noun} NAME.")
    @click.argument("name")
    @pass_ctx
    @run
    def delete(ctx: Ctx, name: str) -> None:
        ctx.client.request("DELETE", ctx.client.entity_path(collection, name))
        say(ctx, f"ok: deleted {noun} {name}", {"ok": True, noun: name})


def listing(ctx: Ctx, collection: str, items: list[dict[str, Any]], extra: str | None = None) -> None:
    columns = [Column("name", keep=True)] + ([Column(extra)] if extra else [])
    rows = [[f"/{item['namespace']}/{item['name']}", *([str(item.get(extra, ""))] if extra else [])] for item in items]
    emit(ctx, items, fitted_table(collection, columns, rows))


@dataclass(frozen=True, slots=True)
class Column:
    """A table column; `keep` columns (ids, names) are never truncated. Columns are listed from
    most to least important: the last ones shrink first, then go."""

    header: str
    keep: bool = False
    min_width: int = 8


def fitted_table(title: str, columns: list[Column], rows: list[list[str]], *, width: int | None = None) -> Table:
    """A rich table no wider than the terminal (rich reads COLUMNS; 80 when not a terminal)."""
    width = width or console.width
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    widths = dict(enumerate(natural))

    def total() -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    for index in reversed(range(len(columns))):
        if total() <= width:
            break
        if columns[index].keep:
            continue
        excess = total() - width
        widths[index] = max(min(natural[index], columns[index].min_width), natural[index] - excess)
        if total() > width and len(shown) > 1:
            shown.remove(index)
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1), show_edge=False, title_justify="left")
    for i in shown:
        table.add_column(columns[i].header, width=widths[i], no_wrap=True, overflow="ellipsis",
                         min_width=widths[i] if columns[i].keep else None)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
