"""A small synchronous OpenWhisk REST client for the CLI (like `wsk`, but only what it needs)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from triggerhub.cli.props import DEFAULT_APIHOST, resolve
from triggerhub.errors import ConfigError
from triggerhub.manifests.client import ClientTls, unverified_message

__all__ = ["DEFAULT_APIHOST", "ClientError", "Response", "WhiskClient"]


class ClientError(Exception):
    """A failed call; `resource` says what it named ("action hello"), when it named one."""

    def __init__(self, status: int, message: str, body: Any = None, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.resource = resource


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class WhiskClient:
    apihost: str
    auth: str
    timeout_s: float = 75.0
    apihost_from: str = "--apihost"
    trust: ClientTls = ClientTls()

    @classmethod
    def from_settings(cls, apihost: str | None, auth: str | None, *, trust: ClientTls | None = None) -> WhiskClient:
        settings = resolve(apihost, auth)
        if not settings.auth:
            raise ClientError(0, f"no credentials for {settings.apihost}: pass --auth uuid:key, set TRIGGERHUB_AUTH, "
                                 "or start the hub with `triggerhub up` (it writes ~/.triggerhubprops)")
        return cls(settings.apihost, settings.auth, apihost_from=settings.apihost_from,
                   trust=trust or ClientTls.from_settings())

    @property
    def namespace(self) -> str:
        return "_"

    def current_namespace(self) -> str:
        """The namespace this key belongs to (what `_` means), as `GET /namespaces` reports it."""
        names = self.request("GET", "namespaces").body
        return str(names[0]) if isinstance(names, list) and names else "_"

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Response:
        url = f"{self.apihost}/api/v1/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v
                                                 for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Basic " + base64.b64encode(self.auth.encode()).decode(),
                   "Content-Type": "application/json", "User-Agent": "triggerhub-cli"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            context = self.trust.context() if url.startswith("https://") else None
        except ConfigError as exc:
            raise ClientError(0, str(exc)) from exc
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=context) as resp:
                return Response(resp.status, _decode(resp.read()))
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read())
            if exc.code in (502,) and isinstance(payload, dict) and "activationId" in payload:
                return Response(exc.code, payload)  # a failed blocking activation still has a record
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ClientError(exc.code, str(message or exc.reason), payload, resource=_resource(path)) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                host = urllib.parse.urlsplit(self.apihost).netloc
                raise ClientError(0, unverified_message(host, exc.reason.verify_message)) from exc
            raise ClientError(0, f"cannot reach the hub at {self.apihost} (from {self.apihost_from}): {exc.reason}; "
                                 "start it with `triggerhub up`, or point the CLI at a running hub with "
                                 "--apihost URL (or TRIGGERHUB_APIHOST)") from exc

    def entity_path(self, collection: str, name: str) -> str:
        """`name`, `pkg/name` or `/ns/pkg/name` -> `namespaces/ns/collection/pkg/name`."""
        if name.startswith("/"):
            parts = name.strip("/").split("/")
            namespace, rest = parts[0], parts[1:]
        else:
            namespace, rest = "_", name.split("/")
        return f"namespaces/{urllib.parse.quote(namespace)}/{collection}/" + "/".join(urllib.parse.quote(p) for p in rest)


_SINGULAR = {"actions": "action", "triggers": "trigger", "rules": "rule", "packages": "package",
             "activations": "activation"}


def _resource(path: str) -> str | None:
    """`namespaces/_/actions/pkg/hello` -> "action pkg/hello" (the CLI names what was missing)."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("?")[0].split("/")]
    if len(parts) < 4 or parts[0] != "namespaces" or parts[2] not in _SINGULAR:
        return None
    namespace, collection, rest = parts[1], parts[2], [p for p in parts[3:] if p]
    if collection == "activations":
        rest = rest[:1]
    name = "/".join(rest)
    return f"{_SINGULAR[collection]} {name if namespace == '_' else f'/{namespace}/{name}'}" if name else None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
