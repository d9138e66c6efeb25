"""A small HTTP/1.1 client for the action proxies: one keep-alive connection per runtime.

Speaks just what /init and /run need (POST with a JSON body; Content-Length, chunked or
read-to-EOF answers) over a Unix socket or a loopback TCP port. The connection is kept only
while the server keeps it: an HTTP/1.0 answer without `Connection: keep-alive`, a
`Connection: close`, or an end of stream seen after a complete answer makes the next request
open a new one (blackbox images served by Python's `http.server` as is answer HTTP/1.0 and close).
A request is never sent twice. Every failure becomes a ProxyResponse with status 0 (and
`timed_out` when the deadline passed); it never raises for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from triggerhub.invoker.base import ProxyResponse
from triggerhub.model import JSON

logger = logging.getLogger(__name__)

_STREAM_LIMIT_BYTES = 64 * 1024 * 1024  # a header line or chunk-size line longer than this is broken


class ProxyClient:
    """POSTs JSON to one proxy; reconnects lazily, drops the connection after any failure."""

    def __init__(self, *, socket_path: str | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        if (socket_path is None) == (port is None):
            raise ValueError("ProxyClient needs exactly one of socket_path or port")
        self._socket_path = socket_path
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def address(self) -> str:
        return self._socket_path if self._socket_path is not None else f"{self._host}:{self._port}"

    async def post(self, path: str, body: dict[str, JSON], timeout_ms: int) -> ProxyResponse:
        """Send one request; the whole exchange (connect included) must fit in `timeout_ms`."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                status, raw = await self._exchange(path, payload)
        except TimeoutError:
            await self.close()
            return ProxyResponse(0, None, timed_out=True)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            logger.debug("proxy %s: %s %s failed: %r", self.address, "POST", path, exc)
            await self.close()
            return ProxyResponse(0, None)
        return ProxyResponse(status, _parse_json(raw), raw)

    async def ready(self, timeout_ms: int, alive: Callable[[], bool] = lambda: True) -> bool:
        """True once the proxy answers an HTTP probe (any status: the proxies answer 404 to
        POST /ping, without writing sentinels). The first answer also warms up the proxy's
        HTTP path, so a stem cell's first real request is not slowed by it. Gives up when
        `alive()` turns false or `timeout_ms` passes."""
        deadline_s = asyncio.get_running_loop().time() + timeout_ms / 1000
        while alive():
            remaining_ms = int((deadline_s - asyncio.get_running_loop().time()) * 1000)
            if remaining_ms <= 0:
                return False
            if (await self.post("/ping", {}, remaining_ms)).status:
                return True
            await asyncio.sleep(0.005)  # the proxy is still starting: poll its socket
        return False

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if (self._reader is None or self._writer is None or self._writer.is_closing()
                or self._reader.at_eof()):  # the server closed it after the last answer
            await self.close()
            if self._socket_path is not None:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self._socket_path, limit=_STREAM_LIMIT_BYTES)
            else:
                self._reader, self._writer = await asyncio.open_connection(
                    self._host, self._port, limit=_STREAM_LIMIT_BYTES)
        return self._reader, self._writer

    async def _exchange(self, path: str, payload: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connect()
        writer.write(b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (path.encode("ascii"), len(payload), payload))
        if writer.transport.get_write_buffer_size():  # the socket did not take it all at once
            await writer.drain()
        # The status line and the headers in one read: they nearly always come in one segment.
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"not an HTTP status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            raw = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            raw = await _read_chunked(reader)
        else:
            raw = await reader.read()
            await self.close()
        if not _keeps_alive(parts[0], headers.get(b"connection", b"")):
            await self.close()
        return status, raw


def _keeps_alive(version: bytes, connection: bytes) -> bool:
    """Whether the server keeps the connection open after this answer (RFC 9112 9.3)."""
    tokens = {token.strip().lower() for token in connection.split(b",")}
    if b"close" in tokens:
        return False
    return version != b"HTTP/1.0" or b"keep-alive" in tokens


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers are ignored
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _parse_json(raw: bytes) -> JSON:
    """The decoded body, or None when it is not JSON (the caller keeps `raw` for messages)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None
