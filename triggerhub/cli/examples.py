"""The example manifests `triggerhub up` deploys, each only when the service it needs is there.

An example whose manifest names an unset `${VARIABLE}` (the database-change example's
DATABASE_URL) or whose feed needs an MQTT broker the hub does not serve is skipped with one line
before anything is created, so it leaves no entity and no failed activation behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from triggerhub import errors
from triggerhub.manifests.client import ClientTls, HttpWhiskClient
from triggerhub.manifests.deploy import example_projects
from triggerhub.manifests.deployer import deploy_manifest
from triggerhub.manifests.entities import RoutingCheck
from triggerhub.manifests.loader import DEFAULT_DEPLOYMENTS, DEFAULT_MANIFESTS

MQTT_FEED = "/whisk.system/mqtt/subscribe"
# `${NAME}`, or `$NAME` in capitals: a lower-case `$or` is a rule filter's operator, not a variable.
_VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Z_][A-Z0-9_]*)\b)")


@dataclass(frozen=True, slots=True)
class ExampleOutcome:
    name: str
    deployed: bool
    reason: str = ""  # why not, in one line


def missing_service(manifest: Path, env: Mapping[str, str], *, mqtt_url: str | None) -> str | None:
    """Why this example cannot run here, or None when everything it needs is present."""
    text = "\n".join(line.split("#", 1)[0] for line in manifest.read_text(encoding="utf-8").splitlines())
    unset = sorted({braced or bare for braced, bare in _VARIABLE.findall(text) if not env.get(braced or bare)})
    if unset:
        return f"set {' and '.join(unset)} to deploy it"
    if MQTT_FEED in text and mqtt_url is None:
        return "it needs an MQTT broker: run `triggerhub up --mqtt-embedded` (scripts/up does)"
    return None


async def deploy_examples(folder: Path, apihost: str, auth: str, *, env: Mapping[str, str], mqtt_url: str | None,
                          trust: ClientTls | None = None, check_routing: RoutingCheck | None = None
                          ) -> list[ExampleOutcome]:
    """Deploy each example that can run; MQTT examples are pointed at `mqtt_url`."""
    outcomes: list[ExampleOutcome] = []
    async with HttpWhiskClient(apihost, auth, trust=trust) as client:
        for project in example_projects(folder):
            manifest = next(project / n for n in DEFAULT_MANIFESTS if (project / n).is_file())
            deployment = next((project / n for n in DEFAULT_DEPLOYMENTS if (project / n).is_file()), None)
            reason = missing_service(manifest, env, mqtt_url=mqtt_url)
            if reason is not None:
                outcomes.append(ExampleOutcome(project.name, deployed=False, reason=reason))
                continue
            params = {"url": mqtt_url} if mqtt_url and MQTT_FEED in manifest.read_text(encoding="utf-8") else None
            try:
                await deploy_manifest(client, manifest, deployment=deployment, params=params, env=env,
                                      check_routing=check_routing)
            except errors.TriggerhubError as exc:
                outcomes.append(ExampleOutcome(project.name, deployed=False, reason=" ".join(str(exc).split())))
            else:
                outcomes.append(ExampleOutcome(project.name, deployed=True))
    return outcomes
