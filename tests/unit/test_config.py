"""Configuration: every bad TRIGGERHUB_* key is reported at once, with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerhub.config import (DEFAULT_DOCKER_HOST, REPOSITORY_RUNTIMES_DIR, ClientSettings, DeriveState, PrewarmChoice,
                               RuntimeChoice, SandboxChoice, client_settings, load_config)
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


def test_stem_cells_start_on_first_use_unless_prewarm_is_start():
    assert (load_config(env={}).runtime.prewarm, load_config(env={}).runtime.prewarm_count) == (
        PrewarmChoice.FIRST_USE, 1)
    assert load_config(env={"TRIGGERHUB_PREWARM": "Start"}).runtime.prewarm is PrewarmChoice.START
    with pytest.raises(ConfigError) as caught:
        load_config(env={"TRIGGERHUB_PREWARM": "always"})
    assert str(caught.value).splitlines()[1:] == [
        "  TRIGGERHUB_PREWARM='always': must be one of first-use, start"]


def test_sandbox_settings_default_to_bubblewrap_and_read_flags():
    assert (load_config(env={}).runtime.sandbox, load_config(env={}).runtime.allow_unsandboxed_root) == (
        SandboxChoice.BWRAP, False)
    config = load_config(env={"TRIGGERHUB_SANDBOX": "None"}, overrides={"ALLOW_UNSANDBOXED_ROOT": True})
    assert (config.runtime.sandbox, config.runtime.allow_unsandboxed_root) == (SandboxChoice.NONE, True)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"TRIGGERHUB_SANDBOX": "firejail", "TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT": "maybe"})
    assert str(caught.value).splitlines()[1:] == [
        "  TRIGGERHUB_ALLOW_UNSANDBOXED_ROOT='maybe': expected true or false; expected a bool",
        "  TRIGGERHUB_SANDBOX='firejail': must be one of bwrap, none"]


def test_runtime_image_settings_and_foreign_variables_are_read_here():
    config = load_config(env={"TRIGGERHUB_RUNTIMES_DIR": str(REPOSITORY_RUNTIMES_DIR), "TRIGGERHUB_NODE_BINARY": "/opt/node20",
                              "DOCKER_HOST": "unix:///run/other.sock", "WEBHOOK_TOKEN": "s3cret-token",
                              "TRIGGERHUB_PG_PASSWORD": "compose-file-secret", "TRIGGERHUB_APIHOST": "http://h:1"})
    assert config.runtime.runtimes_dir == REPOSITORY_RUNTIMES_DIR
    assert config.runtime.node_binary == "/opt/node20"
    assert config.runtime.docker_host == "unix:///run/other.sock"
    assert config.examples_webhook_token == "s3cret-token"
    assert "s3cret-token" not in repr(config)
    assert load_config(env={"DOCKER_HOST": ""}).runtime.docker_host == DEFAULT_DOCKER_HOST
    with pytest.raises(ConfigError) as caught:  # foreign names are read without our prefix only
        load_config(env={"TRIGGERHUB_DOCKER_HOST": "unix:///x"})
    assert str(caught.value).splitlines()[1].startswith("  TRIGGERHUB_DOCKER_HOST: unknown setting; known: ")


def test_a_relative_runtimes_dir_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "rt" / "python").mkdir(parents=True)
    (tmp_path / "rt" / "python" / "proxy.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert load_config(env={"TRIGGERHUB_RUNTIMES_DIR": "rt"}).runtime.runtimes_dir == tmp_path.resolve() / "rt"


def test_client_settings_come_from_the_environment_unchecked():
    settings = client_settings({"TRIGGERHUB_HOME": "/h", "TRIGGERHUB_APIHOST": "http://h:1", "TRIGGERHUB_AUTH": "u:k",
                                "WSK_CONFIG_FILE": "/w/props", "TRIGGERHUB_PORT": "not checked here"})
    assert settings == ClientSettings(home=Path("/h"), apihost="http://h:1", auth="u:k", wskprops=Path("/w/props"),
                                      props=Path.home() / ".triggerhubprops")
    defaults = client_settings({})
    assert defaults.home == Path(".triggerhub") and defaults.apihost == "" and defaults.auth == ""
    assert defaults.wskprops == Path.home() / ".wskprops"
    assert (defaults.cacert, defaults.insecure) == ("", False)
    assert client_settings({"TRIGGERHUB_PROPS": "/p"}).props == Path("/p")
    tls = client_settings({"TRIGGERHUB_CACERT": "/ca.pem", "TRIGGERHUB_INSECURE": "Yes"})
    assert (tls.cacert, tls.insecure) == ("/ca.pem", True)


def test_feed_lease_settings_are_read_and_a_renewal_must_come_before_expiry():
    config = load_config(env={"TRIGGERHUB_FEED_LEASE_MS": "4000", "TRIGGERHUB_FEED_LEASE_RENEW_MS": "1000"})
    assert (config.feeds.lease_ms, config.feeds.lease_renew_ms) == (4000, 1000)
    assert (load_config(env={}).feeds.lease_ms, load_config(env={}).feeds.lease_renew_ms) == (10_000, 2_000)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"TRIGGERHUB_FEED_LEASE_MS": "3000", "TRIGGERHUB_FEED_LEASE_RENEW_MS": "3000"})
    assert str(caught.value) == ("invalid configuration:\n  TRIGGERHUB_FEED_LEASE_RENEW_MS=3000 must be above 0 "
                                 "and below TRIGGERHUB_FEED_LEASE_MS=3000: a lease is renewed before it expires")


def test_derived_trigger_state_is_in_faust_tables_unless_set_to_the_store():
    assert load_config(env={}).kafka.derive_state is DeriveState.TABLE
    assert load_config(env={"TRIGGERHUB_DERIVE_STATE": "Store"}).kafka.derive_state is DeriveState.STORE
    with pytest.raises(ConfigError) as refused:
        load_config(env={"TRIGGERHUB_DERIVE_STATE": "rows"})
    assert str(refused.value).splitlines()[1:] == [
        "  TRIGGERHUB_DERIVE_STATE='rows': must be one of store, table"]
