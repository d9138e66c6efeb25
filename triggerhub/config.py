"""Configuration: one small frozen dataclass per subsystem, read once from TRIGGERHUB_* and flags.

`load_config(env, overrides)` reports every bad or unknown key at once as a ConfigError.
Every environment variable triggerhub reads is read here: the hub's own `TRIGGERHUB_*` settings,
the few foreign ones it shares with other tools (`DOCKER_HOST`, `WEBHOOK_TOKEN`); through
`client_settings()`, what the `wsk`-shaped commands need (`TRIGGERHUB_APIHOST`, `TRIGGERHUB_AUTH`,
`WSK_CONFIG_FILE`); `PATH` for process-runtime actions (`search_path()`); and the whole
environment where users expect it, as a manifest's `$NAME` inputs (`environment_with()`).
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
DEFAULT_HOME = Path(".triggerhub")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The action proxies and image recipes of this checkout; TRIGGERHUB_RUNTIMES_DIR points elsewhere.
REPOSITORY_RUNTIMES_DIR = Path(__file__).resolve().parents[1] / "runtimes"


class RuntimeChoice(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    PROCESS = "process"


class PrewarmChoice(StrEnum):
    """When the process runtime's and Docker's stem cells (TRIGGERHUB_PREWARM_COUNT per kind) start."""

    FIRST_USE = "first-use"  # a kind's stem cells start after its first invoke (which is a cold start)
    START = "start"  # every kind's stem cells start with the hub (idle RSS: about 12 MiB python, 42 MiB node)


class SandboxChoice(StrEnum):
    """How the process runtime isolates actions (the Docker runtime always uses containers)."""

    BWRAP = "bwrap"
    NONE = "none"


class DeriveState(StrEnum):
    """Where distributed mode keeps derived triggers' keyed state (the embedded hub: its store)."""

    STORE = "store"  # PostgreSQL rows, changed in the transaction accepting each event (store/derived.py)
    TABLE = "table"  # the default: Faust tables in the workers, changelog topics in Kafka (engine/derive_table.py)


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
    retry_poll_ms: int = 200  # longest wait between looks for due retries kept by other processes
    retry_lease_ms: int = 5_000  # a claimed retry is kept from other processes this long


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = ""  # empty: SQLite file under home
    sqlite_synchronous: str = "NORMAL"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    choice: RuntimeChoice = RuntimeChoice.AUTO
    prewarm_count: int = 1
    prewarm: PrewarmChoice = PrewarmChoice.FIRST_USE  # PREWARM: when the stem cells start
    pause_grace_s: float = 10.0
    idle_timeout_s: float = 600.0
    memory_budget_mb: int = 2048
    sandbox: SandboxChoice = SandboxChoice.BWRAP
    allow_unsandboxed_root: bool = False  # TRIGGERHUB_SANDBOX=none is refused as root without it
    runtimes_dir: Path = REPOSITORY_RUNTIMES_DIR  # proxies (process runtime) and Dockerfiles (images)
    node_binary: str = "node"  # runs nodejs actions in process mode; copied into the nodejs image
    docker_host: str = DEFAULT_DOCKER_HOST  # DOCKER_HOST, as the docker CLI reads it


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
    derive_state: DeriveState = DeriveState.TABLE


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    """Distributed mode: feeds shared among `triggerhub feeds` processes by leases in the store.

    A process renews its leases every `lease_renew_ms`; a lease not renewed for `lease_ms` (its
    holder was killed or cut off) is claimed by a survivor at its next renewal round, so a dead
    process's feeds run elsewhere within about `lease_ms + lease_renew_ms` plus their start."""

    lease_ms: int = 10_000
    lease_renew_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The embedded MQTT broker of `triggerhub up --mqtt-embedded` (always on 127.0.0.1)."""

    port: int = 1883


@dataclass(frozen=True, slots=True)
class EventLogConfig:
    """How long trigger events are kept (for explain, replay and duplicate detection) and how many;
    0 turns a bound off. The pruner runs every `prune_interval_s`, deleting `prune_batch` rows
    per transaction."""

    retention_s: int = 7 * 24 * 3600
    max_per_trigger: int = 100_000
    max_total: int = 1_000_000
    prune_interval_s: float = 60.0
    prune_batch: int = 2_000
    replay_max_events: int = 10_000  # a replay naming more events is refused: narrow the window


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Where the hub's log lines go besides stderr: a size-rotated file (logging.handlers.RotatingFileHandler).
    At INFO the hub logs state changes only (start, stop, feeds up or down, errors); a line per event or
    activation is DEBUG (`-v`)."""

    file: str = ""  # empty: stderr only
    file_max_bytes: int = 10 * 1024 * 1024  # the file is rotated when it would pass this size
    file_backups: int = 5  # rotated files kept (hub.log.1 ... hub.log.5); the disk holds at most 6 files


