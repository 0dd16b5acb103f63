"""What ``nativekit check`` looks at: reachability, versions, and settings that cannot work.

Each check gives :class:`Finding` rows. Statuses: ``ok``; ``warn`` (worth a
look, not wrong); ``fail`` (misconfigured: something will go wrong);
``unreachable`` (Redis or Kafka did not answer); ``skip`` (not checked, and why).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nativekit.cli._output import duration
from nativekit.errors import BackendUnavailable
from nativekit.settings import Settings, mask_url

Status = Literal["ok", "warn", "fail", "unreachable", "skip"]

#: Oldest Redis nativekit runs on: the saga outbox's relay uses ``XAUTOCLAIM``.
MIN_REDIS = (6, 2)
#: Redis the cache's tag indexes need (``PEXPIRE … NX/GT``).
CACHE_TAGS_REDIS = (7, 0)


@dataclass(frozen=True)
class Finding:
    """One row of the report."""

    check: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass(frozen=True)
class Probes:
    """The Kubernetes settings to hold the service's timings against (None: not given)."""

    termination_grace: float | None = None
    readiness_period: float | None = None
    readiness_failures: int | None = None
    probe_timeout: float | None = None


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return "unlimited" if math.isinf(seconds) else duration(seconds)


def _in_memory(settings: Settings, what: str) -> Finding:
    status: Status = "warn" if settings.environment in ("staging", "production") else "skip"
    return Finding(
        what.lower(),
        status,
        f"memory:// - {what} state lives in each process: not shared by replicas, lost "
        "on restart"
        + (f" (NATIVEKIT_ENVIRONMENT={settings.environment})" if status == "warn" else ""),
    )


# -- Redis ----------------------------------------------------------------------------


async def redis_findings(settings: Settings) -> list[Finding]:
    """PING, server version and mode; a version the dedup store cannot use fails."""
    if settings.redis.url.startswith("memory://"):
        return [_in_memory(settings, "Redis")]
    from nativekit.backends.redis._client import UNAVAILABLE_ERRORS, create_redis

    where = mask_url(settings.redis.url)
    client = create_redis(settings)
    try:
        await client.ping()  # connects
        started = time.perf_counter()
        await client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info = await client.info("server")
    except UNAVAILABLE_ERRORS as exc:
        reason = str(exc).rstrip(".")
        return [
            Finding("redis", "unreachable", f"{where}: {reason}. Is NATIVEKIT_REDIS_URL right?")
        ]
    except Exception as exc:  # e.g. AUTH refused: reachable, but not usable
        return [Finding("redis", "fail", f"{where}: {type(exc).__name__}: {exc}")]
    finally:
        await client.aclose()
    product = "Valkey" if "valkey_version" in info else "Redis"
    version = str(info.get("valkey_version") or info.get("redis_version") or "?")
    mode = info.get("redis_mode", "standalone")
    detail = f"{where}: {product} {version} ({mode}), PING {ping_ms:.1f} ms"
    return [version_finding(product, version, detail)]


def version_finding(product: str, version: str, detail: str) -> Finding:
    """Fail a Redis older than the outbox needs; warn where cache tags would not work
    (Valkey versions all have both)."""
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if product != "Redis" or len(numbers) != 2:
        return Finding("redis", "ok", detail)
    if numbers < MIN_REDIS:
        need = ".".join(map(str, MIN_REDIS))
        reason = f"the saga outbox needs Redis >= {need} (XAUTOCLAIM)"
        return Finding("redis", "fail", f"{detail}; {reason}")
    if numbers < CACHE_TAGS_REDIS:
        reason = "cache tags (tags= of @cached) need Redis >= 7 (PEXPIRE NX/GT)"
        return Finding("redis", "warn", f"{detail}; {reason}; the rest works")
    return Finding("redis", "ok", detail)


# -- Kafka ----------------------------------------------------------------------------


async def kafka_findings(settings: Settings, topics: list[str] | None) -> list[Finding]:
    """Brokers and cluster, then each topic's retention against the dedup retention."""
    if settings.kafka.url.startswith("memory://"):
        return [_in_memory(settings, "Kafka")]
    from nativekit.backends.kafka._admin import KafkaAdmin

    admin = KafkaAdmin(settings)
    try:
        started = time.perf_counter()
        await admin.start()
        cluster = await admin.cluster()
        took = (time.perf_counter() - started) * 1000
        existing = await admin.topics()
        chosen = topics if topics is not None else _consumed(existing)
        found = [
            Finding(
                "kafka",
                "ok" if cluster.brokers else "fail",
                f"{admin.servers}: {len(cluster.brokers)} broker(s) "
                f"({', '.join(cluster.brokers) or 'none'}), cluster {cluster.cluster_id}, "
                f"{cluster.api_versions or 'API versions unknown'}, "
                f"connect and metadata {took:.0f} ms",
            )
        ]
        for topic in chosen:
            if topic not in existing:
                found.append(Finding(f"topic {topic}", "fail", "does not exist"))
                continue
            retention = await admin.retention(topic)
            found.append(retention_finding(topic, retention.seconds, retention.note, settings))
        if not chosen:
            found.append(Finding("topics", "skip", "no topics to check (pass --topic NAME)"))
        return found
    except BackendUnavailable as exc:
        return [Finding("kafka", "unreachable", str(exc))]
    finally:
        await admin.aclose()


