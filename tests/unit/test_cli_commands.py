"""Every `triggerhub` command has a help text and takes `--json` after its name."""

from __future__ import annotations

import click

from triggerhub.cli import main


def leaf_commands(group: click.Group, ctx: click.Context, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, ctx, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


def test_every_command_has_help_and_json() -> None:
    with click.Context(main) as ctx:
        commands = leaf_commands(main, ctx)
    assert {"activation get", "activation list", "activation logs", "activation result", "activation poll",
            "trigger get", "trigger list", "rule get", "rule list", "action get", "action list", "package get",
            "package list", "status", "deploy"} <= set(commands)
    assert [name for name, command in commands.items() if not (command.help or "").strip()] == []
    assert [name for name, command in commands.items()
            if not any("--json" in getattr(p, "opts", ()) for p in command.params)] == []
