"""Process settings from the environment (``CHOREO_*``), shared by every service and the CLI."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
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
    log_level: str = "WARNING"
    log_format: str = Field("json", pattern=r"^(json|console)$")
    shutdown_grace_s: float = Field(30.0, gt=0)
    max_poll_interval_ms: int = Field(300_000, ge=1000, description=(
        "longest gap between two polls before a consumer leaves its group; agents poll while "
        "their steps run, so a slow step never outlives it, but a rebalance waits at most "
        "this long for revoked steps to finish"))
    broker_outage_s: float = Field(120.0, gt=0, description=(
        "how long an agent keeps sending a step's records again through transient broker "
        "errors (timeouts, leader changes, a restart) before it stops and says why"))
    max_reply_bytes: int = Field(256 * 1024, ge=1024, description=(
        "bytes of model text one step keeps; a longer reply is cut and the cut noted, so a "
        "step record stays well under the broker's record size limit"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
