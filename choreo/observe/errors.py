"""The observe layer's error, apart from the settings model so it can be caught without
loading pydantic-settings."""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class SettingsError(ChoreoError, ValueError):
    """A ``CHOREO_*`` (or ``KAFKA_BOOTSTRAP_SERVERS``) variable has a value the settings
    refuse; the message names each bad variable, its value and what it must be."""
