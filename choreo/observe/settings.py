"""Process settings from the environment (``CHOREO_*``), shared by every service and the CLI."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo.observe.errors import SettingsError


class Settings(BaseSettings):
    """Runtime knobs. The mesh spec says *what* runs; these say *where* and *how fast*."""

    # populate_by_name: settings re-validated with a field changed (the topic prefix a
    # ``choreo up`` announces, a client's own broker) keep ``bootstrap_servers``, which the
    # environment sets through its aliases
    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS")
    )
    topic_prefix: str = Field("choreo", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    #: Which broker's tuning to use; ``auto`` asks the broker (``choreo.kafka.broker.broker_kind``).
    broker_kind: Literal["auto", "kafka", "embedded"] = "auto"
    #: ``auto``: on a broker with transactions (Apache Kafka) the keeper and agents write each
    #: batch's outputs and input offsets in one transaction (exactly-once for read_committed
    #: readers); ``off``: at-least-once with idempotent apply, as on the embedded broker.
    exactly_once: Literal["auto", "off"] = "auto"
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
    #: ``INFO``: lifecycle and verdicts; ``DEBUG``: one line per step too (choreo.observe.logs).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: ``json``, or ``keyvalue`` lines (``console`` is the same).
    log_format: Literal["json", "keyvalue", "console"] = "json"
    shutdown_grace_s: float = Field(30.0, gt=0)
    #: Where agents mark the records whose steps run (choreo.agent.markers); default: a
    #: ``choreo-steps`` folder in the system's temporary folder.
    markers_dir: Path | None = None
    #: The largest record value a service produces, in bytes, when the broker does not report
    #: its topics' ``max.message.bytes`` (see choreo.kafka.limits); at most the producer's
    #: own 1 MiB request cap.
    max_record_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=1024 * 1024)
    #: How long a service keeps retrying a broker that does not answer (produce or commit
    #: timeouts, no leader, connection refused) before it exits and says why, in seconds: the
    #: keeper rebuilds and re-reads, an agent sends its step's records again.
    broker_outage_s: float = Field(300.0, gt=0)
    #: How often the keeper looks for running traces past their deadline, in seconds.
    deadline_sweep_s: float = Field(1.0, gt=0)
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description=(
            "longest gap between two polls before a consumer leaves its group; agents poll while "
            "their steps run, so a slow step never outlives it, but a rebalance waits at most "
            "this long for revoked steps to finish"
        ),
    )
    max_reply_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description=(
            "bytes of model text one step keeps; a longer reply is cut and the cut noted, so a "
            "step record stays well under the broker's record size limit"
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def markers_folder(self) -> Path:
        """``markers_dir``, else ``choreo-steps`` in the system's temporary folder."""
        return self.markers_dir or Path(tempfile.gettempdir()) / "choreo-steps"


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
    """This process's settings, read from the environment once.

    Raises ``SettingsError`` naming every bad variable, its value and what it must be.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(settings_error(exc)) from None
