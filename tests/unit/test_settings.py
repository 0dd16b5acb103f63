"""Settings from the environment, grouped by capability; secrets and error messages."""

from __future__ import annotations

import json
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from nativekit import ConfigError, Settings
from nativekit._telemetry.logging import configure_logging, reset_logging
from nativekit.settings import groups, variables
from nativekit.settings._docs import render
from nativekit.settings._renames import MOVED, RENAMED_VARIABLES, RENAMES, Rename

PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_defaults_use_memory_backends() -> None:
    """Without configuration the embedded memory backends are used."""
    settings = Settings(_env_file=None)
    assert settings.redis.url == "memory://"
    assert settings.kafka.url == "memory://"
    assert settings.kafka.bootstrap_servers == []


def test_reads_grouped_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATIVEKIT_<GROUP>_<FIELD> fills the field of the group."""
    monkeypatch.setenv("NATIVEKIT_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("NATIVEKIT_KAFKA_URL", "kafka://k1:9092,k2:9093")
    monkeypatch.setenv("NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS", "7.5")
    monkeypatch.setenv("NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS", "3600")
    monkeypatch.setenv("NATIVEKIT_OPERATION_TIMEOUT_SECONDS", "0.5")
    settings = Settings(_env_file=None)
    assert settings.redis.url == "redis://cache:6380/2"
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert settings.http.shutdown_grace_seconds == 7.5
    assert settings.consumer.dedup_retention_seconds == 3600.0
    assert settings.operation_timeout_seconds == 0.5


def test_reads_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env file in the working directory is read."""
    (tmp_path / ".env").write_text("NATIVEKIT_TELEMETRY_LOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().telemetry.log_level == "DEBUG"


def test_groups_are_given_as_dicts_or_models() -> None:
    """A group passed in code keeps the defaults of the fields it does not name."""
    settings = Settings(_env_file=None, saga={"lease_seconds": 3}, cache={"near_size": 9})
    assert settings.saga.lease_seconds == 3.0 and settings.saga.shards == 16
    assert settings.cache.near_size == 9


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATIVEKIT_TELEMETRY_LOG_LEVEL=warning (uvicorn's spelling) is accepted as WARNING."""
    monkeypatch.setenv("NATIVEKIT_TELEMETRY_LOG_LEVEL", "warning")
    assert Settings(_env_file=None).telemetry.log_level == "WARNING"
    debug = Settings(_env_file=None, telemetry={"log_level": "Debug"})
    assert debug.telemetry.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NATIVEKIT_REDIS_URL", "http://x", "NATIVEKIT_REDIS_URL: 'http://x' is not a Redis URL"),
        ("NATIVEKIT_KAFKA_URL", "kafka://nohost", "NATIVEKIT_KAFKA_URL: 'kafka://nohost' is not"),
        (
            "NATIVEKIT_TELEMETRY_LOG_FORMAT",
            "xml",
            "NATIVEKIT_TELEMETRY_LOG_FORMAT: expected 'json' or 'console'",
        ),
        (
            "NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS",
            "-1",
            "NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS: Input should be greater",
        ),
        ("NATIVEKIT_HTTP_MAX_BODY_BYTES", "lots", "NATIVEKIT_HTTP_MAX_BODY_BYTES: Input should be"),
        ("NATIVEKIT_SAGA_SHARDS", "0", "NATIVEKIT_SAGA_SHARDS: Input should be greater than or"),
        ("NATIVEKIT_CONNECT_TIMEOUT_SECONDS", "0", "NATIVEKIT_CONNECT_TIMEOUT_SECONDS: Input"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """An invalid value fails with one message naming the variable and what is accepted."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings(_env_file=None)
    assert str(info.value).startswith("Invalid nativekit settings: ")
    assert expected in str(info.value)


def test_invalid_group_value_in_code_names_the_variable() -> None:
    """A bad value given in code is reported under the variable that sets it."""
    with pytest.raises(ConfigError, match="NATIVEKIT_CONSUMER_RETRIES: Input should be a valid"):
        Settings(_env_file=None, consumer={"retries": "many"})


def _sample(rename: Rename) -> tuple[str, Any]:
    """A valid value in the 0.1 unit, as a variable would give it, and the grouped value."""
    group, _, name = rename.new.rpartition(".")
    fields = groups()[group].model_fields if group else Settings.model_fields
    default = fields[name].default
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int | float):
        return "7", 7 * rename.scale
    return {"telemetry.log_format": ("json", "json"), "telemetry.log_level": ("DEBUG", "DEBUG")}[
        rename.new
    ]


@pytest.mark.parametrize("rename", RENAMED_VARIABLES, ids=lambda r: r.old_variable)
def test_old_variable_works_and_warns_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch, rename: Rename
) -> None:
    """Each renamed 0.1 variable still sets its setting, with a warning naming the new one."""
    raw, expected = _sample(rename)
    monkeypatch.setenv(rename.old_variable, raw)
    with pytest.warns(DeprecationWarning, match=f"set {rename.new_variable}"):
        settings = Settings(_env_file=None)
    assert attrgetter(rename.new)(settings) == pytest.approx(expected)
    assert settings.deprecated_variables == [(rename.old_variable, rename.new_variable)]


def test_new_variable_wins_over_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """With both names set the new one counts; the old one still warns."""
    monkeypatch.setenv("NATIVEKIT_SHUTDOWN_GRACE", "3")
    monkeypatch.setenv("NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS", "4")
    with pytest.warns(DeprecationWarning, match="NATIVEKIT_SHUTDOWN_GRACE is deprecated"):
        settings = Settings(_env_file=None)
    assert settings.http.shutdown_grace_seconds == 4.0


def test_old_variable_in_dotenv_works_and_warns(tmp_path: Path) -> None:
    """A renamed variable in .env is read too, milliseconds turned into seconds."""
    env = tmp_path / ".env"
    env.write_text("NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_MS=10\n")
    with pytest.warns(DeprecationWarning, match="NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS"):
        settings = Settings(_env_file=env)
    assert settings.consumer.fetch_max_wait_seconds == pytest.approx(0.01)


def test_invalid_old_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value under a 0.1 name is reported under that name, the one the user set."""
    monkeypatch.setenv("NATIVEKIT_DEDUP_LEASE", "-5")
    monkeypatch.setenv("NATIVEKIT_KAFKA_LINGER_MS", "soon")
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError) as info:
        Settings(_env_file=None)
    assert "NATIVEKIT_DEDUP_LEASE: Input should be greater than 0" in str(info.value)
    assert "NATIVEKIT_KAFKA_LINGER_MS: Input should be a valid number" in str(info.value)


def test_old_variable_is_logged_when_logging_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Startup logs one settings.variable.deprecated line per 0.1 variable in use."""
    monkeypatch.setenv("NATIVEKIT_DEDUP_RETENTION", "60")
    with pytest.warns(DeprecationWarning):
        settings = Settings(_env_file=None, telemetry={"log_format": "json"})
    try:
        configure_logging(settings, "svc", force=True)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        reset_logging()
    assert {
        "event": "settings.variable.deprecated",
        "variable": "NATIVEKIT_DEDUP_RETENTION",
        "use": "NATIVEKIT_CONSUMER_DEDUP_RETENTION_SECONDS",
    }.items() <= lines[-1].items()


_FLAT_SAMPLES: dict[str, Any] = {
    "redis_url": "redis://cache:6379/1",
    "redis_tls_ca_file": Path("/ca.pem"),
    "redis_readiness": "warn",
    "kafka_url": "kafka://k1:9092",
    "kafka_compression": "zstd",
    "kafka_sasl_username": "svc",
    "consumer_auto_offset_reset": "latest",
    "saga_key_prefix": "nk:test",
    "saga_reply_topic": "orders.replies",
    "log_format": "json",
    "log_level": "DEBUG",
}


def _flat_value(rename: Rename) -> Any:
    group, _, name = rename.new.rpartition(".")
    fields = groups()[group].model_fields if group else Settings.model_fields
    default = fields[name].default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int | float):
        return 7
    return _FLAT_SAMPLES.get(rename.old)


@pytest.mark.parametrize(
    "rename", [r for r in MOVED.values() if _flat_value(r) is not None], ids=lambda r: r.old
)
def test_flat_keyword_and_attribute_of_0_1_still_work(rename: Rename) -> None:
    """Settings(<old>=v) sets the grouped field and settings.<old> reads it, each with a
    DeprecationWarning naming the grouped path."""
    value = _flat_value(rename)
    with pytest.warns(DeprecationWarning, match=f"{rename.old} -> {rename.new}"):
        settings = Settings(_env_file=None, **{rename.old: value})
    expected = value if rename.scale == 1.0 else pytest.approx(value * rename.scale)
    assert attrgetter(rename.new)(settings) == expected
    with pytest.warns(DeprecationWarning, match=f"read settings.{rename.new} instead"):
        assert getattr(settings, rename.old) == value


def test_flat_attributes_are_read_only() -> None:
    """The 0.1 attribute names cannot be assigned: they only mirror the groups."""
    settings = Settings(_env_file=None)
    with pytest.raises((AttributeError, ValueError)):
        settings.saga_lease_seconds = 3  # type: ignore[misc]


def test_model_copy_accepts_flat_names() -> None:
    """model_copy(update=) with 0.1 names changes the grouped fields of the copy only."""
    settings = Settings(_env_file=None)
    with pytest.warns(DeprecationWarning):
        copy = settings.model_copy(update={"operation_timeout": 0.1, "cache_timeout": 0.3})
    assert copy.operation_timeout_seconds == 0.1 and copy.cache.timeout_seconds == 0.3
    assert settings.cache.timeout_seconds == 0.25


def test_every_rename_points_at_a_setting() -> None:
    """The rename table covers the settings of 0.1 (75, less gc_young_threshold, which
    became nativekit.tune_gc()), each with a path that exists now."""
    settings = Settings(_env_file=None)
    assert len({r.old for r in RENAMES}) == len(RENAMES) == 74
    assert all(isinstance(getattr(Settings, old, None), property) for old in MOVED)
    for rename in RENAMES:
        attrgetter(rename.new)(settings)
        assert rename.new_variable in variables()


def test_password_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords in URLs and secret fields are masked in repr and error messages."""
    settings = Settings(
        _env_file=None, redis={"url": "redis://user:hunter2@db:6379/0", "password": "s3cret"}
    )
    text = repr(settings) + str(settings)
    assert "hunter2" not in text and "s3cret" not in text
    assert "redis://user:***@db:6379/0" in text
    monkeypatch.setenv("NATIVEKIT_REDIS_URL", "ftp://user:hunter2@db")
    with pytest.raises(ConfigError) as info:
        Settings(_env_file=None)
    assert "hunter2" not in str(info.value)


def test_secrets_are_read_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """*_FILE variables read Kubernetes-mounted secrets, trailing newline stripped."""
    redis_secret = tmp_path / "redis"
    redis_secret.write_text("from-file\n")
    kafka_secret = tmp_path / "kafka"
    kafka_secret.write_text("sasl-pw")
    monkeypatch.setenv("NATIVEKIT_REDIS_PASSWORD_FILE", str(redis_secret))
    monkeypatch.setenv("NATIVEKIT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("NATIVEKIT_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("NATIVEKIT_KAFKA_SASL_PASSWORD_FILE", str(kafka_secret))
    settings = Settings(_env_file=None)
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "from-file"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "sasl-pw"


def test_secret_files_given_in_code_by_either_name(tmp_path: Path) -> None:
    """A secret file passed in code works under the 0.1 keyword and in its group."""
    secret = tmp_path / "sentinel"
    secret.write_text("pw\n")
    with pytest.warns(DeprecationWarning, match="redis_sentinel_password_file"):
        flat = Settings(_env_file=None, redis_sentinel_password_file=secret)
    grouped = Settings(_env_file=None, redis={"sentinel_password_file": secret})
    for settings in (flat, grouped):
        assert settings.redis.sentinel_password is not None
        assert settings.redis.sentinel_password.get_secret_value() == "pw"


def test_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    """A secret file that cannot be read names the variable."""
    with pytest.raises(ConfigError, match="NATIVEKIT_REDIS_PASSWORD_FILE"):
        Settings(_env_file=None, redis={"password_file": tmp_path / "absent"})


def test_sasl_needs_credentials() -> None:
    """Choosing a SASL mechanism without user and password is refused."""
    with pytest.raises(ConfigError, match="NATIVEKIT_KAFKA_SASL_USERNAME"):
        Settings(_env_file=None, kafka={"sasl_mechanism": "PLAIN"})


def test_log_format_follows_environment() -> None:
    """Console logs in development, JSON elsewhere, unless set explicitly."""
    assert Settings(_env_file=None, environment="development").resolved_log_format == "console"
    assert Settings(_env_file=None, environment="production").resolved_log_format == "json"
    explicit = Settings(_env_file=None, environment="development", telemetry={"log_format": "json"})
    assert explicit.resolved_log_format == "json"


def test_configuration_page_is_generated_from_the_settings() -> None:
    """docs/configuration.md holds the tables the models generate (run the _docs module)."""
    page = PAGE.read_text(encoding="utf-8")
    assert render(page) == page, "run: python -m nativekit.settings._docs docs/configuration.md"
    assert all(f"`{name}`" in page for name in variables())
