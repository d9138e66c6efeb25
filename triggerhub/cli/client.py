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

from triggerhub.config import client_settings
from triggerhub.engine.bootstrap import read_credentials
from triggerhub.errors import ConfigError
from triggerhub.manifests.client import ClientTls, unverified_message

DEFAULT_APIHOST = "http://127.0.0.1:3233"


class ClientError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class WhiskClient:
    apihost: str
    auth: str
    timeout_s: float = 75.0
    trust: ClientTls = ClientTls()

    @classmethod
    def from_settings(cls, apihost: str | None, auth: str | None, *, trust: ClientTls | None = None) -> WhiskClient:
        settings = client_settings()
        home = settings.home
        apihost = apihost or settings.apihost or DEFAULT_APIHOST
        if not apihost.startswith(("http://", "https://")):
            apihost = "http://" + apihost
        auth = auth or settings.auth or read_credentials(home).get("guest", "")
        if not auth:
            raise ClientError(0, f"no credentials: pass --auth uuid:key, set TRIGGERHUB_AUTH, or start the hub "
                                 f"once with `triggerhub up` so {home / 'credentials.json'} exists")
        return cls(apihost.rstrip("/"), auth, trust=trust or ClientTls.from_settings())

    @property
    def namespace(self) -> str:
        return "_"

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
            raise ClientError(exc.code, str(message or exc.reason), payload) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                host = urllib.parse.urlsplit(self.apihost).netloc
                raise ClientError(0, unverified_message(host, exc.reason.verify_message)) from exc
            raise ClientError(0, f"cannot reach the hub at {self.apihost}: {exc.reason}; is `triggerhub up` running?") from exc

    def entity_path(self, collection: str, name: str) -> str:
        """`name`, `pkg/name` or `/ns/pkg/name` -> `namespaces/ns/collection/pkg/name`."""
        if name.startswith("/"):
            parts = name.strip("/").split("/")
            namespace, rest = parts[0], parts[1:]
        else:
            namespace, rest = "_", name.split("/")
        return f"namespaces/{urllib.parse.quote(namespace)}/{collection}/" + "/".join(urllib.parse.quote(p) for p in rest)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
