"""Service settings, read from ``NATIVEKIT_*`` environment variables and ``.env``.

Settings are grouped by capability: ``settings.redis.url`` is
``NATIVEKIT_REDIS_URL``, ``settings.saga.lease_seconds`` is
``NATIVEKIT_SAGA_LEASE_SECONDS``: the prefix, the group, then the field. Durations
are seconds, in fields named ``*_seconds``. The names of nativekit 0.1
(``NATIVEKIT_SHUTDOWN_GRACE``, ...) keep working for one release with a
``DeprecationWarning`` naming the new variable.

Secrets can be given inline or, as Kubernetes mounts them, as files
(``NATIVEKIT_REDIS_PASSWORD_FILE=/var/run/secrets/redis/password``).
Passwords never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from nativekit.errors import ConfigError
from nativekit.settings._access import AuthSettings, CorsSettings
from nativekit.settings._apidocs import DocsSettings
from nativekit.settings._connections import (
    Compression,
    KafkaSettings,
    Readiness,
    RedisSettings,
    SaslMechanism,
)
from nativekit.settings._console import ConsoleSettings
from nativekit.settings._database import DatabaseSettings, TlsMode
from nativekit.settings._flat import FlatNames
from nativekit.settings._groups import (
    CacheSettings,
    ConsumerSettings,
    HttpSettings,
    LogFormat,
    LogLevel,
    SagaSettings,
    TelemetrySettings,
)
from nativekit.settings._legacy import USED, LegacyVariables, nest_keywords
from nativekit.settings._renames import ENV_PREFIX, Rename, env_variable
from nativekit.settings._urls import (
    ClusterURL,
    SentinelURL,
    mask_url,
    parse_cluster_url,
    parse_sentinel_url,
)

__all__ = [
    "ENV_PREFIX",
    "AuthSettings",
    "CacheSettings",
    "ClusterURL",
    "Compression",
    "ConsoleSettings",
    "ConsumerSettings",
    "CorsSettings",
    "DocsSettings",
    "DatabaseSettings",
    "Environment",
    "HttpSettings",
    "KafkaSettings",
    "LogFormat",
    "LogLevel",
    "Readiness",
    "RedisSettings",
    "SagaSettings",
    "SaslMechanism",
    "SentinelURL",
    "Settings",
    "TelemetrySettings",
    "TlsMode",
    "groups",
    "mask_url",
    "parse_cluster_url",
    "parse_sentinel_url",
    "variables",
]

Environment = Literal["development", "test", "staging", "production"]


class Settings(FlatNames, BaseSettings):
    """Settings of one service; construct with overrides or let the environment fill it.

    Groups are given as keywords too: ``Settings(redis={"url": "redis://cache:6379/0"})``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        validate_default=True,
    )

    service_name: str | None = Field(
        None, description="Overrides the name given to Service(); used in logs, metrics, traces."
    )
    environment: Environment = Field("production", description="Deployment environment.")
    connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Time to connect to a backend (Redis, Kafka, PostgreSQL)."
    )
    operation_timeout_seconds: float = Field(
        2.0, gt=0, description="Time one backend call may take."
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    saga: SagaSettings = Field(default_factory=SagaSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    docs: DocsSettings = Field(default_factory=DocsSettings)

    _deprecated: tuple[Rename, ...] = PrivateAttr(default=())

    def __init__(self, **values: Any) -> None:
        used: list[Rename] = []
        token = USED.set(used)
        try:
            super().__init__(**nest_keywords(values))
        except ValidationError as exc:
            _warn(used)
            raise ConfigError(_describe(exc, used)) from None
        finally:
            USED.reset(token)
        _warn(used)
        self._deprecated = tuple(used)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The new variables first, then the deprecated ones (environment before ``.env``)."""
        legacy = [s for s in (env_settings, dotenv_settings) if isinstance(s, EnvSettingsSource)]
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            LegacyVariables(settings_cls, *legacy),
            file_secret_settings,
        )

    @property
    def deprecated_variables(self) -> list[tuple[str, str]]:
        """``(old, new)`` names of the deprecated variables these settings were read from."""
        return [(r.old_variable, r.new_variable) for r in self._deprecated]

    @property
    def resolved_log_format(self) -> LogFormat:
        """The log format in effect: the explicit one, else by environment."""
        if self.telemetry.log_format is not None:
            return self.telemetry.log_format
        return "console" if self.environment == "development" else "json"

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied; flat 0.1 names in ``update`` go to their groups."""
        if update:
            nested = nest_keywords(dict(update))
            for group, value in list(nested.items()):
                if isinstance(value, dict):
                    nested[group] = getattr(self, group).model_copy(update=value)
            update = nested
        return super().model_copy(update=update, deep=deep)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            url = getattr(value, "url", None)
            if isinstance(value, RedisSettings | KafkaSettings | DatabaseSettings) and url:
                value = value.model_copy(update={"url": mask_url(url)})
            yield name, value


def groups() -> dict[str, type[BaseModel]]:
    """The group models by name (``"saga"``: :class:`SagaSettings`), in declaration order."""
    found: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found[name] = kind
    return found


def variables() -> dict[str, str]:
    """Every environment variable of the settings with the dotted path it sets."""
    found = {env_variable(name): name for name in Settings.model_fields if name not in groups()}
    for group, model in groups().items():
        found.update(
            {env_variable(f"{group}.{name}"): f"{group}.{name}" for name in model.model_fields}
        )
    return found


def _warn(used: list[Rename]) -> None:
    for rename in used:
        unit = " (now in seconds)" if rename.scale != 1.0 else ""
        warnings.warn(
            f"{rename.old_variable} is deprecated; set {rename.new_variable}{unit} instead. "
            "The old name stops working in the next release.",
            DeprecationWarning,
            stacklevel=3,
        )


def _describe(exc: ValidationError, used: list[Rename]) -> str:
    given = {r.new: r.old_variable for r in used}
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        if not path:
            variable = "settings"
        elif len(error["loc"]) == 1 and path in groups():
            variable = f"{env_variable(path)}_*"
        else:
            variable = given.get(path, env_variable(path))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = f"expected {error.get('ctx', {}).get('expected', message)}"
        lines.append(f"{variable}: {message}")
    return "Invalid nativekit settings: " + "; ".join(lines)
