"""The settings of the operator console (``NATIVEKIT_CONSOLE_*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from nativekit.settings._groups import GROUP_CONFIG


class ConsoleSettings(BaseModel):
    """The operator console: web pages for sagas, dead letters and consumers."""

    model_config = GROUP_CONFIG

    enabled: bool = Field(
        False,
        description="Serve the operator console; it needs authentication like the operator API "
        "(NATIVEKIT_AUTH_*, see docs/console.md).",
    )
    path: str = Field("/_nativekit/console", description="Path the console is served under.")
    trace_url: str | None = Field(
        None,
        description="Link to a trace in your tracing UI, with '{trace_id}' where the id goes "
        "(e.g. 'https://jaeger.example/trace/{trace_id}').",
    )
    page_size: int = Field(50, ge=1, le=500, description="Sagas and dead letters per page.")
    secure_cookie: bool | None = Field(
        None,
        description="Mark the console's session cookie Secure; by default it is when the "
        "request came over HTTPS.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        path = "/" + value.strip("/")
        if path == "/":
            raise ValueError("the console needs a path of its own, e.g. '/_nativekit/console'")
        return path

    @field_validator("trace_url")
    @classmethod
    def _trace_url(cls, value: str | None) -> str | None:
        if value is not None and "{trace_id}" not in value:
            raise ValueError("the URL needs '{trace_id}' where the trace id goes")
        return value
