"""Deploy every example project under a folder (one sub-folder per manifest) to a running hub.

Used by `triggerhub up` for the examples in manifests/: a project that cannot be deployed (its
feed's broker is not running, say) is rolled back and logged; the others still deploy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from triggerhub import errors
from triggerhub.manifests.client import ClientTls, HttpWhiskClient
from triggerhub.manifests.deployer import Outcome, deploy_manifest
from triggerhub.manifests.entities import RoutingCheck
from triggerhub.manifests.loader import DEFAULT_DEPLOYMENTS, DEFAULT_MANIFESTS

log = logging.getLogger(__name__)


def example_projects(folder: Path) -> list[Path]:
    """Sub-folders of `folder` holding a manifest.yaml/yml, sorted by name."""
    return [sub for sub in sorted(folder.iterdir()) if sub.is_dir()
            and any((sub / name).is_file() for name in DEFAULT_MANIFESTS)]


async def deploy_directory(folder: Path, apihost: str, auth: str, params: Mapping[str, str] | None = None,
                           env: Mapping[str, str] | None = None, *, trust: ClientTls | None = None,
                           check_routing: RoutingCheck | None = None) -> dict[str, Outcome | errors.TriggerhubError]:
    """Deploy each project; returns project folder name -> Outcome, or the error that stopped it."""
    results: dict[str, Outcome | errors.TriggerhubError] = {}
    async with HttpWhiskClient(apihost, auth, trust=trust) as client:
        for project in example_projects(folder):
            manifest = next(project / n for n in DEFAULT_MANIFESTS if (project / n).is_file())
            deployment = next((project / n for n in DEFAULT_DEPLOYMENTS if (project / n).is_file()), None)
            try:
                results[project.name] = await deploy_manifest(client, manifest, deployment=deployment,
                                                              params=params, env=env, check_routing=check_routing)
            except errors.TriggerhubError as exc:
                log.warning("example %s not deployed: %s", project.name, exc)
                results[project.name] = exc
            else:
                log.info("example %s deployed", project.name)
    return results
