"""Configuration: one small frozen dataclass per subsystem, read once from TRIGGERHUB_* and flags.

`load_config(env, overrides)` reports every bad or unknown key at once as a ConfigError.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from triggerhub.errors import ConfigError

ENV_PREFIX = "TRIGGERHUB_"


class RuntimeChoice(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    PROCESS = "process"


class SandboxChoice(StrEnum):
    """How the process runtime isolates actions (the Docker runtime always uses containers)."""

    BWRAP = "bwrap"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 3233
    max_payload_bytes: int = 1024 * 1024
    max_code_bytes: int = 48 * 1024 * 1024
    max_blocking_wait_ms: int = 60_000
    tls_cert: str = ""  # PEM certificate chain; with tls_key the listener serves HTTPS only
    tls_key: str = ""
    auth_cache_s: float = 5.0  # how long a verified key is trusted before the store is asked again


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """OpenWhisk standalone's throttles and action limits (reference 1.5) for direct API calls.
    Events from feeds and the rule activations they cause have their own `feed_*` limits, high by
    default; reaching one holds the feed (it stops acknowledging its source) instead of refusing."""

    invocations_per_minute: int = 60
    concurrent_invocations: int = 30
    fires_per_minute: int = 60
    feed_events_per_minute: int = 600_000
    feed_activations_per_minute: int = 600_000
    feed_concurrent_activations: int = 1_000
    sequence_max_length: int = 50
    min_timeout_ms: int = 100
    max_timeout_ms: int = 300_000
    min_memory_mb: int = 128
    max_memory_mb: int = 512
    min_logs_mb: int = 0
    max_logs_mb: int = 10
    max_parameter_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = ""  # empty: SQLite file under home
    sqlite_synchronous: str = "NORMAL"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    choice: RuntimeChoice = RuntimeChoice.AUTO
    prewarm_count: int = 1
    pause_grace_s: float = 10.0
    idle_timeout_s: float = 600.0
    memory_budget_mb: int = 2048
    sandbox: SandboxChoice = SandboxChoice.BWRAP
    allow_unsandboxed_root: bool = False  # TRIGGERHUB_SANDBOX=none is refused as root without it


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Distributed mode: where the broker is and how topics are named and sized."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "triggerhub."
    partitions: int = 4
    session_timeout_ms: int = 10_000
    commit_interval_ms: int = 500
    invoker_concurrency: int = 32
    controller_id: int = 0
    healthy_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The embedded MQTT broker of `triggerhub up --mqtt-embedded` (always on 127.0.0.1)."""

    port: int = 1883


@dataclass(frozen=True, slots=True)
class HubConfig:
    home: Path = Path(".triggerhub")
    api: ApiConfig = field(default_factory=ApiConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    deploy_examples: bool = True

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.home / 'triggerhub.db').resolve()}"


# env key (without prefix) -> (section, field)
_ENV_KEYS: dict[str, tuple[str | None, str]] = {
    "HOME": (None, "home"),
    "DEPLOY_EXAMPLES": (None, "deploy_examples"),
    "HOST": ("api", "host"),
    "PORT": ("api", "port"),
    "MAX_PAYLOAD_BYTES": ("api", "max_payload_bytes"),
    "TLS_CERT": ("api", "tls_cert"),
    "TLS_KEY": ("api", "tls_key"),
    "AUTH_CACHE_S": ("api", "auth_cache_s"),
    "INVOCATIONS_PER_MINUTE": ("limits", "invocations_per_minute"),
    "CONCURRENT_INVOCATIONS": ("limits", "concurrent_invocations"),
    "FIRES_PER_MINUTE": ("limits", "fires_per_minute"),
    "FEED_EVENTS_PER_MINUTE": ("limits", "feed_events_per_minute"),
    "FEED_ACTIVATIONS_PER_MINUTE": ("limits", "feed_activations_per_minute"),
    "FEED_CONCURRENT_ACTIVATIONS": ("limits", "feed_concurrent_activations"),
    "SEQUENCE_MAX_LENGTH": ("limits", "sequence_max_length"),
    "STORE_URL": ("store", "url"),
    "SQLITE_SYNCHRONOUS": ("store", "sqlite_synchronous"),
    "RUNTIME": ("runtime", "choice"),
    "PREWARM_COUNT": ("runtime", "prewarm_count"),
    "PAUSE_GRACE_S": ("runtime", "pause_grace_s"),
    "IDLE_TIMEOUT_S": ("runtime", "idle_timeout_s"),
    "MEMORY_BUDGET_MB": ("runtime", "memory_budget_mb"),
    "SANDBOX": ("runtime", "sandbox"),
    "ALLOW_UNSANDBOXED_ROOT": ("runtime", "allow_unsandboxed_root"),
    "MQTT_PORT": ("mqtt", "port"),
    "KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "KAFKA_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "KAFKA_PARTITIONS": ("kafka", "partitions"),
    "KAFKA_SESSION_TIMEOUT_MS": ("kafka", "session_timeout_ms"),
    "KAFKA_COMMIT_INTERVAL_MS": ("kafka", "commit_interval_ms"),
    "INVOKER_CONCURRENCY": ("kafka", "invoker_concurrency"),
    "CONTROLLER_ID": ("kafka", "controller_id"),
    "INVOKER_HEALTHY_TIMEOUT_MS": ("kafka", "healthy_timeout_ms"),
    "INVOKER_HEARTBEAT_INTERVAL_MS": ("kafka", "heartbeat_interval_ms"),
}
# Variables with the prefix that belong to tools and tests, not to the hub's configuration.
_FOREIGN_KEYS = {"APIHOST", "AUTH", "NAMESPACE", "CACERT", "INSECURE", "PROPS"}
_FOREIGN_PREFIXES = ("TEST_",)


def _convert(raw: str, target: Any) -> Any:
    if isinstance(target, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if isinstance(target, StrEnum):
        return type(target)(raw.strip().lower())
    if isinstance(target, Path):
        return Path(raw)
    converter: Callable[[str], Any] = type(target)
    return converter(raw)


def load_config(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> HubConfig:
    """Build the config from TRIGGERHUB_* variables, then `overrides` (flag values, by env key
    name without prefix, e.g. {"PORT": 3234}). Every problem is reported in one ConfigError."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {k[len(ENV_PREFIX):]: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = HubConfig()
    sections: dict[str, Any] = {f.name: getattr(config, f.name) for f in fields(config) if f.name in {"api", "limits", "store", "runtime", "kafka", "mqtt"}}
    top: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in sorted(values.items()):
        if key not in _ENV_KEYS:
            if key in _FOREIGN_KEYS or key.startswith(_FOREIGN_PREFIXES):
                continue
            known = ", ".join(ENV_PREFIX + k for k in sorted(_ENV_KEYS))
            problems.append(f"{ENV_PREFIX}{key}: unknown setting; known: {known}")
            continue
        section, name = _ENV_KEYS[key]
        current = getattr(config, name) if section is None else getattr(sections[section], name)
        try:
            value = raw if not isinstance(raw, str) else _convert(raw, current)
        except ValueError as exc:
            problems.append(f"{ENV_PREFIX}{key}={raw!r}: {exc}; expected a {type(current).__name__}")
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            problems.append(f"{ENV_PREFIX}{key}={raw!r}: must not be negative")
            continue
        if section is None:
            top[name] = value
        else:
            sections[section] = replace(sections[section], **{name: value})
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return replace(config, **sections, **top)
