"""Entity PUT bodies (engine/bodies.py) enforce the size limits the configuration reports."""

from __future__ import annotations

import pytest

from triggerhub.config import LimitsConfig
from triggerhub.engine import bodies
from triggerhub.errors import BadRequest, PayloadTooLarge
from triggerhub.model import Exec, FullyQualifiedName, Kind, Parameter, Trigger

FQN = FullyQualifiedName("guest", "hello")


def test_parameters_are_refused_above_the_configured_max_parameter_bytes() -> None:
    limits = LimitsConfig(max_parameter_bytes=64)
    small = Trigger("guest", "t", parameters=(Parameter("k", "x" * 10),))
    big = Trigger("guest", "t", parameters=(Parameter("k", "x" * 100),))
    bodies.check_sizes(small, limits)
    with pytest.raises(PayloadTooLarge) as refused:
        bodies.check_sizes(big, limits)
    assert refused.value.message == "parameters larger than allowed: 127 > 64 bytes."


def test_code_is_refused_above_the_configured_max_code_bytes() -> None:
    body = {"kind": "python:default", "code": "def main(a):\n    return a\n"}
    parsed = bodies.parse_exec(body, FQN, max_code_bytes=100)
    assert parsed == Exec(kind=Kind.PYTHON_3_11, code=body["code"], binary=False, main=None, image=None)
    with pytest.raises(PayloadTooLarge) as refused:
        bodies.parse_exec(body, FQN, max_code_bytes=10)
    assert refused.value.message == "exec larger than allowed: 26 > 10 bytes."


def test_sequence_components_resolve_against_the_actions_namespace() -> None:
    parsed = bodies.parse_exec({"kind": "sequence", "components": ["a", "/other/pkg/b"]}, FQN, max_code_bytes=10)
    assert parsed == Exec(kind=Kind.SEQUENCE, components=("/guest/a", "/other/pkg/b"))
    with pytest.raises(BadRequest) as refused:
        bodies.parse_exec({"kind": "sequence", "components": []}, FQN, max_code_bytes=10)
    assert refused.value.message == "No component specified for the sequence."
