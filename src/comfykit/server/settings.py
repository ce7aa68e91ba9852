"""The service's settings: one :class:`Settings` object, read from ``COMFYKIT_*`` variables.

Every field is also an environment variable with the prefix ``COMFYKIT_`` (``COMFYKIT_PORT``,
``COMFYKIT_DATABASE_URL``, ...). ``COMFYKIT_COMFYUI_URLS`` is comma-separated; without it the
service talks to ``$COMFYUI_URL``, else ``http://127.0.0.1:8188``. Values given to the
constructor (``comfykit serve`` flags) win over the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "default_comfyui_urls", "default_data_dir"]


def default_data_dir() -> Path:
    """The platform's user data directory for comfykit."""
    import platformdirs

    return Path(platformdirs.user_data_dir("comfykit", appauthor=False))


def default_comfyui_urls() -> list[str]:
    """``[$COMFYUI_URL]``, else ``["http://127.0.0.1:8188"]``."""
    return [os.environ.get("COMFYUI_URL") or "http://127.0.0.1:8188"]


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
    max_prompt_length: int = Field(default=5000, ge=1, description="Longest prompt accepted.")
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

    @field_validator("comfyui_urls", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("comfyui_urls")
    @classmethod
    def _at_least_one(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one ComfyUI URL is needed")
        return [url.rstrip("/") for url in value]

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
