"""Configuration: every bad TRIGGERHUB_* key is reported at once, with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerhub.config import RuntimeChoice, SandboxChoice, load_config
from triggerhub.errors import ConfigError


def test_defaults_and_overrides():
    config = load_config(env={"TRIGGERHUB_PORT": "4000", "TRIGGERHUB_RUNTIME": "Process"}, overrides={"HOME": Path("/x")})
    assert config.api.port == 4000 and config.api.host == "127.0.0.1"
    assert config.runtime.choice is RuntimeChoice.PROCESS
    assert config.home == Path("/x") and config.store_url == "sqlite+aiosqlite:////x/triggerhub.db"
    assert config.limits.invocations_per_minute == 60 and config.limits.concurrent_invocations == 30


def test_every_problem_is_reported_together():
    with pytest.raises(ConfigError) as caught:
        load_config(env={"TRIGGERHUB_PORT": "eighty", "TRIGGERHUB_PROT": "1", "TRIGGERHUB_RUNTIME": "vm",
                         "TRIGGERHUB_FIRES_PER_MINUTE": "-1", "TRIGGERHUB_TEST_PG_URL": "ignored"})
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert "  TRIGGERHUB_FIRES_PER_MINUTE='-1': must not be negative" in lines
    assert "  TRIGGERHUB_PORT='eighty': invalid literal for int() with base 10: 'eighty'; expected a int" in lines
    assert any(line.startswith("  TRIGGERHUB_PROT: unknown setting; known: ") for line in lines)
    assert any(line.startswith("  TRIGGERHUB_RUNTIME='vm': ") for line in lines)
    assert len(lines) == 5


def test_sandbox_settings_default_to_bubblewrap_and_read_flags():
    assert (load_config(env={}).runtime.sandbox, load_config(env={}).runtime.allow_unsandboxed_root) == (
        SandboxChoice.BWRAP, False)
    config = load_config(env={"TRIGGERHUB_SANDBOX": "None"}, overrides={"ALLOW_UNSANDBOXED_ROOT": True})
    assert (config.runtime.sandbox, config.runtime.allow_unsandboxed_root) == (SandboxChoice.NONE, True)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"TRIGGERHUB_SANDBOX": "firejail", "TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT": "maybe"})
    assert str(caught.value).splitlines()[1:] == [
        "  TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT='maybe': expected true or false; expected a bool",
        "  TRIGGERHUB_SANDBOX='firejail': 'firejail' is not a valid SandboxChoice; expected a SandboxChoice"]
