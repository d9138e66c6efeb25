"""Names, kinds and versions behave as OpenWhisk's do."""

from __future__ import annotations

import uuid

import pytest

from triggerhub.engine.kinds import is_binary_code, resolve_kind
from triggerhub.errors import BadRequest
from triggerhub.feeds.mqtt import decode_payload
from triggerhub.model import (
    MAX_JSON_DEPTH, Delivery, FullyQualifiedName, bump_version, is_valid_name, loads_json, new_activation_id, uuid5_hex,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("a", "/guest/a"), ("p/a", "/guest/p/a"), ("/ns/a", "/ns/a"), ("/ns/p/a", "/ns/p/a"), ("/_/a", "/guest/a"),
])
def test_fully_qualified_names(text, expected):
    assert str(FullyQualifiedName.parse(text, "guest")) == expected


def test_bad_names():
    with pytest.raises(ValueError, match="is not a fully qualified name"):
        FullyQualifiedName.parse("/only", "guest")
    assert not is_valid_name("-x") and not is_valid_name("a/b") and is_valid_name("my action@v1.2")


def test_kinds_and_versions():
    assert resolve_kind("nodejs:default") == "nodejs:20" and resolve_kind("python:default") == "python:3.11"
    with pytest.raises(BadRequest, match=r"^The specified runtime 'go:1.20' is not supported by this platform\."):
        resolve_kind("go:1.20")
    assert bump_version("0.0.9") == "0.0.10"
    assert is_binary_code("UEsDBAoAAAAAAA==") and not is_binary_code("function main() {}")



def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_loads_json_refuses_what_python_reads_but_json_has_not(constant: str) -> None:
    with pytest.raises(ValueError) as caught:
        loads_json(f'{{"t": [1, {constant}]}}')
    assert str(caught.value) == f"{constant} is not a JSON value; send null or a finite number"


def test_loads_json_refuses_deep_nesting_with_value_error() -> None:
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) == nested_lists(MAX_JSON_DEPTH)
    for text in ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "[" * 100_000 + "]" * 100_000,
                 '{"a": ' * 300 + "1" + "}" * 300):
        with pytest.raises(ValueError) as caught:
            loads_json(text)
        assert str(caught.value) == "JSON nested deeper than 256 levels; send a flatter value"
    at_limit = '{"a": ' * (MAX_JSON_DEPTH - 2) + '["[{", {"b": 1}]' + "}" * (MAX_JSON_DEPTH - 2)
    assert loads_json(at_limit.encode()) == loads_json(at_limit)  # more brackets than levels: walked, accepted
    for text in ('{"a": ' * MAX_JSON_DEPTH + '["x"]' + "}" * MAX_JSON_DEPTH,):  # one level too many
        for raw in (text, text.encode()):
            with pytest.raises(ValueError, match="^JSON nested deeper than 256 levels"):
                loads_json(raw)
    deep = b"[" * 100_000 + b"]" * 100_000
    assert decode_payload(deep, "json") == deep.decode()  # an MQTT message too deep stays text, never crashes


@pytest.mark.parametrize("name", ["", "rule/0123456789abcdef0123456789abcdef/guest/r", "gäst\n名前/ü", "x" * 500])
def test_uuid5_hex_is_uuid5(name: str) -> None:
    """The derived ids stored by earlier versions (rule activations, delivery keys) must not change."""
    namespace = uuid.UUID("0b6a4a4e-9d1f-4d43-8a1c-5c1f3f2f7e21")
    assert uuid5_hex(namespace, name) == uuid.uuid5(namespace, name).hex


def test_new_activation_ids_are_random_uuid4_hex() -> None:
    ids = [new_activation_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert (parsed.hex, parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_delivery_environment_keys() -> None:
    delivery = Delivery("guest/r", "ev1", attempt=3)
    expected = uuid.uuid5(uuid.UUID("8f3e2b1a-6c5d-4e7f-8a9b-0c1d2e3f4a5b"), "guest/r\nev1").hex
    assert delivery.run_environment() == {"rule": "guest/r", "event_id": "ev1", "attempt": "3",
                                          "delivery_key": expected, "idempotency_key": f"{expected}-3"}
    assert delivery.idempotency_key == f"{expected}-3"
