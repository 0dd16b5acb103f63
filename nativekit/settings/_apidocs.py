"""Settings of the API documents a service serves: OpenAPI, AsyncAPI and the docs page."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from nativekit.settings._groups import GROUP_CONFIG


class DocsSettings(BaseModel):
    """The OpenAPI and AsyncAPI documents and the interactive docs page."""

    model_config = GROUP_CONFIG

    enabled: bool = Field(
        True,
        description="Serve the OpenAPI and AsyncAPI documents and the docs page (false: "
        "none of their routes exist).",
    )
    openapi_path: str = Field(
        "/openapi.json", description="Path of the OpenAPI 3.1 document ('' turns it off)."
    )
    asyncapi_path: str = Field(
        "/asyncapi.json", description="Path of the AsyncAPI 3.0 document ('' turns it off)."
    )
    ui_path: str = Field(
        "/docs",
        description="Path of the interactive docs page (Swagger UI shipped in the package; "
        "'' turns it off; needs the OpenAPI document).",
    )
    title: str | None = Field(None, description="Title of the documents; default the service name.")
    api_version: str = Field("0.1.0", description="Version of the API the documents describe.")

    @field_validator("openapi_path", "asyncapi_path", "ui_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.startswith("/") or value == "/" or value.endswith("/")):
            raise ValueError(
                f"expected an absolute path such as '/openapi.json' (or '' to turn it off), "
                f"got {value!r}"
            )
        return value
