"""The settings of the PostgreSQL connection (sagas, outbox and consumer dedup)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from nativekit.settings._groups import GROUP_CONFIG
from nativekit.settings._urls import mask_url, read_secret

TlsMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_database_url(value: str | None) -> str | None:
    """``value`` if it is unset or a ``postgresql://`` URL, else ValueError saying what is."""
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError(
            f"{mask_url(value)!r} is not a PostgreSQL URL; expected "
            "'postgresql://user@host:port/database' (or leave it unset for Redis/memory)"
        )
    return value


class DatabaseSettings(BaseModel):
    """PostgreSQL: when ``url`` is set, sagas, their outbox and consumer dedup live there
    (the cache stays on Redis or in memory)."""

    model_config = GROUP_CONFIG

    url: str | None = Field(
        None,
        description="'postgresql://user@host:port/database' keeps saga state, the outbox and "
        "consumer DONE marks in PostgreSQL (in the handlers' transactions); unset: Redis.",
    )
    password: SecretStr | None = Field(None, description="PostgreSQL password.")
    password_file: Path | None = Field(None, description="File holding the PostgreSQL password.")
    tls: TlsMode | None = Field(
        None,
        description="TLS mode (libpq's sslmode: disable, prefer, require, verify-ca, "
        "verify-full); default: the URL's sslmode, else prefer.",
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify PostgreSQL TLS.")
    tls_cert_file: Path | None = Field(None, description="Client certificate for mTLS.")
    tls_key_file: Path | None = Field(None, description="Client key for mTLS.")
    pool_size: int = Field(
        20, ge=1, description="Connections per service; a transaction waits for a free one."
    )
    command_timeout_seconds: float = Field(
        10.0, gt=0, description="Time one statement may take before it is cancelled."
    )
    schema_name: str = Field(
        "nativekit",
        description="Schema holding nativekit's tables (one per service or environment "
        "sharing a database).",
    )
    migrate_on_start: bool = Field(
        False,
        description="Apply pending schema migrations when the service starts (else run "
        "'nativekit db upgrade'; a service refuses to start on an outdated schema).",
    )
    retention_interval_seconds: float = Field(
        60.0, gt=0, description="Time between passes deleting expired sagas and DONE marks."
    )
    retention_batch: int = Field(
        1000, ge=1, description="Rows one retention DELETE removes (short transactions)."
    )
    readiness: Literal["critical", "warn", "off"] = Field(
        "critical", description="How the postgres:ping check counts in /readyz."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return check_database_url(value)

    @field_validator("schema_name")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a schema name nativekit uses; expected lower-case letters, "
                "digits and '_' (at most 63, not starting with a digit)"
            )
        return value

    @model_validator(mode="after")
    def _read_secret_files(self) -> DatabaseSettings:
        if self.password_file is not None:
            self.password = read_secret(self.password_file, "database.password_file")
        return self
