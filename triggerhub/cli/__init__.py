"""The `triggerhub` command: `up` runs the hub; the other commands talk to one like `wsk` does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from triggerhub.cli.actions import action
from triggerhub.cli.activations import activation
from triggerhub.cli.apis import api
from triggerhub.cli.events import event
from triggerhub.cli.alarms import alarms
from triggerhub.manifests.commands import deploy, undeploy, validate
from triggerhub.cli.context import Ctx, add_json_option, say
from triggerhub.cli.collector import freeze_start_up_objects
from triggerhub.cli.logs import log_to_file
from triggerhub.cli.packages import package
from triggerhub.cli.status import status
from triggerhub.cli.tls import tls_options, tls_overrides
from triggerhub.cli.replay import rule_replay
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
            command = getattr(module, name)
            add_json_option(command)
            self.add_command(command)
        return super().get_command(ctx, name)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        """Errors are one line plus a hint on stderr; with --json anywhere, a JSON object on stdout."""
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
        if not as_json:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            exit_code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            from triggerhub.cli.context import CliFailure

            body = exc.as_dict() if isinstance(exc, CliFailure) else {"error": exc.format_message()}
            click.echo(json.dumps(body, indent=2))
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(json.dumps({"error": "aborted"}))
            sys.exit(1)
        sys.exit(exit_code if isinstance(exit_code, int) else 0)  # what standalone mode does with Exit(n)


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
    ctx.obj = Ctx(apihost, auth, as_json=as_json, trust=ClientTls.from_settings(cacert=cacert, insecure=insecure))
    if ctx.obj.trust.insecure:
        click.echo("warning: --insecure: the hub's TLS certificate is not verified; anyone on the path can "
                   "read and change this session, credentials included", err=True)


def _configure_logging(*, verbose: bool) -> None:
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
@click.option("--props/--no-props", default=None,
              help="record this hub in ~/.triggerhubprops for the CLI (default on; $TRIGGERHUB_WRITE_PROPS)")
@click.option("--mqtt-embedded", is_flag=True, help="serve an MQTT broker on 127.0.0.1 (--mqtt-port) for sensors")
@click.option("--mqtt-port", type=int, default=None, help="embedded MQTT broker port ($TRIGGERHUB_MQTT_PORT, default 1883)")
@tls_options
@click.option("-v", "--verbose", is_flag=True)
def up(port: int | None, host: str | None, home: Path | None, runtime: str | None, sandbox: str | None,
       allow_unsandboxed_root: bool | None, examples: bool | None, props: bool | None, mqtt_embedded: bool,
       mqtt_port: int | None, tls_cert: Path | None, tls_key: Path | None, verbose: bool) -> None:
    """Run the whole hub in this process (SQLite, in-process streams).

    Writes the hub's address and guest key to ~/.triggerhubprops ($TRIGGERHUB_PROPS), so the CLI
    finds it from any folder; --no-props (TRIGGERHUB_WRITE_PROPS=false) for a hub the CLI should not
    find, such as a benchmark's."""
    _configure_logging(verbose=verbose)
    try:
        config = load_config(overrides={"PORT": port, "HOST": host, "HOME": home, "RUNTIME": runtime,
                                        "SANDBOX": sandbox, "ALLOW_UNSANDBOXED_ROOT": allow_unsandboxed_root or None,
                                        "DEPLOY_EXAMPLES": examples, "WRITE_PROPS": props, "MQTT_PORT": mqtt_port,
                                        **tls_overrides(tls_cert, tls_key)})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    log_to_file(config.log)
    try:
        asyncio.run(_serve(config, mqtt_embedded=mqtt_embedded))
    except TriggerhubError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(config: Any, *, mqtt_embedded: bool) -> None:
    from triggerhub.cli.compose import running_hub
    from triggerhub.cli.props import props_lines, props_path, write_props

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        mqtt_url = None
        if mqtt_embedded:
            mqtt_url = await stack.enter_async_context(_embedded_broker(config.mqtt.port))
        hub = await stack.enter_async_context(running_hub(config))
        click.echo(f"triggerhub listening on {hub.apihost} (runtime: {hub.runtime_name}, home: {config.home})")
        for namespace, key in hub.credentials.items():
            click.echo(f"  {namespace:<13} auth {key}")
        if config.write_props:
            props = write_props(hub.apihost, hub.guest_auth, home=config.home)
            click.echo(f"  the triggerhub CLI finds this hub from any folder through {props}; elsewhere:")
        else:
            click.echo(f"  not recorded in {props_path()} (--no-props, TRIGGERHUB_WRITE_PROPS=false); "
                       "to reach this hub:")
        for line in props_lines(hub.apihost, hub.guest_auth):
            click.echo(f"  {line}")
        if hub.apihost.startswith("https://"):
            click.echo(f"  TLS: certificate {config.api.tls_cert}, reloaded when the file changes; a client that does "
                       "not trust its CA needs --cacert FILE (wsk: SSL_CERT_FILE=FILE, or -i)")
        if config.deploy_examples:
            await _deploy_examples(hub, mqtt_url)
        freeze_start_up_objects()
        await stop.wait()
        click.echo("triggerhub stopping")


