"""The settings of each capability, one model per group (``settings.saga``, ...).

Units: durations are seconds in fields named ``*_seconds``; sizes in bytes are
``*_bytes``; everything else is a count, a switch, a name or a URL.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Unknown keys are ignored as the flat settings ignored unknown variables; it also lets a
# deprecated variable that shares a group's prefix (NATIVEKIT_CACHE_TIMEOUT) pass here.
GROUP_CONFIG = ConfigDict(extra="ignore", validate_default=True)


class HttpSettings(BaseModel):
    """Requests, the request log and graceful shutdown of the HTTP server."""

    model_config = GROUP_CONFIG

    access_log: bool = Field(True, description="Write one log line per HTTP request.")
    max_body_bytes: int = Field(
        1_048_576, ge=0, description="Largest accepted request body (413 above; 0 disables)."
    )
    shutdown_delay_seconds: float = Field(
        0.0,
        ge=0,
        description="Time between SIGTERM and closing the listener, readiness failing "
        "meanwhile (lets load balancers stop routing first).",
    )
    shutdown_grace_seconds: float = Field(
        25.0, ge=0, description="Time in-flight requests get to finish before components stop."
    )


class TelemetrySettings(BaseModel):
    """Logs, metrics, traces and the health probes."""

    model_config = GROUP_CONFIG

    log_format: LogFormat | None = Field(
        None, description="'json' or 'console'; default console in development, json otherwise."
    )
    log_level: LogLevel = Field(
        "INFO", description="Minimum level of emitted log lines (any case: 'warning' too)."
    )

    metrics_enabled: bool = Field(True, description="Serve /metrics and record HTTP metrics.")
    tracing_enabled: bool = Field(True, description="Create OpenTelemetry spans for requests.")
    include_probes: bool = Field(
        False,
        description="Include probe paths (/livez, /readyz, /startupz) in logs/metrics/traces.",
    )
    health_timeout_seconds: float = Field(
        2.0, gt=0, description="Time one readiness check may take."
    )
    health_cache_seconds: float = Field(
        1.0, ge=0, description="Time readiness results are reused, so probe storms stay cheap."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ConsumerSettings(BaseModel):
    """Kafka consumers: retries, flow control, commits and deduplication."""

    model_config = GROUP_CONFIG

    retries: int = Field(
        3, ge=0, description="Handler retries before a message goes to the dead-letter topic."
    )
    retry_backoff_seconds: float = Field(
        0.2, gt=0, description="Pause before the first retry; doubles per attempt."
    )
    retry_backoff_max_seconds: float = Field(
        10.0, gt=0, description="Longest pause between two attempts."
    )
    max_in_flight: int = Field(
        2000, ge=1, description="Messages a consumer holds fetched but not finished."
    )
    fetch_max_records: int = Field(
        500, ge=1, description="Records per fetch (and per dedup round trip)."
    )
    fetch_max_wait_seconds: float = Field(
        0.5,
        ge=0,
        description="Longest time the broker may hold a fetch waiting for records "
        "(millisecond precision); lower it (e.g. 0.01) for command/reply latency on brokers "
        "that hold fetches for the full wait, such as Tansu.",
    )
    drain_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Time running handlers get on partition revoke or shutdown before "
        "they are cancelled (their messages are redelivered).",
    )
    commit_interval_seconds: float = Field(
        0.1,
        ge=0,
        description="Shortest time between two offset commits of a consumer; finished "
        "messages are committed together (a revoke or shutdown commits at once, and DONE "
        "marks, written first, skip what a crash redelivers); 0 commits after every flush.",
    )
    session_timeout_seconds: float = Field(
        10.0, gt=0, description="Kafka group session timeout (dead member detection)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts reading a partition."
    )
    group_default: Literal["consumer", "service"] = Field(
        "consumer",
        description="The group of a consumer declared without group=: 'consumer' gives each "
        "its own, '<service>.<handler name>' (one consumer's rebalance does not stop the "
        "others); 'service' keeps the previous default, one group named after the service.",
    )
    group_instance_id: str | None = Field(
        default_factory=lambda: os.environ.get("HOSTNAME") or None,
        description="Static group membership (Kafka's group.instance.id, suffixed with the "
        "handler name): a restarted replica takes its partitions back without a rebalance. "
        "Default: the HOSTNAME variable (the pod name on Kubernetes) when set; '' turns it off.",
    )
    join_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Time a consumer may take to join its group after startup before "
        "/readyz and /startupz say it is overdue (it keeps trying; the service serves meanwhile).",
    )
    lag_interval_seconds: float = Field(
        5.0, gt=0, description="Time between two measurements of nativekit_consumer_lag."
    )
    dedup_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="Time a claimed message stays IN_PROGRESS without renewal before another "
        "worker may take it over.",
    )
    dedup_retention_seconds: float = Field(
        604_800.0, gt=0, description="Time DONE/DEAD marks are kept (default 7 days)."
    )
    redelivery_horizon_seconds: float = Field(
        259_200.0,
        gt=0,
        description="Longest time after which a message may still be redelivered (consumer "
        "downtime, replays; default 3 days); the dedup retention must be at least this long.",
    )


class SagaSettings(BaseModel):
    """Sagas: leases and recovery, storage, the operator API, command replies, outbox."""

    model_config = GROUP_CONFIG

    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="Time a replica's lease on a running saga lasts (renewed every third "
        "of it); after a crash, another replica resumes the saga this much later.",
    )
    recovery_interval_seconds: float = Field(
        5.0, gt=0, description="Time between passes that claim sagas with expired leases."
    )
    retention_seconds: float = Field(
        604_800.0, gt=0, description="Time COMPLETED, COMPENSATED and ABORTED sagas are kept."
    )
    max_interruptions: int = Field(
        3,
        ge=1,
        description="Times one step (or compensation) may be interrupted by its process "
        "stopping mid-attempt and re-run; the next interruption fails it. Interruptions "
        "do not use up the step's retries.",
    )
    backlog_warn: int = Field(
        100, ge=0, description="Readiness warns when more sagas than this wait for recovery."
    )
    key_prefix: str | None = Field(
        None, description="Redis key prefix of saga state; default 'nk:saga:<service name>'."
    )
    shards: int = Field(
        16,
        ge=1,
        le=1024,
        description="Hash-tag shards of saga state in Redis (fixed for the "
        "life of the data: changing it hides existing sagas).",
    )
    operator_api: bool = Field(
        False,
        description="Serve the saga operator HTTP API; it needs a bearer token (NATIVEKIT_AUTH_*, "
        "see docs/auth.md) and refuses to start without one.",
    )
    operator_prefix: str = Field(
        "/_nativekit/sagas", description="Path prefix of the saga operator HTTP API."
    )
    reply_topic: str | None = Field(
        None,
        description="Topic this service's sagas receive command replies on; "
        "default '<service name>.replies'.",
    )
    outbox_relay: bool = Field(
        False,
        description="Run the outbox relay even when no saga has command steps "
        "(for sagas that only publish events with outbox_publish).",
    )
    outbox_poll_interval_seconds: float = Field(
        0.2, gt=0, description="Time between outbox reads when no local write woke the relay."
    )
    outbox_claim_after_seconds: float = Field(
        10.0,
        gt=0,
        description="Time an outbox entry read by a relay may stay unpublished "
        "before another relay takes it over (the first one died).",
    )
    outbox_batch: int = Field(200, ge=1, description="Outbox entries the relay reads at once.")
    outbox_backlog_warn: int = Field(
        1000, ge=0, description="Readiness warns when more outbox entries than this wait."
    )


class CacheSettings(BaseModel):
    """The cache: Redis when NATIVEKIT_REDIS_URL names one, process memory otherwise."""

    model_config = GROUP_CONFIG

    timeout_seconds: float = Field(
        0.25,
        gt=0,
        description="Time one cache call to Redis may take before it counts as "
        "failed and the function runs uncached.",
    )
    max_value_bytes: int = Field(
        1_048_576, ge=1, description="Largest encoded value stored; larger results are not cached."
    )
    memory_max_entries: int = Field(
        10_000, ge=1, description="Entries kept by the in-process cache (memory:// Redis URL)."
    )
    near_enabled: bool = Field(
        False,
        description="Keep hot values in process memory in front of Redis, invalidated "
        "across replicas through Redis pub/sub.",
    )
    near_size: int = Field(1_000, ge=1, description="Entries kept by the near cache.")
    near_max_age_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest time a value stays in the near cache (bounds staleness "
        "if an invalidation message is lost).",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive cache failures that open the circuit breaker."
    )
    breaker_reset_seconds: float = Field(
        5.0, gt=0, description="Time the cache breaker stays open before a trial call."
    )
    lock_lease_seconds: float = Field(
        2.0, gt=0, description="Time a cross-process computation lease lasts (lock=True)."
    )
