"""`nativekit check` against the real Redis and broker, and its rules on settings."""

from __future__ import annotations

import re

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from nativekit import Settings
from nativekit.cli._checks import Probes, retention_finding, settings_findings, version_finding
from nativekit.cli._output import duration, parse_duration
from tests.cli.conftest import Cli

WEEK = 7 * 86400


@pytest.fixture
async def topics(kafka_url: str, unique: str) -> dict[str, str]:
    """Topics keeping records 1 day ('short') and 30 days ('long')."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://"))
    await admin.start()
    names = {"short": f"short-{unique}", "long": f"long-{unique}"}
    try:
        await admin.create_topics(
            [
                NewTopic(names["short"], 1, 1, topic_configs={"retention.ms": str(86400_000)}),
                NewTopic(names["long"], 1, 1, topic_configs={"retention.ms": str(30 * 86400_000)}),
            ]
        )
    finally:
        await admin.close()
    return names


def by_check(report: dict[str, object]) -> dict[str, dict[str, str]]:
    """JSON rows by check name."""
    rows = report["checks"]
    assert isinstance(rows, list)
    return {row["check"]: row for row in rows}


@pytest.mark.redis
@pytest.mark.kafka
async def test_reaches_both_and_reports_versions_and_retention(
    cli: Cli, redis_url: str, kafka_url: str, topics: dict[str, str]
) -> None:
    """Redis version and Kafka brokers are printed; a topic outliving dedup marks fails."""
    cli.env.update(NATIVEKIT_REDIS_URL=redis_url, NATIVEKIT_KAFKA_URL=kafka_url)
    fine = await cli("check", "--topic", topics["short"])
    bad = await cli("check", "--topic", topics["short"], "--topic", topics["long"], "--json")
    raised = await cli(
        "check",
        "--topic",
        topics["long"],
        "--json",
        NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS=str(31 * 86400),
    )
    assert fine.code == 0, fine.out + fine.err
    assert fine.out.rstrip().endswith("OK")
    lines = {line.split()[0]: line for line in fine.out.splitlines()[1:] if line}
    assert " ok " in lines["redis"] and ("Redis " in lines["redis"] or "Valkey " in lines["redis"])
    assert "PING" in lines["redis"] and "1 broker(s)" in lines["kafka"]
    assert re.search(r"\d+ APIs, Produce v\d+-\d+, Fetch v\d+-\d+", lines["kafka"])
    assert "retention 1d <= dedup retention 7d" in fine.out
    assert bad.code == 1
    report = bad.json()
    assert report["status"] == "misconfigured"
    long = by_check(report)[f"topic {topics['long']}"]
    assert long["status"] == "fail"
    assert "keeps records for 30d but dedup marks expire after 7d" in long["detail"]
    assert raised.code == 0 and by_check(raised.json())[f"topic {topics['long']}"]["status"] == "ok"


@pytest.mark.redis
@pytest.mark.kafka
async def test_unreachable_backends_exit_3(cli: Cli, redis_url: str, kafka_url: str) -> None:
    """A Redis or Kafka that does not answer is 'unreachable' and the exit code is 3."""
    no_redis = await cli(
        "check", "--json",
        NATIVEKIT_REDIS_URL="redis://127.0.0.1:1/0", NATIVEKIT_KAFKA_URL=kafka_url,
        NATIVEKIT_CONNECT_TIMEOUT_SECONDS="1",
    )  # fmt: skip
    no_kafka = await cli(
        "check",
        NATIVEKIT_REDIS_URL=redis_url, NATIVEKIT_KAFKA_URL="kafka://127.0.0.1:1",
        NATIVEKIT_CONNECT_TIMEOUT_SECONDS="1",
    )  # fmt: skip
    assert no_redis.code == 3
    report = no_redis.json()
    assert report["status"] == "unreachable"
    assert by_check(report)["redis"]["status"] == "unreachable"
    assert by_check(report)["kafka"]["status"] == "ok"
    assert no_kafka.code == 3
    assert "Is NATIVEKIT_KAFKA_URL right" in no_kafka.out and "UNREACHABLE" in no_kafka.out


async def test_probe_timings_that_do_not_fit_the_drain_time_fail(cli: Cli) -> None:
    """Kubernetes probe settings are held against the shutdown and health timings."""
    misfit = await cli(
        "check", "--termination-grace", "30s", "--readiness-period", "10",
        "--readiness-failures", "3", "--probe-timeout", "1", "--json",
    )  # fmt: skip
    fits = await cli(
        "check", "--termination-grace", "90s", "--readiness-period", "5",
        "--readiness-failures", "2", "--probe-timeout", "5",
        NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS="10",
    )  # fmt: skip
    assert misfit.code == 1
    rows = by_check(misfit.json())
    assert rows["shutdown"]["status"] == "fail" and "is not above 35s" in rows["shutdown"]["detail"]
    assert rows["readiness"]["status"] == "fail" and "at least 30s" in rows["readiness"]["detail"]
    assert rows["probe timeout"]["status"] == "fail"
    assert fits.code == 0, fits.out
    assert "memory:// - Redis state lives in each process" in fits.out  # skip in 'test'


async def test_memory_backends_warn_in_production_and_bad_settings_exit_2(cli: Cli) -> None:
    """memory:// URLs warn in production (exit 0); invalid settings are a usage error."""
    production = await cli("check", "--json", NATIVEKIT_ENVIRONMENT="production")
    invalid = await cli("check", NATIVEKIT_SAGA_SHARDS="0")
    assert production.code == 0
    rows = by_check(production.json())
    assert rows["redis"]["status"] == "warn" and rows["kafka"]["status"] == "warn"
    assert invalid.code == 2 and "NATIVEKIT_SAGA_SHARDS" in invalid.err


