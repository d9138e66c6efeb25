"""The three manifest operations as async functions over a WhiskClient: validate, deploy, undeploy.

Everything is loaded and validated before the first REST call; the plan is computed from what
the hub has; `dry_run` stops after planning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from triggerhub import errors

from triggerhub.manifests.apply import Applier, Progress, resolve_namespace, take_snapshot
from triggerhub.manifests.client import WhiskClient
from triggerhub.manifests.entities import RoutingCheck
from triggerhub.manifests.loader import load_project
from triggerhub.manifests.plan import Plan, plan_deploy, plan_undeploy
from triggerhub.manifests.project import Project
from triggerhub.manifests.runtimes import HUB, Runtimes


async def platform_runtimes(client: WhiskClient) -> Runtimes:
    """The platform's kinds and defaults (GET /); this hub's table, which `validate` uses, when it
    does not say."""
    try:
        info = await client.info()
    except errors.ApiError:
        return HUB
    return Runtimes.from_info(info) if isinstance(info, dict) else HUB


@dataclass(frozen=True, slots=True)
class Outcome:
    project: Project
    plan: Plan
    applied: tuple[str, ...]  # empty on a dry run


def validate_manifest(manifest: Path, *, deployment: Path | None = None,
                      params: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                      managed: bool | None = None, strict: bool = False,
                      check_routing: RoutingCheck | None = None) -> Project:
    """Load and check without a hub (the namespace stays `_`) against the kinds this hub runs;
    raises ManifestError."""
    return load_project(manifest, deployment=deployment, params=params, env=env, managed=managed, strict=strict,
                        check_routing=check_routing)


async def deploy_manifest(client: WhiskClient, manifest: Path, *, deployment: Path | None = None,
                          params: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                          managed: bool | None = None, dry_run: bool = False, strict: bool = False,
                          check_routing: RoutingCheck | None = None, on_step: Progress | None = None) -> Outcome:
    namespace = await resolve_namespace(client)
    project = load_project(manifest, deployment=deployment, params=params, env=env, namespace=namespace,
                           managed=managed, runtimes=await platform_runtimes(client), strict=strict,
                           check_routing=check_routing)
    plan = plan_deploy(project, await take_snapshot(client, project))
    applied = () if dry_run else tuple(await _applier(client, namespace, on_step).run(plan))
    return Outcome(project, plan, applied)


async def undeploy_manifest(client: WhiskClient, manifest: Path, *, deployment: Path | None = None,
                            params: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                            managed: bool | None = None, dry_run: bool = False, strict: bool = False,
                            on_step: Progress | None = None) -> Outcome:
    namespace = await resolve_namespace(client)
    project = load_project(manifest, deployment=deployment, params=params, env=env, namespace=namespace,
                           managed=managed, runtimes=await platform_runtimes(client), strict=strict)
    plan = plan_undeploy(project, await take_snapshot(client, project))
    applied = () if dry_run else tuple(await _applier(client, namespace, on_step).run(plan))
    return Outcome(project, plan, applied)


def _applier(client: WhiskClient, namespace: str, on_step: Progress | None) -> Applier:
    return Applier(client, namespace) if on_step is None else Applier(client, namespace, on_step=on_step)
