"""Process settings from the environment (``CHOREO_*``), shared by every service and the CLI."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime knobs. The mesh spec says *what* runs; these say *where* and *how fast*."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore")

    bootstrap_servers: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS")
    )
    topic_prefix: str = Field("choreo", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    fetch_max_wait_ms: int = Field(10, ge=1, le=5000)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    max_in_flight: int = Field(8, ge=1, le=1024)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    #: ``INFO``: lifecycle and verdicts; ``DEBUG``: one line per step too (runtime/logs.py).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: ``json``, or ``keyvalue`` lines (``console`` is the same).
    log_format: Literal["json", "keyvalue", "console"] = "json"
    shutdown_grace_s: float = Field(30.0, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def settings_error(exc: ValidationError) -> str:
    """One line per bad variable: its name, what it is set to, and what it must be."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        variable = name if name.isupper() else f"CHOREO_{name.upper()}"
        lines.append(f"{variable}={error.get('input')!s}: {error['msg']}")
    return "bad environment: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
