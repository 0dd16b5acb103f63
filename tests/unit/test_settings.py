"""Settings from the environment, secrets and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from nativekit import ConfigError, Settings


def test_defaults_use_memory_backends() -> None:
    """Without configuration the embedded memory backends are used."""
    settings = Settings(_env_file=None)
    assert settings.redis_url == "memory://"
    assert settings.kafka_url == "memory://"
    assert settings.kafka_bootstrap_servers == []


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATIVEKIT_* variables fill the matching fields."""
    monkeypatch.setenv("NATIVEKIT_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("NATIVEKIT_KAFKA_URL", "kafka://k1:9092,k2:9093")
    monkeypatch.setenv("NATIVEKIT_SHUTDOWN_GRACE", "7.5")
    settings = Settings(_env_file=None)
    assert settings.redis_url == "redis://cache:6380/2"
    assert settings.kafka_bootstrap_servers == ["k1:9092", "k2:9093"]
    assert settings.shutdown_grace == 7.5


def test_reads_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env file in the working directory is read."""
    (tmp_path / ".env").write_text("NATIVEKIT_LOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().log_level == "DEBUG"


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATIVEKIT_LOG_LEVEL=warning (uvicorn's spelling) is accepted as WARNING."""
    monkeypatch.setenv("NATIVEKIT_LOG_LEVEL", "warning")
    assert Settings(_env_file=None).log_level == "WARNING"
    assert Settings(_env_file=None, log_level="Debug").log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NATIVEKIT_REDIS_URL", "http://x", "NATIVEKIT_REDIS_URL: 'http://x' is not a Redis URL"),
        ("NATIVEKIT_KAFKA_URL", "kafka://nohost", "NATIVEKIT_KAFKA_URL: 'kafka://nohost' is not"),
        ("NATIVEKIT_LOG_FORMAT", "xml", "NATIVEKIT_LOG_FORMAT: expected 'json' or 'console'"),
        ("NATIVEKIT_SHUTDOWN_GRACE", "-1", "NATIVEKIT_SHUTDOWN_GRACE: Input should be greater"),
        ("NATIVEKIT_REQUEST_BODY_LIMIT", "lots", "NATIVEKIT_REQUEST_BODY_LIMIT: Input should be"),
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


def test_password_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords in URLs and secret fields are masked in repr and error messages."""
    settings = Settings(
        _env_file=None, redis_url="redis://user:hunter2@db:6379/0", redis_password="s3cret"
    )
    text = repr(settings) + str(settings)
    assert "hunter2" not in text and "s3cret" not in text
    assert "redis://user:***@db:6379/0" in text
    monkeypatch.setenv("NATIVEKIT_REDIS_URL", "ftp://user:hunter2@db")
    with pytest.raises(ConfigError) as info:
        Settings(_env_file=None)
    assert "hunter2" not in str(info.value)


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    """*_FILE settings read Kubernetes-mounted secrets, trailing newline stripped."""
    redis_secret = tmp_path / "redis"
    redis_secret.write_text("from-file\n")
    kafka_secret = tmp_path / "kafka"
    kafka_secret.write_text("sasl-pw")
    settings = Settings(
        _env_file=None,
        redis_password_file=redis_secret,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password_file=kafka_secret,
    )
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "from-file"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "sasl-pw"


def test_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    """A secret file that cannot be read names the variable."""
    with pytest.raises(ConfigError, match="NATIVEKIT_REDIS_PASSWORD_FILE"):
        Settings(_env_file=None, redis_password_file=tmp_path / "absent")


def test_sasl_needs_credentials() -> None:
    """Choosing a SASL mechanism without user and password is refused."""
    with pytest.raises(ConfigError, match="NATIVEKIT_KAFKA_SASL_USERNAME"):
        Settings(_env_file=None, kafka_sasl_mechanism="PLAIN")


def test_log_format_follows_environment() -> None:
    """Console logs in development, JSON elsewhere, unless set explicitly."""
    assert Settings(_env_file=None, environment="development").resolved_log_format == "console"
    assert Settings(_env_file=None, environment="production").resolved_log_format == "json"
    assert (
        Settings(_env_file=None, environment="development", log_format="json").resolved_log_format
        == "json"
    )


def test_configuration_page_documents_every_setting() -> None:
    """docs/configuration.md names every Settings field as its environment variable."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [
        f"NATIVEKIT_{name.upper()}"
        for name in Settings.model_fields
        if f"`NATIVEKIT_{name.upper()}`" not in page
    ]
    assert missing == []
