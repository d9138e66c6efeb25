"""The `triggerhub` command: `up` runs the hub; the other commands talk to one like `wsk` does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from triggerhub.cli.actions import action
from triggerhub.cli.activations import activation
from triggerhub.cli.apis import api
from triggerhub.cli.alarms import alarms
from triggerhub.manifests.commands import deploy, undeploy, validate
from triggerhub.cli.context import Ctx
from triggerhub.cli.packages import package
from triggerhub.cli.tls import tls_options, tls_overrides
from triggerhub.cli.triggers import rule, trigger
from triggerhub.config import environment_with, load_config
from triggerhub.engine.bootstrap import read_credentials
from triggerhub.manifests.client import ClientTls
from triggerhub.errors import ConfigError, TriggerhubError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests"


class _LazyGroup(click.Group):
    """Commands whose modules load only when they run (the distributed roles pull in Faust)."""

    lazy = {**{name: "triggerhub.cli.distributed" for name in ("controller", "worker", "invoker", "feeds")},
            "admin": "triggerhub.cli.admin"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            import importlib

            module = importlib.import_module(self.lazy[name])
            self.add_command(getattr(module, name))
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup)
@click.option("--apihost", default=None, help="hub URL (default $TRIGGERHUB_APIHOST or http://127.0.0.1:3233)")
@click.option("-u", "--auth", default=None, help="uuid:key (default $TRIGGERHUB_AUTH or the local guest key)")
@click.option("--json", "as_json", is_flag=True, help="print raw JSON")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM file of the CA that signed the hub's certificate (default $TRIGGERHUB_CACERT; "
                   "else the system's CAs)")
@click.option("-i", "--insecure", is_flag=True, default=None,
              help="do not verify the hub's certificate (default $TRIGGERHUB_INSECURE); warned")
@click.pass_context
def main(ctx: click.Context, apihost: str | None, auth: str | None, as_json: bool, cacert: str | None,
         insecure: bool | None) -> None:
    """triggerhub: feeds, triggers, rules and actions, OpenWhisk-compatible."""
    ctx.obj = Ctx(apihost, auth, as_json, trust=ClientTls.from_settings(cacert=cacert, insecure=insecure))
    if ctx.obj.trust.insecure:
        click.echo("warning: --insecure: the hub's TLS certificate is not verified; anyone on the path can "
                   "read and change this session, credentials included", err=True)


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        logging.basicConfig(level=level, format="%(name)s: %(message)s",
                            handlers=[RichHandler(show_path=False, rich_tracebacks=False)])
    else:  # one plain line per event for log files and collectors
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access", "docker", "urllib3", "asyncio", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


@main.command()
@click.option("--port", type=int, default=None, help="API port (default 3233)")
@click.option("--host", default=None, help="bind address (default 127.0.0.1)")
@click.option("--home", type=click.Path(path_type=Path), default=None, help="state directory ($TRIGGERHUB_HOME)")
@click.option("--runtime", type=click.Choice(["auto", "docker", "process"]), default=None)
@click.option("--sandbox", type=click.Choice(["bwrap", "none"]), default=None,
              help="process runtime: run actions in a bubblewrap sandbox (default) or unsandboxed")
@click.option("--allow-unsandboxed-root", is_flag=True, default=None,
              help="accept --sandbox none although the hub runs as root")
@click.option("--examples/--no-examples", default=None, help="deploy the example manifests (default on)")
@click.option("--mqtt-embedded", is_flag=True, help="serve an MQTT broker on 127.0.0.1:1883 for sensors")
@tls_options
@click.option("-v", "--verbose", is_flag=True)
def up(port: int | None, host: str | None, home: Path | None, runtime: str | None, sandbox: str | None,
       allow_unsandboxed_root: bool | None, examples: bool | None, mqtt_embedded: bool, tls_cert: Path | None,
       tls_key: Path | None, verbose: bool) -> None:
    """Run the whole hub in this process (SQLite, in-process streams)."""
    _configure_logging(verbose)
    try:
        config = load_config(overrides={"PORT": port, "HOST": host, "HOME": home, "RUNTIME": runtime,
                                        "SANDBOX": sandbox, "ALLOW_UNSANDBOXED_ROOT": allow_unsandboxed_root or None,
                                        "DEPLOY_EXAMPLES": examples, **tls_overrides(tls_cert, tls_key)})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_serve(config, mqtt_embedded))
    except TriggerhubError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(config: Any, mqtt_embedded: bool) -> None:
    from triggerhub.cli.compose import running_hub

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if mqtt_embedded:
            await stack.enter_async_context(_embedded_broker())
        hub = await stack.enter_async_context(running_hub(config))
        click.echo(f"triggerhub listening on {hub.apihost} (runtime: {hub.runtime_name}, home: {config.home})")
        for namespace, key in hub.credentials.items():
            click.echo(f"  {namespace:<13} auth {key}")
        click.echo(f"  wsk: wsk property set --apihost {hub.apihost} --auth {hub.guest_auth}")
        if hub.apihost.startswith("https://"):
            click.echo(f"  TLS: certificate {config.api.tls_cert}, reloaded when the file changes; a client that does "
                       "not trust its CA needs --cacert FILE (wsk: SSL_CERT_FILE=FILE, or -i)")
        if config.deploy_examples:
            await _deploy_examples(hub)
        await stop.wait()
        click.echo("triggerhub stopping")


@contextlib.asynccontextmanager
async def _embedded_broker():  # type: ignore[no-untyped-def]
    try:
        from triggerhub.feeds.broker import embedded_broker
    except ImportError as exc:
        raise click.ClickException(f"--mqtt-embedded is not available: {exc}") from exc
    from triggerhub.errors import FeedError

    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(embedded_broker("127.0.0.1", 1883))
            click.echo("embedded MQTT broker on mqtt://127.0.0.1:1883")
        except FeedError as exc:  # e.g. a Mosquitto already serves 1883: feeds use that one
            logging.getLogger(__name__).warning("no embedded MQTT broker: %s", exc)
        yield


async def _deploy_examples(hub: Any) -> None:
    """Deploy manifests/ so a new user sees triggers working; the webhook example's token is made
    once per home (unless WEBHOOK_TOKEN is set) and printed with a curl line to try it."""
    import json
    import secrets

    from triggerhub.cli.context import check_routing
    from triggerhub.manifests.deploy import deploy_directory

    if not EXAMPLES_DIR.is_dir():
        return
    settings_path = hub.config.home / "examples.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    token = hub.config.examples_webhook_token or settings.setdefault("WEBHOOK_TOKEN", secrets.token_urlsafe(24))
    settings_path.write_text(json.dumps(settings))
    settings_path.chmod(0o600)
    # The hub deploys to its own loopback listener: nothing to verify there, whatever names its certificate holds.
    results = await deploy_directory(EXAMPLES_DIR, hub.apihost, hub.guest_auth, env=environment_with({"WEBHOOK_TOKEN": token}),
                                     trust=ClientTls(insecure=True), check_routing=check_routing)
    deployed = sorted(name for name, outcome in results.items() if not isinstance(outcome, Exception))
    click.echo(f"examples deployed: {', '.join(deployed) or 'none'} (from {EXAMPLES_DIR})")
    for name in sorted(set(results) - set(deployed)):
        click.echo(f"  not deployed: {name} (the warning above says why; {EXAMPLES_DIR / name / 'manifest.yaml'} "
                   "says what it needs)")
    if "webhook-to-sequence" in deployed:
        click.echo(f"  try: curl -X POST {hub.apihost}/hooks/guest/order-received -H 'X-Webhook-Token: {token}' "
                   "-H 'Content-Type: application/json' -d '{\"id\": 1, \"items\": [{\"price\": 2.5, \"qty\": 2}]}'")


@main.command()
@click.argument("namespace", default="guest")
@click.option("--home", type=click.Path(path_type=Path), default=None)
def auth(namespace: str, home: Path | None) -> None:
    """Print the uuid:key of NAMESPACE (guest or whisk.system) from the local hub's home."""
    config = load_config(overrides={"HOME": home})
    credentials = read_credentials(config.home)
    if namespace not in credentials:
        known = ", ".join(sorted(credentials)) or "none: run `triggerhub up` once first"
        raise click.ClickException(f"no credentials for namespace '{namespace}' in {config.home}; known: {known}")
    click.echo(credentials[namespace])


@main.group()
def images() -> None:
    """Runtime images for the Docker runtime."""


@images.command("build")
@click.option("--force", is_flag=True, help="rebuild even when nothing changed")
def images_build(force: bool) -> None:
    """Build triggerhub/python:3.11 and triggerhub/nodejs:20 (no registry needed) from
    $TRIGGERHUB_RUNTIMES_DIR (default: this checkout's runtimes/)."""
    from triggerhub.invoker.images import build_runtime_images

    try:
        config = load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    for tag in build_runtime_images(config.runtime, force=force):
        click.echo(tag)


for _command in (action, trigger, rule, package, activation, alarms, deploy, undeploy, validate, api):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
