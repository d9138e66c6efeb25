"""Runtime kinds this hub runs, their defaults, and how `family:default` resolves."""

from __future__ import annotations

import re

from triggerhub.errors import BadRequest
from triggerhub.model import HUB_DEFAULT_KINDS, HUB_KINDS

CODE_KINDS = HUB_KINDS
DEFAULT_KIND = HUB_DEFAULT_KINDS
ALIASES = {"python:3": "python:3.11", "python:3.11": "python:3.11", "nodejs:20": "nodejs:20"}
SEQUENCE = "sequence"
BLACKBOX = "blackbox"
BUILTIN = "builtin"  # hub-internal actions (feed providers), never created through the API
USER_KINDS = (*CODE_KINDS, SEQUENCE, BLACKBOX)
_BASE64 = re.compile(r"\A[A-Za-z0-9+/]*={0,2}\Z")


def resolve_kind(kind: str) -> str:
    family, _, version = kind.partition(":")
    if version == "default" and family in DEFAULT_KIND:
        return DEFAULT_KIND[family]
    if kind in ALIASES:
        return ALIASES[kind]
    if kind in (SEQUENCE, BLACKBOX):
        return kind
    valid = ", ".join([*CODE_KINDS, "python:default", "nodejs:default", BLACKBOX, SEQUENCE])
    raise BadRequest(f"The specified runtime '{kind}' is not supported by this platform. Valid values are: {valid}.")


def is_binary_code(code: str) -> bool:
    """OpenWhisk treats code as a base64 archive when it is valid base64 of length % 4 == 0."""
    stripped = code.strip()
    return len(stripped) > 0 and len(stripped) % 4 == 0 and bool(_BASE64.match(stripped))
