"""Shared test wiring: each plugin module owns the fixtures of one part of the system.

tests/plugins/leftovers.py comes first: it gives the run a temporary folder of its own (and its own
~/.triggerhubprops) before anything starts, and fails the run if a process of it outlives the run.
"""

pytest_plugins = [
    "tests.plugins.leftovers",
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
