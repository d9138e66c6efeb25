"""`triggerhub event trace ID`: one trigger event's lineage, from its source message through the
rule decisions to every activation (sequence components and retries included), as a tree.

ID is the event id a fire or webhook answered, or any activation id descending from the event.
`--json` prints the API's lineage document (api/api_docs.py `Lineage`) unchanged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click
from rich.tree import Tree

from triggerhub.cli.context import Ctx, console, pass_ctx, run


@click.group()
def event() -> None:
    """Follow trigger events."""


@event.command("trace")
@click.argument("event_id")
@pass_ctx
@run
def event_trace(ctx: Ctx, event_id: str) -> None:
    """Show the lineage of EVENT_ID (an event id, or an activation id of that event)."""
    document = ctx.client.request("GET", f"namespaces/_/events/{quote(event_id, safe='')}/lineage").body
    if ctx.as_json:
        click.echo(json.dumps(document, indent=2))
        return
    console.print(lineage_tree(document))


def lineage_tree(document: dict[str, Any]) -> Tree:
    """Source → event → rule decisions → activations (components under their sequence)."""
    source = document["source"]
    where = ", ".join(f"{key} {source[key]}" for key in ("topic", "messageId", "deliveryId", "partition", "offset")
                      if source.get(key) is not None)
    root = Tree(f"trace {document['traceId']}  source {source['kind']}{': ' + where if where else ''}")
    event_info = document["event"]
    node = root.add(f"event {event_info['id']} → trigger {event_info['trigger']}  span {event_info['spanId']}")
    activations = {a["activationId"]: a for a in document["activations"]}
    shown: set[str] = set()
    for rule in document["rules"]:
        line = f"rule {rule['rule']} → {rule['action']}: {rule['decision']}"
        if rule.get("reason"):
            line += f" ({rule['reason']})"
        branch = node.add(line)
        activation_id = rule.get("activationId")
        if activation_id:
            _add_activation(branch, activations, activation_id, shown, fallback=rule.get("status", "pending"))
    for activation_id, item in activations.items():
        if activation_id not in shown and item["role"] in ("retry", "rule"):
            _add_activation(node, activations, activation_id, shown, fallback="")
    return root


def _add_activation(parent: Tree, activations: dict[str, Any], activation_id: str, shown: set[str], *,
                    fallback: str) -> None:
    item = activations.get(activation_id)
    if item is None:
        parent.add(f"activation {activation_id}: {fallback}")
        return
    shown.add(activation_id)
    duration = f" {item['duration']}ms" if item.get("duration") is not None else ""
    attempt = f" attempt {item['attempt']}" if "attempt" in item else ""
    branch = parent.add(f"activation {activation_id} {item['name']}: {item['status']}{duration}{attempt}")
    for child in item["children"]:
        _add_activation(branch, activations, child, shown, fallback="pending")
