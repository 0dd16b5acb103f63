"""The flat settings of nativekit 0.1 and where each one lives in the grouped settings.

One table drives three things: the deprecated environment variables that keep working
for one release, the read-only flat attributes and constructor keywords kept while the
code moves to the groups, and the mechanical rewrite of ``settings.<old>`` accesses.
"""

from __future__ import annotations

from typing import NamedTuple

ENV_PREFIX = "NATIVEKIT_"


class Rename(NamedTuple):
    """One flat setting of 0.1: its name, its grouped path and the unit factor."""

    old: str
    """Flat attribute and keyword name; ``NATIVEKIT_<OLD>`` is the old variable."""
    new: str
    """Dotted path on :class:`~nativekit.settings.Settings`, such as ``saga.lease_seconds``."""
    scale: float = 1.0
    """New value = old value * scale (0.001 where milliseconds became seconds)."""

    @property
    def old_variable(self) -> str:
        """The environment variable of 0.1."""
        return env_variable(self.old)

    @property
    def new_variable(self) -> str:
        """The environment variable of the grouped setting."""
        return env_variable(self.new)


def env_variable(path: str) -> str:
    """``saga.lease_seconds`` -> ``NATIVEKIT_SAGA_LEASE_SECONDS`` (also for flat names)."""
    return ENV_PREFIX + path.replace(".", "_").upper()


_MS = 0.001

RENAMES: tuple[Rename, ...] = (
    # top level: identity and what every backend shares
    Rename("service_name", "service_name"),
    Rename("environment", "environment"),
    Rename("connect_timeout", "connect_timeout_seconds"),
    Rename("operation_timeout", "operation_timeout_seconds"),
    # http
    Rename("access_log", "http.access_log"),
    Rename("request_body_limit", "http.max_body_bytes"),
    Rename("shutdown_delay", "http.shutdown_delay_seconds"),
    Rename("shutdown_grace", "http.shutdown_grace_seconds"),
    # telemetry
    Rename("log_format", "telemetry.log_format"),
    Rename("log_level", "telemetry.log_level"),
    Rename("metrics_enabled", "telemetry.metrics_enabled"),
    Rename("tracing_enabled", "telemetry.tracing_enabled"),
    Rename("probe_telemetry", "telemetry.include_probes"),
    Rename("health_timeout", "telemetry.health_timeout_seconds"),
    Rename("health_cache_ttl", "telemetry.health_cache_seconds"),
    # redis
    Rename("redis_url", "redis.url"),
    Rename("redis_sentinel_password", "redis.sentinel_password"),
    Rename("redis_sentinel_password_file", "redis.sentinel_password_file"),
    Rename("redis_password", "redis.password"),
    Rename("redis_password_file", "redis.password_file"),
    Rename("redis_tls_ca_file", "redis.tls_ca_file"),
    Rename("redis_tls_cert_file", "redis.tls_cert_file"),
    Rename("redis_tls_key_file", "redis.tls_key_file"),
    Rename("redis_max_connections", "redis.max_connections"),
    Rename("redis_readiness", "redis.readiness"),
    # kafka
    Rename("kafka_url", "kafka.url"),
    Rename("kafka_tls", "kafka.tls"),
    Rename("kafka_tls_ca_file", "kafka.tls_ca_file"),
    Rename("kafka_tls_cert_file", "kafka.tls_cert_file"),
    Rename("kafka_tls_key_file", "kafka.tls_key_file"),
    Rename("kafka_sasl_mechanism", "kafka.sasl_mechanism"),
    Rename("kafka_sasl_username", "kafka.sasl_username"),
    Rename("kafka_sasl_password", "kafka.sasl_password"),
    Rename("kafka_sasl_password_file", "kafka.sasl_password_file"),
    Rename("kafka_idempotent_producer", "kafka.idempotent_producer"),
    Rename("kafka_linger_ms", "kafka.linger_seconds", _MS),
    Rename("kafka_compression", "kafka.compression"),
    Rename("kafka_readiness", "kafka.readiness"),
    # consumer
    Rename("consumer_retries", "consumer.retries"),
    Rename("consumer_retry_backoff", "consumer.retry_backoff_seconds"),
    Rename("consumer_retry_backoff_max", "consumer.retry_backoff_max_seconds"),
    Rename("consumer_max_in_flight", "consumer.max_in_flight"),
    Rename("consumer_fetch_max_records", "consumer.fetch_max_records"),
    Rename("consumer_fetch_max_wait_ms", "consumer.fetch_max_wait_seconds", _MS),
    Rename("consumer_drain_timeout", "consumer.drain_timeout_seconds"),
    Rename("consumer_commit_interval", "consumer.commit_interval_seconds"),
    Rename("consumer_session_timeout", "consumer.session_timeout_seconds"),
    Rename("consumer_auto_offset_reset", "consumer.auto_offset_reset"),
    Rename("dedup_lease", "consumer.dedup_lease_seconds"),
    Rename("dedup_retention", "consumer.dedup_retention_seconds"),
    Rename("redelivery_horizon", "consumer.redelivery_horizon_seconds"),
    # saga (with its command replies and outbox)
    Rename("saga_lease_seconds", "saga.lease_seconds"),
    Rename("saga_recovery_interval", "saga.recovery_interval_seconds"),
    Rename("saga_retention_seconds", "saga.retention_seconds"),
    Rename("saga_backlog_warn", "saga.backlog_warn"),
    Rename("saga_key_prefix", "saga.key_prefix"),
    Rename("saga_shards", "saga.shards"),
    Rename("saga_operator_api", "saga.operator_api"),
    Rename("saga_operator_prefix", "saga.operator_prefix"),
    Rename("saga_reply_topic", "saga.reply_topic"),
    Rename("outbox_relay", "saga.outbox_relay"),
    Rename("outbox_poll_interval", "saga.outbox_poll_interval_seconds"),
    Rename("outbox_claim_after", "saga.outbox_claim_after_seconds"),
    Rename("outbox_batch", "saga.outbox_batch"),
    Rename("outbox_backlog_warn", "saga.outbox_backlog_warn"),
    # cache
    Rename("cache_timeout", "cache.timeout_seconds"),
    Rename("cache_max_value_bytes", "cache.max_value_bytes"),
    Rename("cache_memory_max_entries", "cache.memory_max_entries"),
    Rename("cache_near_enabled", "cache.near_enabled"),
    Rename("cache_near_size", "cache.near_size"),
    Rename("cache_near_max_age", "cache.near_max_age_seconds"),
    Rename("cache_breaker_failures", "cache.breaker_failures"),
    Rename("cache_breaker_reset", "cache.breaker_reset_seconds"),
    Rename("cache_lock_lease", "cache.lock_lease_seconds"),
)

#: Flat names that are not top-level fields any more, by old name.
MOVED: dict[str, Rename] = {r.old: r for r in RENAMES if r.old != r.new}

#: Renames whose environment variable changed (the others read the same variable).
RENAMED_VARIABLES: tuple[Rename, ...] = tuple(
    r for r in RENAMES if r.old_variable != r.new_variable
)
