"""Read-only flat names of nativekit 0.1 (``settings.saga_lease_seconds``).

Kept for one release while callers move to the groups (``settings.saga.lease_seconds``);
reading one warns (``DeprecationWarning``) naming the new path;
one property per moved name of ``nativekit/settings/_renames.py`` (a test checks that).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from nativekit.settings._connections import Compression, Readiness, SaslMechanism
from nativekit.settings._groups import LogFormat, LogLevel
from nativekit.settings._renames import MOVED

if TYPE_CHECKING:
    from nativekit.settings._connections import KafkaSettings, RedisSettings
    from nativekit.settings._groups import (
        CacheSettings,
        ConsumerSettings,
        HttpSettings,
        SagaSettings,
        TelemetrySettings,
    )


class FlatNames:
    """The 0.1 attribute names, each reading its grouped setting."""

    if TYPE_CHECKING:
        connect_timeout_seconds: float
        operation_timeout_seconds: float
        http: HttpSettings
        telemetry: TelemetrySettings
        redis: RedisSettings
        kafka: KafkaSettings
        consumer: ConsumerSettings
        saga: SagaSettings
        cache: CacheSettings

    @property
    def connect_timeout(self) -> float:
        return self.connect_timeout_seconds

    @property
    def operation_timeout(self) -> float:
        return self.operation_timeout_seconds

    @property
    def access_log(self) -> bool:
        return self.http.access_log

    @property
    def request_body_limit(self) -> int:
        return self.http.max_body_bytes

    @property
    def shutdown_delay(self) -> float:
        return self.http.shutdown_delay_seconds

    @property
    def shutdown_grace(self) -> float:
        return self.http.shutdown_grace_seconds

    @property
    def log_format(self) -> LogFormat | None:
        return self.telemetry.log_format

    @property
    def log_level(self) -> LogLevel:
        return self.telemetry.log_level

    @property
    def metrics_enabled(self) -> bool:
        return self.telemetry.metrics_enabled

    @property
    def tracing_enabled(self) -> bool:
        return self.telemetry.tracing_enabled

    @property
    def probe_telemetry(self) -> bool:
        return self.telemetry.include_probes

    @property
    def health_timeout(self) -> float:
        return self.telemetry.health_timeout_seconds

    @property
    def health_cache_ttl(self) -> float:
        return self.telemetry.health_cache_seconds

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def redis_sentinel_password(self) -> SecretStr | None:
        return self.redis.sentinel_password

    @property
    def redis_sentinel_password_file(self) -> Path | None:
        return self.redis.sentinel_password_file

    @property
    def redis_password(self) -> SecretStr | None:
        return self.redis.password

    @property
    def redis_password_file(self) -> Path | None:
        return self.redis.password_file

    @property
    def redis_tls_ca_file(self) -> Path | None:
        return self.redis.tls_ca_file

    @property
    def redis_tls_cert_file(self) -> Path | None:
        return self.redis.tls_cert_file

    @property
    def redis_tls_key_file(self) -> Path | None:
        return self.redis.tls_key_file

    @property
    def redis_max_connections(self) -> int:
        return self.redis.max_connections

    @property
    def redis_readiness(self) -> Readiness:
        return self.redis.readiness

    @property
    def kafka_url(self) -> str:
        return self.kafka.url

    @property
    def kafka_tls(self) -> bool:
        return self.kafka.tls

    @property
    def kafka_tls_ca_file(self) -> Path | None:
        return self.kafka.tls_ca_file

    @property
    def kafka_tls_cert_file(self) -> Path | None:
        return self.kafka.tls_cert_file

    @property
    def kafka_tls_key_file(self) -> Path | None:
        return self.kafka.tls_key_file

    @property
    def kafka_sasl_mechanism(self) -> SaslMechanism | None:
        return self.kafka.sasl_mechanism

    @property
    def kafka_sasl_username(self) -> str | None:
        return self.kafka.sasl_username

    @property
    def kafka_sasl_password(self) -> SecretStr | None:
        return self.kafka.sasl_password

    @property
    def kafka_sasl_password_file(self) -> Path | None:
        return self.kafka.sasl_password_file

    @property
    def kafka_idempotent_producer(self) -> bool:
        return self.kafka.idempotent_producer

    @property
    def kafka_linger_ms(self) -> int:
        return round(self.kafka.linger_seconds / 0.001)

    @property
    def kafka_compression(self) -> Compression:
        return self.kafka.compression

    @property
    def kafka_readiness(self) -> Readiness:
        return self.kafka.readiness

    @property
    def consumer_retries(self) -> int:
        return self.consumer.retries

    @property
    def consumer_retry_backoff(self) -> float:
        return self.consumer.retry_backoff_seconds

    @property
    def consumer_retry_backoff_max(self) -> float:
        return self.consumer.retry_backoff_max_seconds

    @property
    def consumer_max_in_flight(self) -> int:
        return self.consumer.max_in_flight

    @property
    def consumer_fetch_max_records(self) -> int:
        return self.consumer.fetch_max_records

    @property
    def consumer_fetch_max_wait_ms(self) -> int:
        return round(self.consumer.fetch_max_wait_seconds / 0.001)

    @property
    def consumer_drain_timeout(self) -> float:
        return self.consumer.drain_timeout_seconds

    @property
    def consumer_commit_interval(self) -> float:
        return self.consumer.commit_interval_seconds

    @property
    def consumer_session_timeout(self) -> float:
        return self.consumer.session_timeout_seconds

    @property
    def consumer_auto_offset_reset(self) -> Literal["earliest", "latest"]:
        return self.consumer.auto_offset_reset

    @property
    def dedup_lease(self) -> float:
        return self.consumer.dedup_lease_seconds

    @property
    def dedup_retention(self) -> float:
        return self.consumer.dedup_retention_seconds

    @property
    def redelivery_horizon(self) -> float:
        return self.consumer.redelivery_horizon_seconds

    @property
    def saga_lease_seconds(self) -> float:
        return self.saga.lease_seconds

    @property
    def saga_recovery_interval(self) -> float:
        return self.saga.recovery_interval_seconds

    @property
    def saga_retention_seconds(self) -> float:
        return self.saga.retention_seconds

    @property
    def saga_backlog_warn(self) -> int:
        return self.saga.backlog_warn

    @property
    def saga_key_prefix(self) -> str | None:
        return self.saga.key_prefix

    @property
    def saga_shards(self) -> int:
        return self.saga.shards

    @property
    def saga_operator_api(self) -> bool:
        return self.saga.operator_api

    @property
    def saga_operator_prefix(self) -> str:
        return self.saga.operator_prefix

    @property
    def saga_reply_topic(self) -> str | None:
        return self.saga.reply_topic

    @property
    def outbox_relay(self) -> bool:
        return self.saga.outbox_relay

    @property
    def outbox_poll_interval(self) -> float:
        return self.saga.outbox_poll_interval_seconds

    @property
    def outbox_claim_after(self) -> float:
        return self.saga.outbox_claim_after_seconds

    @property
    def outbox_batch(self) -> int:
        return self.saga.outbox_batch

    @property
    def outbox_backlog_warn(self) -> int:
        return self.saga.outbox_backlog_warn

    @property
    def cache_timeout(self) -> float:
        return self.cache.timeout_seconds

    @property
    def cache_max_value_bytes(self) -> int:
        return self.cache.max_value_bytes

    @property
    def cache_memory_max_entries(self) -> int:
        return self.cache.memory_max_entries

    @property
    def cache_near_enabled(self) -> bool:
        return self.cache.near_enabled

    @property
    def cache_near_size(self) -> int:
        return self.cache.near_size

    @property
    def cache_near_max_age(self) -> float:
        return self.cache.near_max_age_seconds

    @property
    def cache_breaker_failures(self) -> int:
        return self.cache.breaker_failures

    @property
    def cache_breaker_reset(self) -> float:
        return self.cache.breaker_reset_seconds

    @property
    def cache_lock_lease(self) -> float:
        return self.cache.lock_lease_seconds

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        return self.kafka.bootstrap_servers


def _deprecated(name: str, flat: property) -> property:
    new = MOVED[name].new

    def read(self: Any) -> Any:
        warnings.warn(
            f"settings.{name} is deprecated; read settings.{new} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return flat.__get__(self)

    return property(read, doc=f"Deprecated: ``settings.{new}``.")


for _name in MOVED:
    setattr(FlatNames, _name, _deprecated(_name, FlatNames.__dict__[_name]))