@contextlib.asynccontextmanager
async def _embedded_broker(port: int):  # type: ignore[no-untyped-def]
    try:
        from triggerhub.feeds.broker import embedded_broker
    except ImportError as exc:
        raise click.ClickException(f"--mqtt-embedded is not available: {exc}") from exc
    from triggerhub.errors import FeedError

    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(embedded_broker("127.0.0.1", port))
        except FeedError as exc:  # another broker holds the port: feeds would silently talk to it
            raise click.ClickException(
                f"the embedded MQTT broker cannot listen on 127.0.0.1:{port} ({exc.__cause__ or exc}); "
                f"choose a free port with --mqtt-port N (or TRIGGERHUB_MQTT_PORT), or run without --mqtt-embedded"
            ) from exc
        click.echo(f"embedded MQTT broker on mqtt://127.0.0.1:{port}")
        yield f"mqtt://127.0.0.1:{port}"


async def _deploy_examples(hub: Any, mqtt_url: str | None) -> None:
    """Deploy manifests/ so a new user sees triggers working; the webhook example's token is made
    once per home (unless WEBHOOK_TOKEN is set) and printed with a curl line to try it."""
    import json
    import secrets

    from triggerhub.cli.context import check_routing
    from triggerhub.cli.examples import deploy_examples

    if not EXAMPLES_DIR.is_dir():
        return
    settings_path = hub.config.home / "examples.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    token = hub.config.examples_webhook_token or settings.setdefault("WEBHOOK_TOKEN", secrets.token_urlsafe(24))
    settings_path.write_text(json.dumps(settings))
    settings_path.chmod(0o600)
    # The hub deploys to its own loopback listener: nothing to verify there, whatever names its certificate holds.
    outcomes = await deploy_examples(EXAMPLES_DIR, hub.apihost, hub.guest_auth,
                                     env=environment_with({"WEBHOOK_TOKEN": token}), mqtt_url=mqtt_url,
                                     trust=ClientTls(insecure=True), check_routing=check_routing)
    deployed = sorted(o.name for o in outcomes if o.deployed)
    click.echo(f"examples deployed: {', '.join(deployed) or 'none'} (from {EXAMPLES_DIR})")
    for outcome in outcomes:
        if not outcome.deployed:
            click.echo(f"  skipped: {outcome.name}: {outcome.reason}")
    if "webhook-to-sequence" in deployed:
        click.echo(f"  try: curl -X POST {hub.apihost}/hooks/guest/order-received -H 'X-Webhook-Token: {token}' "
                   "-H 'Content-Type: application/json' -d '{\"id\": 1, \"items\": [{\"price\": 2.5, \"qty\": 2}]}'")


@main.command()
@click.argument("namespace", default="guest")
@click.option("--home", type=click.Path(path_type=Path), default=None)
@click.pass_obj
def auth(ctx: Ctx, namespace: str, home: Path | None) -> None:
    """Print the uuid:key of NAMESPACE (guest or whisk.system) from the local hub's home."""
    config = load_config(overrides={"HOME": home})
    credentials = read_credentials(config.home)
    if namespace not in credentials:
        known = ", ".join(sorted(credentials)) or "none: run `triggerhub up` once first"
        raise click.ClickException(f"no credentials for namespace '{namespace}' in {config.home}; known: {known}")
    say(ctx, credentials[namespace], {"namespace": namespace, "auth": credentials[namespace]})


@main.group()
def images() -> None:
    """Runtime images for the Docker runtime."""


@images.command("build")
@click.option("--force", is_flag=True, help="rebuild even when nothing changed")
@click.pass_obj
def images_build(ctx: Ctx, force: bool) -> None:
    """Build triggerhub/python:3.11 and triggerhub/nodejs:20 (no registry needed) from
    $TRIGGERHUB_RUNTIMES_DIR (default: this checkout's runtimes/)."""
    from rich.console import Console

    from triggerhub.invoker.images import build_runtime_images

    try:
        config = load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    with Console(stderr=True).status("runtime images") as progress:  # a spinner on a terminal only
        tags = build_runtime_images(config.runtime, force=force, on_step=progress.update)
    if ctx.as_json:
        click.echo(json.dumps(tags))
        return
    for tag in tags:
        click.echo(tag)


rule.add_command(rule_replay)
for _command in (action, trigger, rule, package, activation, alarms, deploy, undeploy, validate, api, status, event):
    main.add_command(_command)
add_json_option(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
