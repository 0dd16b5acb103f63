"""The settings of who may call a service: bearer authentication and CORS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from nativekit.settings._groups import GROUP_CONFIG
from nativekit.settings._urls import read_secret

#: A list setting: a JSON list (``["a","b"]``) or comma-separated words (``a,b``).
Words = Annotated[list[str], NoDecode]


def _words(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class AuthSettings(BaseModel):
    """Bearer tokens: a static token, JWTs checked against a JWKS, who needs which."""

    model_config = GROUP_CONFIG

    token: SecretStr | None = Field(
        None, description="A static bearer token (prefer token_file); its holder has every scope."
    )
    token_file: Path | None = Field(
        None, description="File holding the static bearer token (a Kubernetes secret mount)."
    )
    token_subject: str = Field(
        "static-token", description="The principal's subject when the static token is used."
    )
    jwks_url: str | None = Field(
        None,
        description="URL of the JSON Web Key Set that signs accepted JWTs "
        "(https://issuer/.well-known/jwks.json; file:///path for a local key set).",
    )
    issuer: str | None = Field(None, description="Required 'iss' claim of JWTs (unset: any).")
    audience: Words = Field(
        default=[],
        description="Accepted 'aud' claims (JSON list or comma-separated); "
        "one of them is required when set.",
    )
    algorithms: Words = Field(
        default=["RS256", "ES256"],
        description="Signature algorithms accepted for JWTs (asymmetric ones only: "
        "RS*, PS*, ES*, EdDSA).",
    )
    leeway_seconds: float = Field(
        30.0, ge=0, description="Clock skew allowed on 'exp' and 'nbf' of JWTs."
    )
    scope_claim: str = Field(
        "scope",
        description="JWT claim holding the granted scopes (a space-separated string or a list; "
        "'scp' and 'permissions' are read too when this one is absent).",
    )
    jwks_cache_seconds: float = Field(
        300.0, gt=0, description="Time fetched keys are used before the key set is fetched again."
    )
    jwks_min_refresh_seconds: float = Field(
        30.0,
        ge=0,
        description="Shortest time between two fetches of the key set caused by an unknown "
        "key id (limits what forged tokens can make the service fetch).",
    )
    jwks_timeout_seconds: float = Field(5.0, gt=0, description="Time one key set fetch may take.")
    token_cache_seconds: float = Field(
        60.0,
        ge=0,
        description="Time a verified JWT is taken again without checking its signature "
        "(never past its 'exp'); 0 verifies every request. A key withdrawn from the key set "
        "stops working after at most this long.",
    )
    token_cache_size: int = Field(10_000, ge=1, description="Verified JWTs remembered at most.")
    routes: bool = Field(
        False,
        description="Require a valid token on every user route (routes opt out with "
        "auth=False); off: only routes with scopes= or auth=True need one.",
    )
    metrics: bool = Field(False, description="Require a valid token on /metrics.")
    operator_scope: str = Field(
        "nativekit:operator",
        description="Scope a JWT needs for the operator API (the static token has every scope).",
    )
    insecure_operator_api: bool = Field(
        False,
        description="Serve the operator API without authentication when no token or JWKS is "
        "configured. For local development only: anyone reaching the port can abort sagas.",
    )

    @field_validator("audience", "algorithms", mode="before")
    @classmethod
    def _split_words(cls, value: Any) -> Any:
        return _words(value)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        weak = [a for a in value if a.upper() == "NONE" or a.upper().startswith("HS")]
        if weak:
            raise ValueError(
                f"{weak} cannot verify tokens signed by an identity provider's public keys "
                "('none' is no signature, HS* would take a public key as a shared secret); "
                "use RS256, PS256, ES256 or EdDSA"
            )
        if not value:
            raise ValueError("at least one algorithm is needed, e.g. RS256")
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> AuthSettings:
        if self.token_file is not None:
            self.token = read_secret(self.token_file, "auth.token_file")
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("the static bearer token is empty")
        return self

    @property
    def configured(self) -> bool:
        """True when some way to authenticate a caller is set (a token or a JWKS URL)."""
        return self.token is not None or self.jwks_url is not None


class CorsSettings(BaseModel):
    """Cross-origin requests from browsers (off unless origins are listed)."""

    model_config = GROUP_CONFIG

    origins: Words = Field(
        default=[],
        description="Origins allowed to call the service from a browser "
        "(https://app.example.com; '*' for any); empty turns CORS off.",
    )
    methods: Words = Field(
        default=["GET", "POST", "PUT", "PATCH", "DELETE"],
        description="Methods allowed in cross-origin requests.",
    )
    headers: Words = Field(
        default=["Authorization", "Content-Type", "Idempotency-Key"],
        description="Request headers allowed in cross-origin requests.",
    )
    credentials: bool = Field(
        False, description="Allow cookies and credentials (needs explicit origins, not '*')."
    )
    max_age_seconds: int = Field(600, ge=0, description="Time browsers may cache a preflight.")

    @field_validator("origins", "methods", "headers", mode="before")
    @classmethod
    def _split_words(cls, value: Any) -> Any:
        return _words(value)

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> CorsSettings:
        if self.credentials and "*" in self.origins:
            raise ValueError(
                "credentials=true with origin '*' is refused by browsers; list the origins"
            )
        return self
