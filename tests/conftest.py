"""Shared test wiring: each plugin module owns the fixtures of one part of the system."""

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
