"""ProxyClient against Python's own `http.server` on a Unix socket, as blackbox images use it:
HTTP/1.0 (a connection per answer), HTTP/1.1 keep-alive, and HTTP/1.1 closing without saying so."""

from __future__ import annotations

import asyncio
import json
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from triggerhub.invoker.proxy_client import ProxyClient

RUNS = 3


class ActionServer(socketserver.UnixStreamServer):
    """Counts the connections it accepted; `closed` is set each time it has closed one."""

    def __init__(self, path: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(path, handler)
        self.connections = 0
        self.closed = threading.Event()

    def shutdown_request(self, request: object) -> None:
        super().shutdown_request(request)  # type: ignore[arg-type]
        self.closed.set()


class Http10(BaseHTTPRequestHandler):
    """`http.server` as is: HTTP/1.0, no Connection header, the connection closed after the answer."""

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload = json.dumps({"path": self.path, "echo": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """A Unix socket has no client address to log."""


class Http11KeepAlive(Http10):
    protocol_version = "HTTP/1.1"


class Http11ClosesSilently(Http11KeepAlive):
    """Answers HTTP/1.1 without `Connection: close`, then closes anyway (end of stream)."""

    def do_POST(self) -> None:
        super().do_POST()
        self.close_connection = True


@dataclass
class Served:
    server: ActionServer
    client: ProxyClient


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[Served]:
    folder = tempfile.mkdtemp(prefix="th-proxy-")  # short: Unix socket paths hold 107 characters
    server = ActionServer(str(Path(folder) / "action.sock"), request.param)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(server, ProxyClient(socket_path=server.server_address))  # type: ignore[arg-type]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        shutil.rmtree(folder)


async def post_runs(served: Served, *, wait_closed: bool) -> list[tuple[int, object]]:
    answers = []
    for n in range(RUNS):
        served.server.closed.clear()
        response = await served.client.post("/run", {"value": {"n": n}}, timeout_ms=5_000)
        answers.append((response.status, response.body))
        if wait_closed:  # the server's end of stream has reached this side before the next request
            await asyncio.to_thread(served.server.closed.wait, 5)
    await served.client.close()
    return answers


EXPECTED = [(200, {"path": "/run", "echo": {"value": {"n": n}}}) for n in range(RUNS)]


@pytest.mark.parametrize("serve", [Http10], indirect=True)
async def test_an_http_1_0_server_gets_a_connection_per_request(serve: Served) -> None:
    assert await post_runs(serve, wait_closed=False) == EXPECTED
    assert serve.server.connections == RUNS


@pytest.mark.parametrize("serve", [Http11KeepAlive], indirect=True)
async def test_an_http_1_1_server_keeps_one_connection(serve: Served) -> None:
    assert await post_runs(serve, wait_closed=False) == EXPECTED
    assert serve.server.connections == 1


@pytest.mark.parametrize("serve", [Http11ClosesSilently], indirect=True)
async def test_a_connection_closed_after_a_complete_answer_is_replaced(serve: Served) -> None:
    assert await post_runs(serve, wait_closed=True) == EXPECTED
    assert serve.server.connections == RUNS