@dataclass(frozen=True, slots=True)
class ObserveConfig:
    """Metrics and lineage (observe/): on by default; off only to measure what they cost."""

    metrics: bool = True  # METRICS: count and time into the Prometheus registry
    lineage: bool = True  # LINEAGE: traceparent, rule decisions and event links on every record
    metrics_port: int = 0  # METRICS_PORT: loopback /metrics of a worker, invoker or feeds process; 0: none
    metrics_token: str = field(default="", repr=False)  # METRICS_TOKEN: Bearer token /metrics asks for; "": none
    metrics_max_names: int = 500  # METRICS_MAX_NAMES: trigger and rule labels kept; later names count as `other`
    otel: str = "off"  # OTEL: export lineage spans with OpenTelemetry: off | console | otlp (the `otel` extra)


@dataclass(frozen=True, slots=True)
class HubConfig:
    home: Path = DEFAULT_HOME
    api: ApiConfig = field(default_factory=ApiConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    events: EventLogConfig = field(default_factory=EventLogConfig)
    log: LogConfig = field(default_factory=LogConfig)
    deploy_examples: bool = True
    # False: `up` and `controller` leave ~/.triggerhubprops alone (a benchmark's or a test's hub)
    write_props: bool = True
    examples_webhook_token: str = field(default="", repr=False)  # WEBHOOK_TOKEN; empty: one is made per home

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.home / 'triggerhub.db').resolve()}"


# env key (without prefix) -> (section, field)
_ENV_KEYS: dict[str, tuple[str | None, str]] = {
    "HOME": (None, "home"),
    "DEPLOY_EXAMPLES": (None, "deploy_examples"),
    "WRITE_PROPS": (None, "write_props"),
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
    "RETRY_POLL_MS": ("limits", "retry_poll_ms"),
    "RETRY_LEASE_MS": ("limits", "retry_lease_ms"),
    "SEQUENCE_MAX_LENGTH": ("limits", "sequence_max_length"),
    "STORE_URL": ("store", "url"),
    "SQLITE_SYNCHRONOUS": ("store", "sqlite_synchronous"),
    "RUNTIME": ("runtime", "choice"),
    "PREWARM_COUNT": ("runtime", "prewarm_count"),
    "PREWARM": ("runtime", "prewarm"),
    "PAUSE_GRACE_S": ("runtime", "pause_grace_s"),
    "IDLE_TIMEOUT_S": ("runtime", "idle_timeout_s"),
    "MEMORY_BUDGET_MB": ("runtime", "memory_budget_mb"),
    "SANDBOX": ("runtime", "sandbox"),
    "ALLOW_UNSANDBOXED_ROOT": ("runtime", "allow_unsandboxed_root"),
    "RUNTIMES_DIR": ("runtime", "runtimes_dir"),
    "NODE_BINARY": ("runtime", "node_binary"),
    "MQTT_PORT": ("mqtt", "port"),
    "METRICS": ("observe", "metrics"),
    "LINEAGE": ("observe", "lineage"),
    "METRICS_PORT": ("observe", "metrics_port"),
    "METRICS_TOKEN": ("observe", "metrics_token"),
    "METRICS_MAX_NAMES": ("observe", "metrics_max_names"),
    "OTEL": ("observe", "otel"),
    "EVENT_RETENTION_S": ("events", "retention_s"),
    "EVENT_MAX_PER_TRIGGER": ("events", "max_per_trigger"),
    "EVENT_MAX_TOTAL": ("events", "max_total"),
    "EVENT_PRUNE_INTERVAL_S": ("events", "prune_interval_s"),
    "EVENT_PRUNE_BATCH": ("events", "prune_batch"),
    "REPLAY_MAX_EVENTS": ("events", "replay_max_events"),
    "LOG_FILE": ("log", "file"),
    "LOG_FILE_MAX_BYTES": ("log", "file_max_bytes"),
    "LOG_FILE_BACKUPS": ("log", "file_backups"),
    "KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "KAFKA_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "KAFKA_PARTITIONS": ("kafka", "partitions"),
    "KAFKA_SESSION_TIMEOUT_MS": ("kafka", "session_timeout_ms"),
    "KAFKA_COMMIT_INTERVAL_MS": ("kafka", "commit_interval_ms"),
    "INVOKER_CONCURRENCY": ("kafka", "invoker_concurrency"),
    "CONTROLLER_ID": ("kafka", "controller_id"),
    "INVOKER_HEALTHY_TIMEOUT_MS": ("kafka", "healthy_timeout_ms"),
    "INVOKER_HEARTBEAT_INTERVAL_MS": ("kafka", "heartbeat_interval_ms"),
    "DERIVE_STATE": ("kafka", "derive_state"),
    "FEED_LEASE_MS": ("feeds", "lease_ms"),
    "FEED_LEASE_RENEW_MS": ("feeds", "lease_renew_ms"),
}
# Variables without the prefix that the hub reads because other tools define them (full names).
_FOREIGN_ENV_KEYS: dict[str, tuple[str | None, str]] = {
    "DOCKER_HOST": ("runtime", "docker_host"),
    "WEBHOOK_TOKEN": (None, "examples_webhook_token"),  # the webhook example manifest's $WEBHOOK_TOKEN
}
# Variables with the prefix that belong to tools and tests, not to the hub's configuration:
# the CLI's client side (client_settings), runtimes/base/build-rootfs.sh, scripts/services/dockerd.sh,
# deploy/docker-compose.yml (whose instructions export TRIGGERHUB_PG_PASSWORD), and the proxies.
_FOREIGN_KEYS = {"APIHOST", "AUTH", "NAMESPACE", "DEBIAN_MIRROR", "DEB_CACHE", "DOCKERD_TIMEOUT_S", "PG_PASSWORD",
                 "SOCKET", "LIFELINE_FD", "CACERT", "INSECURE", "PROPS"}
