"""Message values on the bus: compact UTF-8 JSON objects."""

from __future__ import annotations

import json
from typing import Any

from triggerhub.errors import BusError


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode(raw: bytes | None, topic: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BusError(f"malformed message on topic {topic!r}: {exc}; expected a JSON object") from exc
    if not isinstance(doc, dict):
        raise BusError(f"malformed message on topic {topic!r}: {type(doc).__name__}; expected a JSON object")
    return doc