def test_dedup_retention_shorter_than_the_redelivery_horizon_fails() -> None:
    """The rule the services enforce at startup is reported before deploying."""
    settings = Settings(
        _env_file=None,
        consumer={"dedup_retention_seconds": 3600, "redelivery_horizon_seconds": 7200},
    )
    rows = {f.check: f for f in settings_findings(settings, Probes())}
    assert rows["dedup retention"].status == "fail"
    assert (
        "1h) is shorter than NATIVEKIT_CONSUMER_REDELIVERY_HORIZON_SECONDS (2h)"
        in rows["dedup retention"].detail
    )
    fine = Settings(_env_file=None)
    assert "dedup retention" not in {f.check for f in settings_findings(fine, Probes())}


def test_retention_rules() -> None:
    """Unlimited or longer retention fails, equal passes, unknown warns."""
    settings = Settings(_env_file=None)
    assert retention_finding("t", float("inf"), None, settings).status == "fail"
    assert "unlimited" in retention_finding("t", float("inf"), None, settings).detail
    assert retention_finding("t", WEEK, None, settings).status == "ok"
    unknown = retention_finding("t", None, "the broker did not report retention.ms", settings)
    assert unknown.status == "warn" and "did not report" in unknown.detail


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d12h", 129600), ("0.5s", 0.5)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Durations accept seconds or numbers with s, m, h, d."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 m", "1w", "m5", "1h-2m"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything else is a ValueError naming the accepted forms."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (252, "4m12s"), (7500, "2h5m"), (WEEK, "7d"), (90000, "1d1h")]
)
def test_durations_print_with_two_units_at_most(seconds: float, text: str) -> None:
    """Durations print compactly."""
    assert duration(seconds) == text


def test_redis_versions_fail_below_the_outbox_floor_and_warn_below_cache_tags() -> None:
    """Redis < 6.2 fails (XAUTOCLAIM), 6.2.x warns (cache tags need 7), 7+ and Valkey pass."""
    found = {
        (product, version): version_finding(product, version, "x")
        for product, version in [("Redis", "6.0.9"), ("Redis", "6.2.14"), ("Redis", "7.0.15"),
                                 ("Valkey", "6.0.0"), ("Redis", "unknown")]
    }  # fmt: skip
    assert {k: f.status for k, f in found.items()} == {
        ("Redis", "6.0.9"): "fail",
        ("Redis", "6.2.14"): "warn",
        ("Redis", "7.0.15"): "ok",
        ("Valkey", "6.0.0"): "ok",
        ("Redis", "unknown"): "ok",
    }
    assert "XAUTOCLAIM" in found[("Redis", "6.0.9")].detail
    assert "PEXPIRE" in found[("Redis", "6.2.14")].detail
