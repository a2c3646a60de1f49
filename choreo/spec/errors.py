"""The spec layer's error, apart from the spec's models so it can be caught without them."""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class SpecError(ChoreoError, ValueError):
    """The mesh spec is invalid; the message names the file and every bad field."""
