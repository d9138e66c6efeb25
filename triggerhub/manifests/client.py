"""The WhiskClient seam: JSON over the OpenWhisk REST API, and its aiohttp implementation.

Paths are relative to `<apihost>/api/v1`, e.g. `/namespaces/_/actions/iot/notify`. A non-2xx
answer raises the errors.ApiError subclass for its status, carrying the server's message.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import aiohttp

from triggerhub import errors
from triggerhub.config import client_settings
from triggerhub.model import JSON

log = logging.getLogger(__name__)
LIST_PAGE = 200
_BY_STATUS: dict[int, type[errors.ApiError]] = {
    400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    405: errors.MethodNotAllowed, 409: errors.Conflict, 413: errors.PayloadTooLarge, 429: errors.Throttled,
    500: errors.InternalError, 503: errors.Unavailable,
}


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a client checks the hub's HTTPS certificate: against the system's CAs, against a private
    CA (`cacert`, a PEM file), or not at all (`insecure`, wsk's -i)."""

    cacert: str | None = None
    insecure: bool = False

    @classmethod
    def from_settings(cls, *, cacert: str | None = None, insecure: bool | None = None,
                      env: Mapping[str, str] | None = None) -> ClientTls:
        """Flags first, then TRIGGERHUB_CACERT and TRIGGERHUB_INSECURE (config.client_settings)."""
        settings = client_settings(env)
        if insecure is None:
            insecure = settings.insecure
        return cls(cacert or settings.cacert or None, insecure)

    def context(self) -> ssl.SSLContext:
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cafile=self.cacert)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(f"--cacert/TRIGGERHUB_CACERT {self.cacert}: not a readable PEM CA certificate ({exc}); "
                                     "give the CA certificate that signed the hub's certificate") from exc


def unverified_message(host: str, reason: str) -> str:
    """One line for a certificate the client cannot verify: the host, why, and the flag to use."""
    return (f"cannot verify the TLS certificate of {host} ({reason}): pass --cacert FILE (or set "
            "TRIGGERHUB_CACERT) with the CA that signed it, or -i/--insecure to skip verification")


class WhiskClient(Protocol):
    @property
    def auth_key(self) -> str:
        """`uuid:key` passed to feed actions as `authKey`."""

    async def info(self) -> JSON:
        """`GET /` of the platform (limits, runtimes); outside /api/v1."""

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON: ...

    async def put(self, path: str, body: JSON, query: Mapping[str, str] | None = None) -> JSON: ...

    async def delete(self, path: str, query: Mapping[str, str] | None = None) -> JSON: ...

    async def post(self, path: str, body: JSON, query: Mapping[str, str] | None = None) -> JSON:
        """POST a JSON body (route management: `/web/whisk.system/apimgmt/createApi`)."""

    async def list(self, path: str) -> list[JSON]:
        """Every item of a collection (all pages)."""

    async def invoke(self, path: str, args: JSON, *, blocking: bool = True) -> JSON:
        """POST to an action; blocking returns the activation record."""


def error_for(status: int, message: str) -> errors.ApiError:
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = errors.BadRequest if 400 <= status < 500 else errors.InternalError
    error = cls(message)
    error.status = status
    return error


def base_url(apihost: str) -> str:
    """`127.0.0.1:3233` or `http://h:p` (with or without /api/v1) -> `http://h:p/api/v1`."""
    url = apihost.rstrip("/")
    if "://" not in url:
        url = f"{'http' if url.startswith(('127.', 'localhost')) else 'https'}://{url}"
    return url if url.endswith("/api/v1") else f"{url}/api/v1"


class HttpWhiskClient:
    """aiohttp against a running hub (or OpenWhisk). Use as an async context manager."""

    def __init__(self, apihost: str, auth: str, timeout_s: float = 90.0, *, trust: ClientTls | None = None) -> None:
        if ":" not in auth:
            raise errors.ConfigError("auth must be '<uuid>:<key>' (as in ~/.wskprops AUTH=)")
        self._base = base_url(apihost)
        self._headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode("ascii")}
        self._auth_key = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._trust = trust or ClientTls.from_settings()
        self._session: aiohttp.ClientSession | None = None

    @property
    def auth_key(self) -> str:
        return self._auth_key

    async def __aenter__(self) -> HttpWhiskClient:
        connector = aiohttp.TCPConnector(ssl=self._trust.context()) if self._base.startswith("https://") else None
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout, connector=connector)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def info(self) -> JSON:
        return await self._request("GET", "", None, None, url=self._base.removesuffix("/api/v1") + "/")

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        return await self._request("GET", path, None, query)

    async def put(self, path: str, body: JSON, query: Mapping[str, str] | None = None) -> JSON:
        return await self._request("PUT", path, body, query)

    async def delete(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        return await self._request("DELETE", path, None, query)

    async def post(self, path: str, body: JSON, query: Mapping[str, str] | None = None) -> JSON:
        return await self._request("POST", path, body, query)

    async def list(self, path: str) -> list[JSON]:
        items: list[JSON] = []
        while True:
            page = await self._request("GET", path, None, {"limit": str(LIST_PAGE), "skip": str(len(items))})
            items.extend(page or [])
            if not page or len(page) < LIST_PAGE:
                return items

    async def invoke(self, path: str, args: JSON, *, blocking: bool = True) -> JSON:
        return await self._request("POST", path, args, {"blocking": "true" if blocking else "false"})

    async def _request(self, method: str, path: str, body: JSON, query: Mapping[str, str] | None,
                       url: str | None = None) -> JSON:
        if self._session is None:
            raise RuntimeError("HttpWhiskClient used outside 'async with'")
        url = url or self._base + path
        try:
            async with self._session.request(method, url, json=body, params=dict(query or {})) as response:
                text = await response.text()
                payload = _json_or_text(response.content_type, text)
                if response.status >= 300:
                    raise error_for(response.status, _message(payload, response.reason or ""))
                return payload
        except aiohttp.ClientConnectorCertificateError as exc:
            host = f"{exc.host}:{exc.port}"
            reason = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
            raise errors.Unavailable(unverified_message(host, reason)) from exc
        except aiohttp.ClientError as exc:
            raise errors.Unavailable(f"cannot reach {self._base}: {exc}; is the hub running "
                                     f"(check --apihost / TRIGGERHUB_APIHOST)?") from exc


def _json_or_text(content_type: str, text: str) -> Any:
    if not text:
        return None
    if content_type.endswith("json"):
        return json.loads(text)
    return text


def _message(payload: Any, reason: str) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):
        return error
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
        result = payload["response"].get("result")
        if isinstance(result, dict) and "error" in result:
            return str(result["error"])
    return str(payload) if payload else reason
