"""Service settings, read from ``NATIVEKIT_*`` environment variables and ``.env``.

Every field maps to one variable: ``redis_url`` is ``NATIVEKIT_REDIS_URL``.
Secrets can be given inline or, as Kubernetes mounts them, as files
(``NATIVEKIT_REDIS_PASSWORD_FILE=/var/run/secrets/redis/password``).
Passwords never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nativekit.errors import ConfigError

ENV_PREFIX = "NATIVEKIT_"

LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Environment = Literal["development", "test", "staging", "production"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Readiness = Literal["critical", "warn", "off"]

_REDIS_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+sentinel")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (also with several hosts)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return url
    netloc = f"{user}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _read_secret(path: Path, variable: str) -> SecretStr:
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(
            f"cannot read the secret file given by {ENV_PREFIX}{variable.upper()}: "
            f"{exc.strerror or exc}"
        ) from None


class Settings(BaseSettings):
    """Settings of one service; construct with overrides or let the environment fill it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # -- identity and logging ------------------------------------------------
    service_name: str | None = Field(
        None, description="Overrides the name given to Service(); used in logs, metrics, traces."
    )
    environment: Environment = Field("production", description="Deployment environment.")
    log_format: LogFormat | None = Field(
        None, description="'json' or 'console'; default console in development, json otherwise."
    )
    log_level: LogLevel = Field(
        "INFO", description="Minimum level of emitted log lines (any case: 'warning' too)."
    )
    access_log: bool = Field(True, description="Write one log line per HTTP request.")

    # -- Redis ------------------------------------------------------------------
    redis_url: str = Field(
        "memory://",
        description="'memory://' (in-process), 'redis://host:port/db', 'rediss://…' (TLS), "
        "'unix:///path/to/socket' or 'redis+sentinel://host:port[,host:port]/master[/db]' "
        "(the master that Redis Sentinel names, followed through failovers).",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels (when they require AUTH)."
    )
    redis_sentinel_password_file: Path | None = Field(
        None, description="File holding the password of the Sentinels."
    )
    redis_password: SecretStr | None = Field(None, description="Redis password (ACL or AUTH).")
    redis_password_file: Path | None = Field(None, description="File holding the Redis password.")
    redis_tls_ca_file: Path | None = Field(None, description="CA bundle to verify Redis TLS.")
    redis_tls_cert_file: Path | None = Field(None, description="Client certificate for Redis mTLS.")
    redis_tls_key_file: Path | None = Field(None, description="Client key for Redis mTLS.")
    redis_max_connections: int = Field(
        64,
        ge=1,
        description="Connection pool size per service; a call waits up to "
        "NATIVEKIT_OPERATION_TIMEOUT for a free connection.",
    )

    # -- Kafka ------------------------------------------------------------------
    kafka_url: str = Field(
        "memory://", description="'memory://' (in-process) or 'kafka://host:port[,host:port]'."
    )
    kafka_tls: bool = Field(False, description="Connect to Kafka with TLS.")
    kafka_tls_ca_file: Path | None = Field(None, description="CA bundle to verify Kafka TLS.")
    kafka_tls_cert_file: Path | None = Field(None, description="Client certificate for Kafka mTLS.")
    kafka_tls_key_file: Path | None = Field(None, description="Client key for Kafka mTLS.")
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password."
    )
    kafka_idempotent_producer: bool = Field(
        True, description="Use Kafka's idempotent producer (turn off for brokers without it)."
    )
    kafka_linger_ms: int = Field(0, ge=0, description="Producer linger before sending a batch.")
    kafka_compression: Compression = Field("none", description="Producer compression codec.")

    # -- timeouts and HTTP ------------------------------------------------------
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a backend.")
    operation_timeout: float = Field(2.0, gt=0, description="Seconds one backend call may take.")
    health_timeout: float = Field(2.0, gt=0, description="Seconds one readiness check may take.")
    health_cache_ttl: float = Field(
        1.0, ge=0, description="Seconds readiness results are reused, so probe storms stay cheap."
    )
    redis_readiness: Readiness = Field(
        "critical",
        description="How the redis:ping check counts in /readyz: critical (fails it when "
        "sagas, deduplicating consumers, command handlers or svc.redis need Redis; warns for "
        "cache-only use), warn (always) or off.",
    )
    kafka_readiness: Readiness = Field(
        "critical",
        description="How the kafka:metadata check counts in /readyz: critical, warn or off.",
    )
    shutdown_delay: float = Field(
        0.0,
        ge=0,
        description="Seconds between SIGTERM and closing the listener, readiness failing meanwhile "
        "(lets load balancers stop routing first).",
    )
    shutdown_grace: float = Field(
        25.0, ge=0, description="Seconds in-flight requests get to finish before components stop."
    )
    request_body_limit: int = Field(
        1_048_576,
        ge=0,
        description="Largest accepted request body in bytes (413 above; 0 disables).",
    )
    gc_young_threshold: int = Field(
        10_000,
        ge=0,
        description="Allocations between the garbage collector's young-generation passes "
        "while the service runs (Python's default is 700, which makes the collector run "
        "thousands of times a second under load); what startup created is also frozen out "
        "of later passes (gc.freeze). 0 leaves the collector alone.",
    )

    # -- observability ----------------------------------------------------------
    metrics_enabled: bool = Field(True, description="Serve /metrics and record HTTP metrics.")
    tracing_enabled: bool = Field(True, description="Create OpenTelemetry spans for requests.")
    probe_telemetry: bool = Field(
        False,
        description="Include probe paths (/livez, /readyz, /startupz) in logs/metrics/traces.",
    )

    # -- cache --------------------------------------------------------------------
    cache_timeout: float = Field(
        0.25,
        gt=0,
        description="Seconds one cache call to Redis may take before it counts as "
        "failed and the function runs uncached.",
    )
    cache_max_value_bytes: int = Field(
        1_048_576, ge=1, description="Largest encoded value stored; larger results are not cached."
    )
    cache_memory_max_entries: int = Field(
        10_000, ge=1, description="Entries kept by the in-process cache (memory:// Redis URL)."
    )
    cache_near_enabled: bool = Field(
        False,
        description="Keep hot values in process memory in front of Redis, invalidated "
        "across replicas through Redis pub/sub.",
    )
    cache_near_size: int = Field(1_000, ge=1, description="Entries kept by the near cache.")
    cache_near_max_age: float = Field(
        10.0,
        gt=0,
        description="Longest time a value stays in the near cache (bounds staleness "
        "if an invalidation message is lost).",
    )
    cache_breaker_failures: int = Field(
        5, ge=1, description="Consecutive cache failures that open the circuit breaker."
    )
    cache_breaker_reset: float = Field(
        5.0, gt=0, description="Seconds the cache breaker stays open before a trial call."
    )
    cache_lock_lease: float = Field(
        2.0, gt=0, description="Seconds a cross-process computation lease lasts (lock=True)."
    )

    # -- sagas --
    saga_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds a replica's lease on a running saga lasts (renewed "
        "every third of it); after a crash, another replica resumes the saga this much later.",
    )
    saga_recovery_interval: float = Field(
        5.0, gt=0, description="Seconds between passes that claim sagas with expired leases."
    )
    saga_retention_seconds: float = Field(
        604_800.0, gt=0, description="Seconds COMPLETED, COMPENSATED and ABORTED sagas are kept."
    )
    saga_backlog_warn: int = Field(
        100, ge=0, description="Readiness warns when more sagas than this wait for recovery."
    )
    saga_key_prefix: str | None = Field(
        None, description="Redis key prefix of saga state; default 'nk:saga:<service name>'."
    )
    saga_shards: int = Field(
        16,
        ge=1,
        le=1024,
        description="Hash-tag shards of saga state in Redis (fixed for the "
        "life of the data: changing it hides existing sagas).",
    )
    saga_operator_api: bool = Field(
        False, description="Serve the saga operator HTTP API (internal networks only)."
    )
    saga_operator_prefix: str = Field(
        "/_nativekit/sagas", description="Path prefix of the saga operator HTTP API."
    )

    # -- saga commands (command/reply steps, transactional outbox) --
    saga_reply_topic: str | None = Field(
        None,
        description="Topic this service's sagas receive command replies on; "
        "default '<service name>.replies'.",
    )
    outbox_relay: bool = Field(
        False,
        description="Run the outbox relay even when no saga has command steps "
        "(for sagas that only publish events with outbox_publish).",
    )
    outbox_poll_interval: float = Field(
        0.2, gt=0, description="Seconds between outbox reads when no local write woke the relay."
    )
    outbox_claim_after: float = Field(
        10.0,
        gt=0,
        description="Seconds an outbox entry read by a relay may stay unpublished "
        "before another relay takes it over (the first one died).",
    )
    consumer_fetch_max_wait_ms: int = Field(
        500,
        ge=0,
        description="Longest time the broker may hold a fetch waiting for records "
        "(aiokafka fetch_max_wait_ms); lower it for request/reply latency (command replies).",
    )
    outbox_batch: int = Field(200, ge=1, description="Outbox entries the relay reads at once.")
    outbox_backlog_warn: int = Field(
        1000, ge=0, description="Readiness warns when more outbox entries than this wait."
    )

    # -- messaging --------------------------------------------------------------
    consumer_retries: int = Field(
        3, ge=0, description="Handler retries before a message goes to the dead-letter topic."
    )
    consumer_retry_backoff: float = Field(
        0.2, gt=0, description="Seconds before the first retry; doubles per attempt."
    )
    consumer_retry_backoff_max: float = Field(
        10.0, gt=0, description="Longest pause between two attempts, in seconds."
    )
    consumer_max_in_flight: int = Field(
        2000, ge=1, description="Messages a consumer holds fetched but not finished."
    )
    consumer_fetch_max_records: int = Field(
        500, ge=1, description="Records per fetch (and per dedup round trip)."
    )
    consumer_drain_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds running handlers get on partition revoke or shutdown before "
        "they are cancelled (their messages are redelivered).",
    )
    consumer_commit_interval: float = Field(
        0.1,
        ge=0,
        description="Shortest time in seconds between two offset commits of a consumer; "
        "finished messages are committed together (a revoke or shutdown commits at once, "
        "and DONE marks, written first, skip what a crash redelivers); 0 commits after "
        "every flush.",
    )
    consumer_session_timeout: float = Field(
        10.0, gt=0, description="Kafka group session timeout in seconds (dead member detection)."
    )
    consumer_auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts reading a partition."
    )
    consumer_group_default: Literal["consumer", "service"] = Field(
        "consumer",
        description="The group of a consumer declared without group=: 'consumer' gives each "
        "its own, '<service>.<handler name>' (one consumer's rebalance does not stop the "
        "others); 'service' keeps the previous default, one group named after the service.",
    )
    consumer_group_instance_id: str | None = Field(
        default_factory=lambda: os.environ.get("HOSTNAME") or None,
        description="Static group membership (Kafka's group.instance.id, suffixed with the "
        "handler name): a restarted replica takes its partitions back without a rebalance. "
        "Default: the HOSTNAME variable (the pod name on Kubernetes) when set; '' turns it off.",
    )
    consumer_join_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a consumer may take to join its group after startup before "
        "/readyz and /startupz say it is overdue (it keeps trying; the service serves meanwhile).",
    )
    consumer_lag_interval: float = Field(
        5.0, gt=0, description="Seconds between two measurements of nativekit_consumer_lag."
    )
    dedup_lease: float = Field(
        30.0,
        gt=0,
        description="Seconds a claimed message stays IN_PROGRESS without renewal before another "
        "worker may take it over.",
    )
    dedup_retention: float = Field(
        604_800.0, gt=0, description="Seconds DONE/DEAD marks are kept (default 7 days)."
    )
    redelivery_horizon: float = Field(
        259_200.0,
        gt=0,
        description="Longest time after which a message may still be redelivered (consumer "
        "downtime, replays); the dedup retention must be at least this long.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in _REDIS_SCHEMES or (scheme != "memory" and value.count("://") != 1):
            raise ValueError(
                f"{mask_url(value)!r} is not a Redis URL; expected 'memory://', "
                "'redis://host:port/db', 'rediss://host:port/db', 'unix:///path' or "
                "'redis+sentinel://host:port[,host:port]/master[/db]'"
            )
        if scheme == "redis+sentinel":
            parse_sentinel_url(value)
        return value

    @field_validator("kafka_url")
    @classmethod
    def _check_kafka_url(cls, value: str) -> str:
        if value == "memory://":
            return value
        scheme, _, rest = value.partition("://")
        hosts = [h for h in rest.split(",") if h]
        if scheme != "kafka" or not hosts or not all(_is_host_port(h) for h in hosts):
            raise ValueError(
                f"{mask_url(value)!r} is not a Kafka URL; expected "
                "'kafka://host:port[,host:port]' or 'memory://'"
            )
        return value

    @model_validator(mode="after")
    def _resolve_secret_files(self) -> Settings:
        if self.redis_password_file is not None:
            self.redis_password = _read_secret(self.redis_password_file, "redis_password_file")
        if self.redis_sentinel_password_file is not None:
            self.redis_sentinel_password = _read_secret(
                self.redis_sentinel_password_file, "redis_sentinel_password_file"
            )
        if self.kafka_sasl_password_file is not None:
            self.kafka_sasl_password = _read_secret(
                self.kafka_sasl_password_file, "kafka_sasl_password_file"
            )
        if self.kafka_sasl_mechanism and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "kafka_sasl_mechanism is set but NATIVEKIT_KAFKA_SASL_USERNAME and a password "
                "(NATIVEKIT_KAFKA_SASL_PASSWORD or _FILE) are missing"
            )
        return self

    @property
    def resolved_log_format(self) -> LogFormat:
        """The log format in effect: the explicit one, else by environment."""
        if self.log_format is not None:
            return self.log_format
        return "console" if self.environment == "development" else "json"

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        """``host:port`` entries of ``kafka_url`` (empty for ``memory://``)."""
        if self.kafka_url == "memory://":
            return []
        return [h for h in self.kafka_url.partition("://")[2].split(",") if h]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("redis_url", "kafka_url") and isinstance(value, str):
                yield name, mask_url(value)
            else:
                yield name, value


class SentinelURL(NamedTuple):
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split ``redis+sentinel://[user:password@]host:port[,host:port]/master[/db]``; the
    user and password are those of the Redis servers, not of the Sentinels.

    Raises:
        ValueError: the URL lacks a Sentinel address or the master's name, or a port or
            the database number is not a number.
    """
    expected = "expected 'redis+sentinel://host:port[,host:port]/master[/db]'"
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    entries = [h for h in hosts.split(",") if h]
    if not entries or not all(_is_host_port(h) for h in entries):
        raise ValueError(f"{mask_url(url)!r} names no Sentinel as host:port; {expected}")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(
            f"{mask_url(url)!r} does not name the master (and optionally the database); {expected}"
        )
    user, colon, password = userinfo.partition(":")
    return SentinelURL(
        [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in entries],
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        unquote(user) or None,
        unquote(password) if colon else None,
    )


def _is_host_port(entry: str) -> bool:
    host, sep, port = entry.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = f"expected {error.get('ctx', {}).get('expected', message)}"
        lines.append(f"{variable}: {message}")
    return "Invalid nativekit settings: " + "; ".join(lines)
