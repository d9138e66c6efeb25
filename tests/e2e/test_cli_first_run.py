"""A first run as a new user makes it: `TRIGGERHUB_PORT=N triggerhub up` in one folder, then the
README's "Try it" commands, exactly, from another folder with no TRIGGERHUB_* settings at all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.cli import STARTUP_TIMEOUT_S, free_port

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = str(Path(sys.executable).parent)


def try_it_block() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of the README's "Try it" block."""
    section = README.read_text(encoding="utf-8").split("## Try it", 1)[1]
    block = section.split("```", 2)[1]
    steps: list[tuple[str, list[str]]] = []
    for line in block.strip("\n").splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


@dataclass
class FirstRun:
    port: int
    user_home: Path
    start_dir: Path
    elsewhere: Path
    process: subprocess.Popen[str]
    banner: list[str]

    def env(self) -> dict[str, str]:
        return user_env(self.user_home)

    def shell(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["bash", "-c", command], cwd=self.elsewhere, env=self.env(), capture_output=True,
                                text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result


def user_env(user_home: Path) -> dict[str, str]:
    """A new user's environment: no TRIGGERHUB_* at all, their own HOME, triggerhub on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERHUB_") and k not in {"DATABASE_URL"}}
    return {**env, "HOME": str(user_home), "PATH": f"{BIN}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def first_run(tmp_path: Path) -> Iterator[FirstRun]:
    user_home, start_dir, elsewhere = tmp_path / "user", tmp_path / "clone", tmp_path / "elsewhere"
    for folder in (user_home, start_dir, elsewhere):
        folder.mkdir()
    port = free_port()
    # Actions run as processes: this test is about finding the hub, not about Docker.
    env = {**user_env(user_home), "TRIGGERHUB_PORT": str(port), "TRIGGERHUB_RUNTIME": "process"}
    process = subprocess.Popen(["triggerhub", "up"], cwd=start_dir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    banner: list[str] = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        assert process.stdout is not None
        while not any(line.startswith("examples deployed:") for line in banner):
            line = process.stdout.readline()
            assert line and time.monotonic() < deadline, f"triggerhub up ended early: {''.join(banner)}"
            banner.append(line.rstrip("\n"))
        for line in process.stdout:  # the skipped examples and the curl line follow, then nothing
            banner.append(line.rstrip("\n"))
            if line.startswith("  try: curl"):
                break
        yield FirstRun(port, user_home, start_dir, elsewhere, process, banner)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_readme_try_it_from_another_folder_against_a_non_default_port(first_run: FirstRun) -> None:
    apihost = f"http://127.0.0.1:{first_run.port}"
    props = (first_run.user_home / ".triggerhubprops").read_text().splitlines()
    assert f"APIHOST={apihost}" in props
    auth = next(line.split("=", 1)[1] for line in props if line.startswith("AUTH="))
    assert f"  wsk property set --apihost {apihost} --auth {auth}" in first_run.banner
    assert f"  export TRIGGERHUB_APIHOST={apihost} TRIGGERHUB_AUTH={auth}" in first_run.banner
    assert "  skipped: db-change-notification: set DATABASE_URL to deploy it" in first_run.banner
    assert ("  skipped: iot-temperature-alert: it needs an MQTT broker: run `triggerhub up --mqtt-embedded` "
            "(scripts/up does)") in first_run.banner

    *steps, (poll_command, _) = try_it_block()
    assert poll_command == "triggerhub activation poll"
    for command, expected in steps:
        result = first_run.shell(command)
        assert result.stdout.splitlines() == expected, command
        assert result.stderr == "", command

    poll = subprocess.Popen(["bash", "-c", f"exec {poll_command}"], cwd=first_run.elsewhere, env=first_run.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert poll.stdout is not None
        assert poll.stdout.readline() == "Enter Ctrl-c to exit.\n"
        assert poll.stdout.readline() == "Polling for activation logs\n"
        fired = first_run.shell("triggerhub trigger fire tick").stdout
        match = re.fullmatch(r"ok: triggered /guest/tick with id ([0-9a-f]{32})\n", fired)
        assert match, fired
        streamed = [poll.stdout.readline() for _ in range(2)]
        assert streamed[0] == "\n"
        assert streamed[1] == f"Activation: 'tick' ({match.group(1)})\n"
        outcome = json.loads(poll.stdout.readline())  # a trigger's log: what each rule did
        assert {k: outcome[k] for k in ("rule", "action", "statusCode", "success")} == {
            "rule": "guest/every-minute", "action": "guest/HelloAction", "statusCode": 0, "success": True}
        assert poll.stdout.readline() == "\n"
        assert poll.stdout.readline() == f"Activation: 'HelloAction' ({outcome['activationId']})\n"
    finally:
        poll.send_signal(signal.SIGINT)
        assert poll.wait(timeout=10) == 0
        assert poll.stdout is not None and poll.stderr is not None
        poll.stdout.close()
        errors = poll.stderr.read()
        poll.stderr.close()
    assert errors == ""

    # The examples that were skipped left no failed records: every activation so far succeeded.
    records = json.loads(first_run.shell("triggerhub activation list --json --limit 200").stdout)
    assert [r["name"] for r in records if r.get("statusCode", 0) != 0] == []
    with urllib.request.urlopen(f"{apihost}/ping", timeout=5) as response:
        assert response.read() == b"pong"


def test_an_unreachable_hub_names_its_address_and_apihost(tmp_path: Path) -> None:
    port = free_port()  # nobody listens here
    (tmp_path / ".triggerhubprops").write_text(f"APIHOST=http://127.0.0.1:{port}\nAUTH=a:b\n")
    result = subprocess.run(["triggerhub", "action", "list"], cwd=tmp_path, env=user_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the hub at http://127.0.0.1:{port} (from ~/.triggerhubprops): ")
    assert result.stderr.rstrip().endswith("start it with `triggerhub up`, or point the CLI at a running hub with "
                                           "--apihost URL (or TRIGGERHUB_APIHOST)")


def test_a_taken_mqtt_port_stops_start_up_naming_the_port_and_flag(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {**user_env(tmp_path), "TRIGGERHUB_PROPS": str(tmp_path / "props")}
        result = subprocess.run(["triggerhub", "up", "--mqtt-embedded", "--mqtt-port", str(taken), "--port", "0",
                                 "--no-examples", "--runtime", "process"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"Error: the embedded MQTT broker cannot listen on 127.0.0.1:{taken} (" in result.stderr
    assert result.stderr.rstrip().endswith("choose a free port with --mqtt-port N (or TRIGGERHUB_MQTT_PORT), "
                                           "or run without --mqtt-embedded")
    assert not (tmp_path / "props").exists()
