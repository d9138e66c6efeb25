"""Build the action runtime images locally, without a container registry.

Each runtime image (`triggerhub/python:3.11`, `triggerhub/nodejs:20`) is `runtimes/<kind>/Dockerfile`
built on a base imported from a debootstrap root filesystem (`runtimes/base/build-rootfs.sh`).
Every image carries a `triggerhub.build-hash` label over its inputs; a build is skipped when the
present image already has the hash it would get. Run as `python -m triggerhub.invoker.images`
(or `triggerhub images build`); TRIGGERHUB_RUNTIMES_DIR, TRIGGERHUB_NODE_BINARY and DOCKER_HOST
come through `triggerhub.config`, like every other setting.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from triggerhub.config import RuntimeConfig, environment_with, load_config
from triggerhub.errors import ActionRuntimeError, ConfigError
from triggerhub.model import Kind

logger = logging.getLogger(__name__)

HASH_LABEL = "triggerhub.build-hash"


@dataclass(frozen=True, slots=True)
class ImageRecipe:
    kind: str  # the action kind this image serves
    tag: str
    base_tag: str
    runtime_dir: str  # folder under runtimes/ with the Dockerfile and the proxy
    rootfs_flavour: str  # first argument of build-rootfs.sh


RECIPES = (
    ImageRecipe(Kind.PYTHON_3_11, f"triggerhub/{Kind.PYTHON_3_11}", "triggerhub/base-python:bookworm", "python", "python"),
    ImageRecipe(Kind.NODEJS_20, f"triggerhub/{Kind.NODEJS_20}", "triggerhub/base-nodejs:bookworm", "nodejs", "nodejs"),
)

# The image each managed kind runs in; DockerRuntimeFactory resolves kinds through this.
IMAGE_FOR_KIND = {recipe.kind: recipe.tag for recipe in RECIPES}


def image_sources(path: Path) -> Path:
    """`path` (the configured runtimes/ folder) when it holds the image recipes."""
    if not (path / "base" / "build-rootfs.sh").is_file():
        raise ActionRuntimeError(
            f"runtime sources not found in {path}: expected base/build-rootfs.sh there; "
            "set TRIGGERHUB_RUNTIMES_DIR to the runtimes/ folder of a triggerhub checkout"
        )
    return path


def build_runtime_images(runtime: RuntimeConfig, *, force: bool = False,
                         on_step: Callable[[str], None] = lambda message: None) -> list[str]:
    """Make sure every runtime image and its base exist and are current; returns their tags.

    The sources are `runtime.runtimes_dir`; the nodejs base copies `runtime.node_binary`.
    Images whose build-hash label matches their inputs are kept unless `force`. `on_step` hears
    what is being checked or built, for a progress display.
    """
    root = image_sources(runtime.runtimes_dir)
    client = _client(runtime.docker_host)
    try:
        ready: list[str] = []
        for number, recipe in enumerate(RECIPES):
            on_step(f"[{2 * number + 1}/{2 * len(RECIPES)}] {recipe.base_tag}: checking, building when changed "
                    "(debootstrap takes a minute or two)")
            ready.append(_ensure_base(client, root, recipe, runtime.node_binary, force=force))
            on_step(f"[{2 * number + 2}/{2 * len(RECIPES)}] {recipe.tag}: checking, building when changed")
            ready.append(_ensure_runtime(client, root, recipe, force=force))
        # Builds replaced earlier images under the same tags; drop those now untagged ones.
        client.images.prune(filters={"dangling": True, "label": HASH_LABEL})
        return ready
    finally:
        client.close()


def _client(docker_host: str) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=docker_host)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ActionRuntimeError(
            f"cannot reach the Docker engine ({exc}); start it with scripts/services/dockerd.sh start"
        ) from exc
    return client


def _ensure_base(client: docker.DockerClient, root: Path, recipe: ImageRecipe, node_binary: str,
                 *, force: bool) -> str:
    script = root / "base" / "build-rootfs.sh"
    inputs = [script.read_bytes(), recipe.rootfs_flavour.encode()]
    script_env: dict[str, str] = {}
    if recipe.rootfs_flavour == "nodejs":
        # The base embeds the host's Node.js binary: a new binary means a new base.
        node_path, node_version = host_node(node_binary)
        inputs.append(node_version.encode())
        script_env["TRIGGERHUB_NODE_BINARY"] = node_path  # the script copies it: a path, not a name
    wanted = _digest(inputs)
    if not force and _current_hash(client, recipe.base_tag) == wanted:
        logger.info("image %s is current (hash %s)", recipe.base_tag, wanted[:12])
        return recipe.base_tag
    logger.info("building base image %s with debootstrap (takes a minute or two)", recipe.base_tag)
    with tempfile.TemporaryDirectory(prefix="triggerhub-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        completed = subprocess.run(
            ["bash", str(script), recipe.rootfs_flavour, str(tarball)],
            env=environment_with(script_env),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise ActionRuntimeError(
                f"building the root filesystem for {recipe.base_tag} failed "
                f"(exit {completed.returncode}): {completed.stderr.strip()[-2000:]}"
            )
        repository, tag = recipe.base_tag.rsplit(":", 1)
        try:
            client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=tag,
                changes=[f"LABEL {HASH_LABEL}={wanted}", 'CMD ["/bin/sh"]'],
            )
        except docker.errors.APIError as exc:
            raise ActionRuntimeError(f"docker import of {recipe.base_tag} failed: {exc}") from exc
    return recipe.base_tag


def _ensure_runtime(client: docker.DockerClient, root: Path, recipe: ImageRecipe, *, force: bool) -> str:
    context = root / recipe.runtime_dir
    proxy = "proxy.py" if recipe.runtime_dir == "python" else "proxy.js"
    if not (context / proxy).is_file():
        raise ActionRuntimeError(
            f"{context / proxy} is missing: the {recipe.kind} image needs its action proxy there"
        )
    base_id = client.images.get(recipe.base_tag).id
    inputs = [base_id.encode()]
    for path in sorted(p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        inputs += [str(path.relative_to(context)).encode(), path.read_bytes()]
    wanted = _digest(inputs)
    if not force and _current_hash(client, recipe.tag) == wanted:
        logger.info("image %s is current (hash %s)", recipe.tag, wanted[:12])
        return recipe.tag
    logger.info("building image %s on %s", recipe.tag, recipe.base_tag)
    try:
        client.images.build(
            path=str(context),
            tag=recipe.tag,
            buildargs={"BASE_IMAGE": recipe.base_tag},
            labels={HASH_LABEL: wanted, "triggerhub.kind": recipe.kind},
            network_mode="none",
            rm=True,
            forcerm=True,
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ActionRuntimeError(f"docker build of {recipe.tag} from {context} failed: {exc}") from exc
    return recipe.tag


def _current_hash(client: docker.DockerClient, tag: str) -> str | None:
    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return None
    return labels.get(HASH_LABEL)


def host_node(node_binary: str) -> tuple[str, str]:
    """(absolute path, version) of the Node.js binary `node_binary` names (a name on PATH or a path)."""
    path = shutil.which(node_binary)
    try:
        if path is None:
            raise OSError(f"{node_binary!r} is not an executable on PATH or a path to one")
        completed = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ActionRuntimeError(
            f"the nodejs:20 base needs a Node.js 20 binary on the host; '{node_binary} --version' failed ({exc}); "
            "install Node.js 20 or set TRIGGERHUB_NODE_BINARY"
        ) from exc
    return path, completed.stdout.strip()


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triggerhub.invoker.images", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when the images are current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        tags = build_runtime_images(load_config().runtime, force=args.force)
    except (ActionRuntimeError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(tags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
