"""Every API test here runs twice: actions in local processes and in Docker containers."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub" in metafunc.fixturenames:
        metafunc.parametrize("runtime_name", ["process", pytest.param("docker", marks=pytest.mark.docker)])
