"""Fixtures that run `triggerhub` as a user does: as a separate process, killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HubProcess:
    """`triggerhub up` in a child process, with its home and port fixed across restarts."""

    home: Path
    port: int
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    cacert: Path | None = None  # set when extra_args serve HTTPS: the CA that signed its certificate

    @property
    def apihost(self) -> str:
        return f"{'https' if self.cacert else 'http'}://127.0.0.1:{self.port}"

    @property
    def auth(self) -> str:
        return str(json.loads((self.home / "credentials.json").read_text())["guest"])

    def env(self) -> dict[str, str]:
        return {**os.environ, "TRIGGERHUB_HOME": str(self.home), "TRIGGERHUB_APIHOST": self.apihost,
                "TRIGGERHUB_PROPS": str(self.home.parent / "triggerhubprops"), "PYTHONUNBUFFERED": "1",
                **self.extra_env}

    def start(self) -> None:
        log_path = self.home.parent / f"hub-{self.port}.log"
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "triggerhub.cli", "up", "--port", str(self.port), "--home", str(self.home),
                 "--runtime", "process", "--no-examples", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"triggerhub up exited with {self.process.returncode}; see {log_path}")
            try:
                context = ssl.create_default_context(cafile=self.cacert) if self.cacert else None
                with urllib.request.urlopen(f"{self.apihost}/ping", timeout=1, context=context) as response:
                    if response.read() == b"pong":
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"triggerhub up did not answer within {STARTUP_TIMEOUT_S}s; see {log_path}")

    def kill9(self) -> None:
        """SIGKILL the hub alone, as a real crash would: its action processes end with it (bwrap's
        --die-with-parent, their lifeline), their folders stay for the next start to sweep."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "triggerhub.cli", *args], capture_output=True, text=True,
                                env=self.env(), timeout=120, cwd=self.home.parent)
        if check and result.returncode != 0:
            raise AssertionError(f"triggerhub {' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "home", free_port())
    hub.home.mkdir()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
