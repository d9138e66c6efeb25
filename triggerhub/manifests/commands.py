"""click commands `deploy`, `undeploy`, `validate`; triggerhub/cli adds them to the main group.

The hub is found from the command's --apihost/--auth (or TRIGGERHUB_APIHOST/TRIGGERHUB_AUTH),
then the main group's --apihost/--auth, then ~/.triggerhubprops (written by `triggerhub up`;
TRIGGERHUB_PROPS moves it), then ~/.wskprops (APIHOST=, AUTH=; WSK_CONFIG_FILE moves it), then
the local hub: http://127.0.0.1:3233 with the guest key from $TRIGGERHUB_HOME/credentials.json.
When even that is missing, a CLI may offer an in-process hub as
`ctx.obj.local_hub`: a factory of async context managers yielding (apihost, auth), and
`ctx.obj.check_routing`: the compiler of rule filters and transforms (manifests.entities.RoutingCheck).
This package never imports the API itself (layer rule).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import click

from triggerhub import errors
from triggerhub.config import client_settings
from triggerhub.manifests.apply import Progress
from triggerhub.manifests.client import ClientTls, HttpWhiskClient
from triggerhub.manifests.deployer import Outcome, deploy_manifest, undeploy_manifest, validate_manifest
from triggerhub.manifests.loader import DEFAULT_DEPLOYMENTS, find_manifest

DEFAULT_APIHOST = "http://127.0.0.1:3233"
LocalHub = Callable[[], AbstractAsyncContextManager[tuple[str, str]]]


def read_wskprops(path: Path | None = None) -> dict[str, str]:
    path = path or client_settings().wskprops
    props: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                props[key.strip()] = value.strip()
    return props


def _triggerhub_props() -> Path:
    """What `triggerhub up` writes (see triggerhub/cli/props.py): read before ~/.wskprops."""
    return client_settings().props


def local_guest_auth() -> str | None:
    path = client_settings().home / "credentials.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["guest"])
    except (OSError, ValueError, KeyError):
        return None


def hub_settings(ctx: click.Context, apihost: str | None, auth: str | None) -> tuple[str | None, str | None]:
    """(apihost, auth) by the precedence in the module docstring; None where nothing says."""
    root = ctx.find_root().params
    apihost = apihost or root.get("apihost")
    auth = auth or root.get("auth")
    for props in (read_wskprops(_triggerhub_props()), read_wskprops()):
        if not (apihost and auth):
            apihost, auth = apihost or props.get("APIHOST"), auth or props.get("AUTH")
    if not auth:
        auth = local_guest_auth()
        apihost = apihost or (DEFAULT_APIHOST if auth else None)
    return apihost, auth


@asynccontextmanager
async def connect(apihost: str | None, auth: str | None, local_hub: LocalHub | None, *,
                  trust: ClientTls | None = None) -> AsyncIterator[HttpWhiskClient]:
    if apihost and auth:
        async with HttpWhiskClient(apihost, auth, trust=trust) as client:
            yield client
        return
    if local_hub is None:
        raise errors.ConfigError("no hub to deploy to: pass --apihost and --auth, set TRIGGERHUB_APIHOST and "
                                 "TRIGGERHUB_AUTH, write APIHOST= and AUTH= to ~/.wskprops, or start a local hub "
                                 "with `triggerhub up`")
    # The in-process hub on loopback: its certificate (when TRIGGERHUB_TLS_* are set) needs no check.
    async with (local_hub() as (local_host, local_auth),
                HttpWhiskClient(local_host, local_auth, trust=ClientTls(insecure=True)) as client):
        yield client


def _inputs(manifest: Path | None, deployment: Path | None, project_path: Path) -> tuple[Path, Path | None]:
    manifest = manifest or find_manifest(project_path)
    if deployment is None:
        deployment = next((project_path / n for n in DEFAULT_DEPLOYMENTS if (project_path / n).is_file()), None)
    return manifest, deployment


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("-m", "--manifest", type=click.Path(path_type=Path, dir_okay=False), help="manifest file"),
        click.option("-d", "--deployment", type=click.Path(path_type=Path, dir_okay=False),
                     help="deployment file overlaying inputs"),
        click.option("-p", "--project-path", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
                     show_default=True, help="folder holding manifest.yaml / deployment.yaml"),
        click.option("--param", "params", nargs=2, multiple=True, metavar="KEY VALUE",
                     help="input value overriding deployment and manifest"),
        click.option("--managed/--unmanaged", default=None,
                     help="tag entities with whisk-managed (default: when the project has a name)"),
        click.option("-s", "--strict", is_flag=True,
                     help="treat every warning (ignored inputs, retired runtimes, mistyped values) as an error"),
    ]):
        command = option(command)
    return command


def _hub_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--auth", "-u", envvar="TRIGGERHUB_AUTH", help="uuid:key")(command)
    command = click.option("--apihost", envvar="TRIGGERHUB_APIHOST", help="http://host:port")(command)
    command = click.option("--dry-run", is_flag=True, help="print the plan, change nothing")(command)
    return command


def _as_json() -> bool:
    """`--json` of the triggerhub CLI, before or after the command (its context object says)."""
    return bool(getattr(click.get_current_context().obj, "as_json", False))


def _report(outcome: Outcome, *, dry_run: bool) -> None:
    if _as_json():
        click.echo(json.dumps({"plan": outcome.plan.render(), "applied": list(outcome.applied), "dryRun": dry_run,
                               "warnings": [str(w) for w in outcome.project.warnings]}, indent=2))
        return
    for warning in outcome.project.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in outcome.plan.render():
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing was changed")


@contextmanager
def _progress() -> Iterator[Progress]:
    """Step n/N of a deploy on a terminal's stderr (a rich spinner); nothing when not a terminal."""
    from rich.console import Console

    with Console(stderr=True).status("connecting") as status:
        yield lambda number, total, what: status.update(f"[{number}/{total}] {what}")


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except errors.ManifestError as exc:
        if _as_json():
            click.echo(json.dumps({"error": "the manifest has problems", "problems": [str(p) for p in exc.problems]},
                                  indent=2))
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise click.exceptions.Exit(1) from exc
    except errors.TriggerhubError as exc:
        if _as_json():
            click.echo(json.dumps({"error": str(exc)}, indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from exc


class _Operation(Protocol):
    """deploy_manifest or undeploy_manifest, as the commands call them."""

    def __call__(self, client: HttpWhiskClient, manifest: Path, *, deployment: Path | None,
                 params: Mapping[str, str], managed: bool | None, dry_run: bool, strict: bool,
                 on_step: Progress) -> Awaitable[Outcome]: ...


def _apply(ctx: click.Context, operation: _Operation, *, manifest: Path | None, deployment: Path | None,
           project_path: Path, params: tuple[tuple[str, str], ...], managed: bool | None, strict: bool,
           dry_run: bool, apihost: str | None, auth: str | None) -> None:
    """Run `operation` on the hub the options name (with a progress line) and print its outcome."""

    async def main() -> Outcome:
        files = _inputs(manifest, deployment, project_path)
        async with connect(*hub_settings(ctx, apihost, auth), getattr(ctx.obj, "local_hub", None),
                           trust=getattr(ctx.obj, "trust", None)) as client:
            return await operation(client, files[0], deployment=files[1], params=dict(params), on_step=step,
                                   managed=managed, dry_run=dry_run, strict=strict)

    with _progress() as step:
        outcome = _run(main())
    _report(outcome, dry_run=dry_run)


@click.command("deploy")
@_common
@_hub_options
@click.pass_context
def deploy(ctx: click.Context, manifest: Path | None, deployment: Path | None, project_path: Path,
           params: tuple[tuple[str, str], ...], managed: bool | None, strict: bool, dry_run: bool,
           apihost: str | None, auth: str | None) -> None:
    """Create or update what a wskdeploy manifest declares."""
    operation = functools.partial(deploy_manifest, check_routing=getattr(ctx.obj, "check_routing", None))
    _apply(ctx, operation, manifest=manifest, deployment=deployment, project_path=project_path, params=params,
           managed=managed, strict=strict, dry_run=dry_run, apihost=apihost, auth=auth)


@click.command("undeploy")
@_common
@_hub_options
@click.pass_context
def undeploy(ctx: click.Context, manifest: Path | None, deployment: Path | None, project_path: Path,
             params: tuple[tuple[str, str], ...], managed: bool | None, strict: bool, dry_run: bool,
             apihost: str | None, auth: str | None) -> None:
    """Delete what a manifest's project created (managed) or what it declares."""
    _apply(ctx, undeploy_manifest, manifest=manifest, deployment=deployment, project_path=project_path,
           params=params, managed=managed, strict=strict, dry_run=dry_run, apihost=apihost, auth=auth)


@click.command("validate")
@_common
@click.pass_context
def validate(ctx: click.Context, manifest: Path | None, deployment: Path | None, project_path: Path,
             params: tuple[tuple[str, str], ...], managed: bool | None, strict: bool) -> None:
    """Check a manifest (and deployment file) without a hub, against the kinds this hub runs;
    print every problem."""

    async def main() -> Any:
        files = _inputs(manifest, deployment, project_path)
        return validate_manifest(files[0], deployment=files[1], params=dict(params), managed=managed,
                                 strict=strict, check_routing=getattr(ctx.obj, "check_routing", None))

    project = _run(main())
    if _as_json():
        click.echo(json.dumps({"file": str(project.file), "ok": True, "entities": len(project.entities),
                               "routes": len(project.routes), "warnings": [str(w) for w in project.warnings]}, indent=2))
        return
    for warning in project.warnings:
        click.echo(f"warning: {warning}", err=True)
    routes = f", {len(project.routes)} routes" if project.routes else ""
    click.echo(f"{project.file}: ok ({len(project.entities)} entities{routes})")


COMMANDS = (deploy, undeploy, validate)