_FOREIGN_PREFIXES = ("TEST_",)


class _Unusable(Exception):
    """A value of the right type that cannot be used; the message says why and what to do."""


def _runtimes_dir(path: Path) -> Path:
    # Absolute, because the proxies run in their own working directories.
    if not (path / "python" / "proxy.py").is_file():
        raise _Unusable(f"no python/proxy.py in {path}; point it at the runtimes/ folder of a triggerhub "
                        f"checkout (this one's is {REPOSITORY_RUNTIMES_DIR})")
    return path.resolve()


# Checks of a converted value beyond its type: env key -> the value to keep, or _Unusable.
def _otel(choice: str) -> str:
    if choice.strip().lower() not in OTEL_CHOICES:
        raise _Unusable(f"not one of {', '.join(OTEL_CHOICES)}; off exports nothing")
    return choice.strip().lower()


OTEL_CHOICES = ("off", "console", "otlp")
_CHECKS: dict[str, Callable[[Any], Any]] = {"OTEL": _otel, "RUNTIMES_DIR": _runtimes_dir,
                                             "DOCKER_HOST": lambda host: host or DEFAULT_DOCKER_HOST}


def _unchanged(value: Any) -> Any:
    return value


def _convert(raw: str, target: Any) -> Any:
    if isinstance(target, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if isinstance(target, StrEnum):
        choices = type(target)
        try:
            return choices(raw.strip().lower())
        except ValueError:
            raise ValueError(f"must be one of {', '.join(choice.value for choice in choices)}") from None
    if isinstance(target, Path):
        return Path(raw)
    converter: Callable[[str], Any] = type(target)
    return converter(raw)


def load_config(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> HubConfig:
    """Build the config from TRIGGERHUB_* variables (and the foreign ones above), then `overrides`
    (flag values, by env key name without prefix, e.g. {"PORT": 3234}). Every problem is reported
    in one ConfigError."""
    env = os.environ if env is None else env
    # shown name (as the user spells it) -> (env key, raw value)
    values: dict[str, tuple[str, Any]] = {k: (k[len(ENV_PREFIX):], v) for k, v in env.items() if k.startswith(ENV_PREFIX)}
    values.update({k: (k, v) for k, v in env.items() if k in _FOREIGN_ENV_KEYS})
    values.update({ENV_PREFIX + k: (k, v) for k, v in (overrides or {}).items() if v is not None})
    config = HubConfig()
    sections: dict[str, Any] = {f.name: getattr(config, f.name) for f in fields(config) if f.name in {"api", "limits", "store", "runtime", "kafka", "mqtt", "observe", "feeds", "events", "log"}}
    top: dict[str, Any] = {}
    problems: list[str] = []
    for shown, (key, raw) in sorted(values.items()):
        target = _FOREIGN_ENV_KEYS.get(key) if shown == key else _ENV_KEYS.get(key)
        if target is None:
            if key in _FOREIGN_KEYS or key.startswith(_FOREIGN_PREFIXES):
                continue
            known = ", ".join(ENV_PREFIX + k for k in sorted(_ENV_KEYS))
            problems.append(f"{shown}: unknown setting; known: {known}")
            continue
        section, name = target
        current = getattr(config, name) if section is None else getattr(sections[section], name)
        try:
            value = raw if not isinstance(raw, str) else _convert(raw, current)
        except ValueError as exc:
            expected = "" if isinstance(current, StrEnum) else f"; expected a {type(current).__name__}"
            problems.append(f"{shown}={raw!r}: {exc}{expected}")
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            problems.append(f"{shown}={raw!r}: must not be negative")
            continue
        try:
            value = _CHECKS.get(key, _unchanged)(value)
        except _Unusable as exc:
            problems.append(f"{shown}={raw!r}: {exc}")
            continue
        if section is None:
            top[name] = value
        else:
            sections[section] = replace(sections[section], **{name: value})
    feeds = sections["feeds"]
    if not 0 < feeds.lease_renew_ms < feeds.lease_ms:
        problems.append(f"{ENV_PREFIX}FEED_LEASE_RENEW_MS={feeds.lease_renew_ms} must be above 0 and below "
                        f"{ENV_PREFIX}FEED_LEASE_MS={feeds.lease_ms}: a lease is renewed before it expires")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return replace(config, **sections, **top)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What the commands that talk to a running hub read: where it is and who to be."""

    home: Path  # TRIGGERHUB_HOME: the local hub's state, with credentials.json
    apihost: str  # TRIGGERHUB_APIHOST; empty: not set
    auth: str  # TRIGGERHUB_AUTH; empty: not set
    wskprops: Path  # WSK_CONFIG_FILE, else ~/.wskprops (the wsk CLI's file)
    props: Path  # TRIGGERHUB_PROPS, else ~/.triggerhubprops (written by `triggerhub up`)
    cacert: str = ""  # TRIGGERHUB_CACERT: the CA of the hub's certificate; empty: the system's CAs
    insecure: bool = False  # TRIGGERHUB_INSECURE: do not verify the hub's certificate (wsk -i)


def client_settings(env: Mapping[str, str] | None = None) -> ClientSettings:
    """The client-side settings. Unlike `load_config` these are not checked: a command that only
    talks to a hub must work whatever the hub's own settings in this shell say."""
    env = os.environ if env is None else env
    return ClientSettings(
        home=Path(env.get(ENV_PREFIX + "HOME") or DEFAULT_HOME),
        apihost=env.get(ENV_PREFIX + "APIHOST", ""),
        auth=env.get(ENV_PREFIX + "AUTH", ""),
        wskprops=Path(env.get("WSK_CONFIG_FILE") or Path.home() / ".wskprops"),
        cacert=env.get(ENV_PREFIX + "CACERT", ""),
        insecure=env.get(ENV_PREFIX + "INSECURE", "").strip().lower() in {"1", "true", "yes", "on"},
        props=Path(env.get(ENV_PREFIX + "PROPS") or Path.home() / ".triggerhubprops"),
    )


def search_path() -> str:
    """PATH, the one variable of the hub's environment that process-runtime actions inherit."""
    return os.environ.get("PATH", "/usr/bin:/bin")


def environment_with(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`: what a tool the hub runs with the user's settings
    (runtimes/base/build-rootfs.sh) and a manifest's `$NAME` inputs see. Action runtimes get a
    clean environment instead."""
    return {**os.environ, **extra}


def docker_host_of_environment(env: Mapping[str, str] | None = None) -> str:
    """DOCKER_HOST as `load_config` reads it, for Docker clients made outside the composition root
    (tests, benchmarks)."""
    return (os.environ if env is None else env).get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
