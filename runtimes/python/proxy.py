"""Python action proxy: serves the OpenWhisk action protocol (POST /init, POST /run).

Standard library only. Listens with HTTP/1.1 keep-alive on the Unix socket named by
TRIGGERHUB_SOCKET, or on TCP 0.0.0.0:$TRIGGERHUB_PORT (inside a container only).
The action runs in the main thread, one request at a time; after every /run and every
failed /init the sentinel line is written to stdout and stderr (before the HTTP answer).
With TRIGGERHUB_LIFELINE_FD (the process runtime) it exits once that pipe ends: the hub holds its
only write end, so end-of-file means the hub is gone, however it ended.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import socket
import sys
import tempfile
import traceback
from typing import Any, Callable

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
MAX_HEADER_BYTES = 64 * 1024
INIT_FAILED = "The action failed to generate or locate a binary. See logs for details."
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           500: "Internal Server Error", 502: "Bad Gateway"}


class Proxy:
    """The action state: nothing until a successful /init, then the `main` callable."""

    def __init__(self) -> None:
        self.main: Callable[[Any], Any] | None = None
        self.init_attempted = False

    def handle(self, path: str, body: bytes) -> tuple[int, Any]:
        if path not in ("/init", "/run"):
            return 404, {"error": f"unknown path {path}; use POST /init or POST /run"}
        try:
            message = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "The request body is not valid JSON."}
        if not isinstance(message, dict):
            return 400, {"error": "The request body must be a JSON object."}
        if path == "/init":
            return self.init(message.get("value") or {})
        return self.run(message)

    def init(self, value: dict[str, Any]) -> tuple[int, Any]:
        if self.init_attempted:
            end_activation()
            return 403, {"error": "Cannot initialize the action more than once."}
        code = value.get("code")
        if not isinstance(code, str) or not code:
            end_activation()
            return 403, {"error": "Missing main/no code to execute."}
        self.init_attempted = True
        for key, env_value in (value.get("env") or {}).items():
            os.environ[str(key)] = env_value if isinstance(env_value, str) else json.dumps(env_value)
        entry = value.get("main") or "main"
        try:
            module_path = prepare_source(code, bool(value.get("binary")))
            self.main = load_main(module_path, entry)
        except Exception:  # noqa: BLE001 - any failure of user code at import time
            traceback.print_exc()
            end_activation()
            return 502, {"error": INIT_FAILED}
        return 200, {"ok": True}

    def run(self, message: dict[str, Any]) -> tuple[int, Any]:
        if self.main is None:
            end_activation()
            return 500, {"error": "no action defined yet"}
        for key, env_value in message.items():
            if key != "value":
                os.environ["__OW_" + key.upper()] = env_value if isinstance(env_value, str) else json.dumps(env_value)
        try:
            result = self.main(message.get("value", {}))
        except Exception as exc:  # noqa: BLE001 - OpenWhisk makes this an application error
            traceback.print_exc()
            result = {"error": str(exc)}
        status, answer = 200, result
        if not isinstance(result, (dict, list)):
            status, answer = 502, {"error": "The action did not return a dictionary or array."}
        else:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                status, answer = 502, {"error": f"The action did not return a JSON serializable result: {exc}"}
        end_activation()
        return status, answer


def prepare_source(code: str, binary: bool) -> str:
    """Write the action to a private directory; return the path of its entry module."""
    root = tempfile.mkdtemp(prefix="action-")
    if not binary:
        path = os.path.join(root, "main__.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(code)
        return path
    import base64, io, zipfile  # noqa: E401 - only zip actions pay for these imports

    with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as archive:
        archive.extractall(root)
    entry = os.path.join(root, "__main__.py")
    if not os.path.exists(entry):
        raise RuntimeError("Zip file does not include __main__.py")
    for site in sorted(_venv_site_packages(os.path.join(root, "virtualenv"))):
        sys.path.insert(0, site)
    os.chdir(root)
    return entry


def _venv_site_packages(venv: str) -> list[str]:
    lib = os.path.join(venv, "lib")
    if not os.path.isdir(lib):
        return []
    return [os.path.join(lib, name, "site-packages") for name in os.listdir(lib)
            if os.path.isdir(os.path.join(lib, name, "site-packages"))]


def load_main(module_path: str, entry: str) -> Callable[[Any], Any]:
    sys.path.insert(0, os.path.dirname(module_path))
    spec = importlib.util.spec_from_file_location("main__", module_path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {module_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["main__"] = module
    spec.loader.exec_module(module)
    main = getattr(module, entry, None)
    if not callable(main):
        raise RuntimeError(f"the action has no callable '{entry}'")
    return main


def end_activation() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(SENTINEL + "\n")
        stream.flush()


# ----------------------------------------------------------------------------- HTTP


class Connection:
    """One keep-alive client connection, read with blocking I/O when it is readable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def serve_one(self, proxy: Proxy) -> bool:
        """Read one request and answer it; False when the client is gone or wants to close."""
        request_line = self.reader.readline(MAX_HEADER_BYTES)
        if not request_line:
            return False
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            self.respond(400, {"error": "malformed request line"}, close=True)
            return False
        method, path, version = parts
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline(MAX_HEADER_BYTES)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, header_value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = header_value.strip()
        body = self.reader.read(int(headers.get("content-length", "0") or 0))
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if method != "POST":
            status, answer = 404, {"error": f"unknown route {method} {path}; use POST /init or POST /run"}
        else:
            status, answer = proxy.handle(path.split("?", 1)[0], body)
        self.respond(status, answer, close=not keep_alive)
        return keep_alive

    def respond(self, status: int, answer: Any, close: bool) -> None:
        payload = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
        self.sock.sendall(head.encode("latin-1") + payload)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def listen() -> socket.socket:
    socket_path = os.environ.get("TRIGGERHUB_SOCKET")
    port = os.environ.get("TRIGGERHUB_PORT")
    if port:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", int(port)))
    elif socket_path:
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(socket_path)
    else:
        sys.exit("proxy.py: set TRIGGERHUB_SOCKET (a Unix socket path) or TRIGGERHUB_PORT")
    server.listen(16)
    return server


def serve(server: socket.socket, lifeline: int | None) -> None:
    """Answer requests one at a time; return when the lifeline (nobody writes to it) ends. That is
    seen between requests, not during an action: no thread of its own counts against the
    action's process limit."""
    proxy = Proxy()
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, None)
    if lifeline is not None:
        selector.register(lifeline, selectors.EVENT_READ, "lifeline")
    while True:
        for key, _ in selector.select():
            if key.data == "lifeline":
                if not os.read(key.fd, 1):
                    return
                continue
            if key.data is None:
                client, _ = server.accept()
                if client.family == socket.AF_INET:
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(client, selectors.EVENT_READ, Connection(client))
                continue
            connection: Connection = key.data
            try:
                alive = connection.serve_one(proxy)
            except (ConnectionError, ValueError):
                alive = False
            if not alive:
                selector.unregister(connection.sock)
                connection.close()


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    lifeline = os.environ.pop("TRIGGERHUB_LIFELINE_FD", "")  # not the action's
    serve(listen(), int(lifeline) if lifeline else None)
    os._exit(0)  # the hub is gone: threads an action left must not keep this process alive


if __name__ == "__main__":
    main()
