"""Process settings from the environment (``CHOREO_*``), shared by every service and the CLI."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime knobs. The mesh spec says *what* runs; these say *where* and *how fast*."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore")

    bootstrap_servers: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS")
    )
    topic_prefix: str = Field("choreo", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    #: Which broker's tuning to use; ``auto`` asks the broker (``runtime.broker.broker_kind``).
    broker_kind: Literal["auto", "kafka", "embedded"] = "auto"
    #: The fetch wait while records flow on the embedded broker, whose waiting fetches are
    #: not woken by new data (latency follows this wait).
    fetch_max_wait_ms: int = Field(10, ge=1, le=5000)
    #: On the embedded broker, the ceiling an idle consumer's fetch wait backs off to: the
    #: first record after a quiet spell waits up to this long, a quiet mesh costs ~no CPU.
    #: (Apache Kafka's fetches are woken by data and keep Kafka's own 500 ms wait.)
    fetch_idle_wait_ms: int = Field(500, ge=1, le=5000)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    max_in_flight: int = Field(8, ge=1, le=1024)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    log_level: str = "WARNING"
    log_format: str = Field("json", pattern=r"^(json|console)$")
    shutdown_grace_s: float = Field(30.0, gt=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
