"""Every API test here runs three times: embedded with actions in local processes, embedded with
actions in Docker containers, and against the distributed deployment (controller, worker and two
invokers on Kafka and PostgreSQL)."""

from __future__ import annotations

import pytest

MODES = ["process", pytest.param("docker", marks=pytest.mark.docker),
         pytest.param("distributed", marks=[pytest.mark.kafka, pytest.mark.postgres])]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub" in metafunc.fixturenames:
        metafunc.parametrize("runtime_name", MODES)
