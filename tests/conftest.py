"""Shared test wiring: each plugin module owns the fixtures of one part of the system."""

import os
import tempfile

# `triggerhub up` records itself for the CLI in ~/.triggerhubprops: hubs started by tests write
# to a file of this run instead, never over the user's own.
os.environ.setdefault("TRIGGERHUB_PROPS", os.path.join(tempfile.gettempdir(), f"triggerhub-test-{os.getpid()}.props"))

pytest_plugins = [
    "tests.plugins.services",
    "tests.plugins.hub",
    "tests.plugins.cli",
    "tests.plugins.feeds",
    "tests.plugins.docker",
    "tests.plugins.invoker",
    "tests.plugins.manifests",
    "tests.plugins.store",
    "tests.plugins.distributed",
]
