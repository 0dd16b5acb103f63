"""The settings of the connections to Redis and Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from nativekit.settings._groups import GROUP_CONFIG
from nativekit.settings._urls import check_kafka_url, check_redis_url, read_secret

SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Readiness = Literal["critical", "warn", "off"]


class RedisSettings(BaseModel):
    """Redis (or Valkey): sagas, outbox, consumer dedup and cache share it."""

    model_config = GROUP_CONFIG

    url: str = Field(
        "memory://",
        description="'memory://' (in-process), 'redis://host:port/db', 'rediss://…' (TLS), "
        "'unix:///path/to/socket', 'redis+sentinel://host:port[,host:port]/master[/db]' "
        "(the master that Redis Sentinel names, followed through failovers) or "
        "'redis+cluster://host:port[,host:port]' (Redis Cluster; 'rediss+cluster://' for TLS).",
    )
    password: SecretStr | None = Field(None, description="Redis password (ACL or AUTH).")
    password_file: Path | None = Field(None, description="File holding the Redis password.")
    sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels (when they require AUTH)."
    )
    sentinel_password_file: Path | None = Field(
        None, description="File holding the password of the Sentinels."
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify Redis TLS.")
    tls_cert_file: Path | None = Field(None, description="Client certificate for Redis mTLS.")
    tls_key_file: Path | None = Field(None, description="Client key for Redis mTLS.")
    max_connections: int = Field(
        64,
        ge=1,
        description="Connection pool size per service; a call waits up to "
        "NATIVEKIT_OPERATION_TIMEOUT_SECONDS for a free connection.",
    )
    readiness: Readiness = Field(
        "critical",
        description="How the redis:ping check counts in /readyz: critical (fails it when "
        "sagas, deduplicating consumers, command handlers or svc.redis need Redis; warns for "
        "cache-only use), warn (always) or off.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_redis_url(value)

    @model_validator(mode="after")
    def _read_secret_files(self) -> RedisSettings:
        if self.password_file is not None:
            self.password = read_secret(self.password_file, "redis.password_file")
        if self.sentinel_password_file is not None:
            self.sentinel_password = read_secret(
                self.sentinel_password_file, "redis.sentinel_password_file"
            )
        return self


class KafkaSettings(BaseModel):
    """The Kafka connection and producer, for publishing and consuming."""

    model_config = GROUP_CONFIG

    url: str = Field(
        "memory://", description="'memory://' (in-process) or 'kafka://host:port[,host:port]'."
    )
    tls: bool = Field(False, description="Connect to Kafka with TLS.")
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify Kafka TLS.")
    tls_cert_file: Path | None = Field(None, description="Client certificate for Kafka mTLS.")
    tls_key_file: Path | None = Field(None, description="Client key for Kafka mTLS.")
    sasl_mechanism: SaslMechanism | None = Field(
        None, description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password.")
    idempotent_producer: bool = Field(
        True, description="Use Kafka's idempotent producer (turn off for brokers without it)."
    )
    linger_seconds: float = Field(
        0.005,
        ge=0,
        description=(
            "Producer linger while many publishes are in flight (millisecond precision): they "
            "share record batches; a publish alone goes out at once. 0: never linger."
        ),
    )
    compression: Compression = Field("none", description="Producer compression codec.")
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a request to the broker may go unanswered before its "
        "connection is dropped and made again (a consumer waits at least its session "
        "timeout + 5 s: the broker holds a group join that long).",
    )
    readiness: Readiness = Field(
        "critical",
        description="How the kafka:metadata check counts in /readyz: critical, warn or off.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_kafka_url(value)

    @model_validator(mode="after")
    def _read_secret_files(self) -> KafkaSettings:
        if self.sasl_password_file is not None:
            self.sasl_password = read_secret(self.sasl_password_file, "kafka.sasl_password_file")
        if self.sasl_mechanism and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                "NATIVEKIT_KAFKA_SASL_MECHANISM is set but NATIVEKIT_KAFKA_SASL_USERNAME and a "
                "password (NATIVEKIT_KAFKA_SASL_PASSWORD or _FILE) are missing"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` entries of ``url`` (empty for ``memory://``)."""
        if self.url == "memory://":
            return []
        return [h for h in self.url.partition("://")[2].split(",") if h]