def _consumed(topics: list[str]) -> list[str]:
    """Topics consumers may read: not internal (``__…``) and not dead-letter topics."""
    return [t for t in topics if not t.startswith("__") and not t.endswith(".dlq")]


def retention_finding(
    topic: str, seconds: float | None, note: str | None, settings: Settings
) -> Finding:
    """A topic that keeps records longer than dedup marks live can be handled twice."""
    dedup = settings.consumer.dedup_retention_seconds
    name = f"topic {topic}"
    if seconds is None:
        return Finding(
            name,
            "warn",
            f"retention unknown ({note}); make sure it is at most "
            "NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS "
            f"({_span(dedup)})",
        )
    if seconds > dedup:
        return Finding(
            name,
            "fail",
            f"keeps records for {_span(seconds)} but dedup marks expire after {_span(dedup)} "
            "(NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS): a group that reads it again (offsets "
            "reset or "
            "expired) handles records older than that twice. Raise "
            "NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS "
            "or lower the topic's retention.ms.",
        )
    return Finding(name, "ok", f"retention {_span(seconds)} <= dedup retention {_span(dedup)}")


# -- settings against each other and against the orchestrator ----------------------------


def settings_findings(settings: Settings, probes: Probes) -> list[Finding]:
    """Timings that cannot work together (no I/O)."""
    s = settings
    found: list[Finding] = []
    if s.consumer.dedup_retention_seconds < s.consumer.redelivery_horizon_seconds:
        found.append(
            Finding(
                "dedup retention",
                "fail",
                "NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS "
                f"({_span(s.consumer.dedup_retention_seconds)}) is shorter than "
                "NATIVEKIT_CONSUMER_REDELIVERY_HORIZON_SECONDS "
                f"({_span(s.consumer.redelivery_horizon_seconds)}): a message "
                "redelivered after its mark expired runs twice (services refuse to start).",
            )
        )
    budget = (
        s.http.shutdown_delay_seconds
        + s.http.shutdown_grace_seconds
        + s.consumer.drain_timeout_seconds
    )
    parts = (
        f"NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS {s.http.shutdown_delay_seconds:g}s + "
        "NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS "
        f"{s.http.shutdown_grace_seconds:g}s + NATIVEKIT_CONSUMER_DRAIN_TIMEOUT_SECONDS "
        f"{s.consumer.drain_timeout_seconds:g}s"
    )
    if probes.termination_grace is None:
        found.append(
            Finding(
                "shutdown",
                "skip",
                f"a clean stop takes up to {budget:g}s ({parts}); pass --termination-grace "
                "to check terminationGracePeriodSeconds",
            )
        )
    elif probes.termination_grace <= budget:
        found.append(
            Finding(
                "shutdown",
                "fail",
                f"terminationGracePeriodSeconds {probes.termination_grace:g}s is not above "
                f"{budget:g}s ({parts}): the pod is killed while it drains.",
            )
        )
    else:
        found.append(
            Finding(
                "shutdown",
                "ok",
                f"terminationGracePeriodSeconds {probes.termination_grace:g}s > {budget:g}s",
            )
        )
    found.append(_readiness_finding(s, probes))
    found.append(_timeout_finding(s, probes))
    return found


def _readiness_finding(s: Settings, probes: Probes) -> Finding:
    if probes.readiness_period is None or probes.readiness_failures is None:
        return Finding(
            "readiness",
            "skip",
            "pass --readiness-period and --readiness-failures to check "
            f"NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS ({s.http.shutdown_delay_seconds:g}s) against "
            "the readiness probe",
        )
    unready_after = probes.readiness_period * probes.readiness_failures
    if s.http.shutdown_delay_seconds < unready_after:
        return Finding(
            "readiness",
            "fail",
            f"the readiness probe needs up to {unready_after:g}s "
            f"({probes.readiness_failures} x {probes.readiness_period:g}s) to take a draining "
            f"pod out of the load balancer, but NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS is "
            f"{s.http.shutdown_delay_seconds:g}s: requests sent in between are refused. Set it to "
            "at least "
            f"{unready_after:g}s.",
        )
    return Finding(
        "readiness",
        "ok",
        f"NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS {s.http.shutdown_delay_seconds:g}s >= "
        f"{unready_after:g}s to turn unready",
    )


def _timeout_finding(s: Settings, probes: Probes) -> Finding:
    if probes.probe_timeout is None:
        return Finding(
            "probe timeout",
            "skip",
            "pass --probe-timeout to check NATIVEKIT_TELEMETRY_HEALTH_TIMEOUT_SECONDS "
            f"({s.telemetry.health_timeout_seconds:g}s)",
        )
    if s.telemetry.health_timeout_seconds >= probes.probe_timeout:
        return Finding(
            "probe timeout",
            "fail",
            f"NATIVEKIT_TELEMETRY_HEALTH_TIMEOUT_SECONDS {s.telemetry.health_timeout_seconds:g}s "
            "is not below the probe's "
            f"timeoutSeconds {probes.probe_timeout:g}s: a slow dependency makes the probe "
            "time out instead of reading which check failed.",
        )
    return Finding(
        "probe timeout",
        "ok",
        f"NATIVEKIT_TELEMETRY_HEALTH_TIMEOUT_SECONDS {s.telemetry.health_timeout_seconds:g}s < "
        "timeoutSeconds "
        f"{probes.probe_timeout:g}s",
    )
