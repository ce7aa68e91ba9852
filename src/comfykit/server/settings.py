"""The service's settings: one :class:`Settings` object, read from ``COMFYKIT_*`` variables.

Every field is also an environment variable with the prefix ``COMFYKIT_`` (``COMFYKIT_PORT``,
``COMFYKIT_DATABASE_URL``, ...). ``COMFYKIT_COMFYUI_URLS`` is comma-separated; without it the
service talks to ``$COMFYUI_URL``, else ``http://127.0.0.1:8188``. Values given to the
constructor (``comfykit serve`` flags) win over the environment.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "default_comfyui_urls", "default_data_dir"]


def default_data_dir() -> Path:
    """The platform's user data directory for comfykit."""
    import platformdirs

    return Path(platformdirs.user_data_dir("comfykit", appauthor=False))


def default_comfyui_urls() -> list[str]:
    """``[$COMFYUI_URL]``, else ``["http://127.0.0.1:8188"]``."""
    return [os.environ.get("COMFYUI_URL") or "http://127.0.0.1:8188"]


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service is configured with (env prefix ``COMFYKIT_``)."""

    model_config = SettingsConfigDict(env_prefix="COMFYKIT_", extra="ignore")

    comfyui_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=default_comfyui_urls,
        description="ComfyUI servers to run jobs on (env: comma-separated).",
    )
    host: str = Field(default="127.0.0.1", description="Address `comfykit serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `comfykit serve` uses.")
    data_dir: Path = Field(
        default_factory=default_data_dir, description="Where the database file is kept."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; default a SQLite file in the data dir. "
        "postgresql+asyncpg://... for deployments.",
    )
    storage_dir: Path | None = Field(
        default=None, description="Where outputs and uploads are kept (default: the data dir)."
    )
    default_model: str | None = Field(
        default=None, description="Checkpoint used when a request names none."
    )
    max_queue: int = Field(
        default=1000, ge=1, description="Queued jobs above which /ready answers 503."
    )
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest upload accepted (413 above)."
    )
    retention_days: float | None = Field(
        default=30, gt=0, description="Outputs and uploads older than this are deleted."
    )
    cleanup_interval_seconds: float = Field(
        default=3600, gt=0, description="How often the retention cleanup runs."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (none by default)."
    )
    cors_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "DELETE"],
        description="Methods allowed by CORS (env: comma-separated).",
    )
    cors_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "Authorization",
            "Content-Type",
            "X-API-Key",
            "X-Request-ID",
            "Prefer",
            "Last-Event-ID",
            "If-None-Match",
        ],  # fmt: skip
        description="Request headers allowed by CORS (env: comma-separated).",
    )
    # -- users ----------------------------------------------------------------------------
    auth: Literal["none", "required"] = Field(
        default="none",
        description="`required`: every route but /health needs an API key or a JWT. "
        "`none` is refused on a non-loopback host (unless --insecure-no-auth).",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="Shared secret of HS256 bearer tokens."
    )
    jwt_public_key: Path | None = Field(
        default=None, description="A PEM public key or a JWKS file (RS256/ES256 tokens)."
    )
    jwt_audience: str | None = Field(default=None, description="The `aud` tokens must carry.")
    jwt_issuer: str | None = Field(default=None, description="The `iss` tokens must carry.")
    jwt_role_claim: str = Field(default="role", description="The token claim naming the role.")
    jwt_leeway_seconds: float = Field(
        default=30, ge=0, le=600, description="Clock skew allowed on `exp` and `nbf`."
    )
    insecure_no_auth: bool = Field(
        default=False,
        description="Let `auth=none` serve on a non-loopback host (not recommended).",
    )
    public_ready: bool = Field(default=True, description="/ready answers without credentials.")
    public_metrics: bool = Field(
        default=False, description="/metrics answers without credentials (else admin only)."
    )
    adhoc_workflows: Literal["admin", "pro"] = Field(
        default="admin", description="The lowest role that may POST /api/v1/jobs."
    )
    quota_free: int = Field(default=10, ge=0, description="Images per UTC day, role free.")
    quota_pro: int = Field(default=1000, ge=0, description="Images per UTC day, role pro.")
    user_max_queued: int = Field(
        default=50, ge=1, description="Jobs one user may have queued or running (not admin)."
    )
    rate_limit: str | None = Field(
        default=None,
        description="Requests per key (per client IP without one), e.g. `60/minute`; "
        "none by default.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="`memory://` (one process) or `redis://host:port` (shared by replicas).",
    )
    # -- webhooks ---------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None, description="`whsec_...`: signs webhook deliveries (Standard Webhooks)."
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhooks to private, loopback and link-local hosts."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Delivery attempts before a webhook is failed."
    )
    webhook_backoff_seconds: float = Field(
        default=2.0, gt=0, description="Delay before the second attempt; doubles each time."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one delivery attempt."
    )
    # -- input limits ---------------------------------------------------------------------
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body but uploads (413)."
    )
    max_json_depth: int = Field(default=64, ge=4, description="Deepest JSON nesting accepted.")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="Largest upload in pixels (a bigger one is a 400)."
    )
    max_prompt_length: int = Field(default=5000, ge=1, description="Longest prompt accepted.")
    dispatch: bool = Field(
        default=True,
        description="Feed ComfyUI from this process (false: an API-only replica; run "
        "`comfykit worker` processes to dispatch).",
    )
    lease_seconds: float = Field(
        default=15, ge=1, le=600,
        description="A dispatched job's lease: renewed by the replica running it; when it "
        "lapses (that replica died) another replica takes the job over.",
    )  # fmt: skip
    dispatch_concurrency: int = Field(
        default=2, ge=1, le=64, description="Jobs fed to each ComfyUI at once."
    )
    max_wait_seconds: float = Field(
        default=300, ge=0, description="Longest `Prefer: wait=N` honoured."
    )
    reattach_timeout_seconds: float = Field(
        default=120,
        gt=0,
        description="How long a job whose ComfyUI is unreachable is retried before it fails.",
    )
    comfyui_timeout_seconds: float = Field(
        default=30, gt=0, description="HTTP timeout of the requests made to ComfyUI."
    )

    @field_validator("comfyui_urls", "cors_origins", "cors_methods", "cors_headers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("comfyui_urls")
    @classmethod
    def _at_least_one(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one ComfyUI URL is needed")
        return [url.rstrip("/") for url in value]

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"rate_limit {value!r} is not a rate like `60/minute`") from exc
        return value.strip()

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("jwt_secret must be at least 32 bytes long (RFC 7518 for HS256)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("webhook_secret must be a Standard Webhooks secret (whsec_...)")
        return value

    @model_validator(mode="after")
    def _jwt_keys(self) -> Settings:
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ValueError("set jwt_secret (HS256) or jwt_public_key (RS256/ES256), not both")
        return self

    def exposure_problem(self) -> str | None:
        """Why serving these settings on ``host`` would be unsafe (``None`` when it is not):
        ``auth=none`` is for loopback only."""
        if self.auth != "none" or self.insecure_no_auth or _is_loopback(self.host):
            return None
        return (
            f"refusing to serve on {self.host} without authentication: anyone who can reach "
            "it could run jobs. Set COMFYKIT_AUTH=required (then create a key with "
            "`comfykit keys create --role admin --name NAME`, or configure "
            "COMFYKIT_JWT_SECRET / COMFYKIT_JWT_PUBLIC_KEY), listen on 127.0.0.1, or pass "
            "--insecure-no-auth to insist."
        )

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'comfykit.db'}"
        if self.storage_dir is None:
            self.storage_dir = self.data_dir
        return self

    @property
    def storage_path(self) -> Path:
        """The storage directory (never ``None`` once validated)."""
        return self.storage_dir or self.data_dir
