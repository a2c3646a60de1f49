"""The models layer's errors, apart from the model client so they can be caught without
loading its HTTP client, metrics and tracing."""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError
from choreo.schemas.records import Usage


class ModelError(ChoreoError, RuntimeError):
    """A model call failed for good: retries exhausted, or an error that retrying cannot fix.

    ``reason`` is a bounded label: ``rate_limited``, ``http_<status>``, ``timeout`` (an
    attempt took longer than the tier's ``timeout_s``), ``deadline`` (the trace's deadline
    came first), ``connection`` (any transport error), ``protocol`` (any other HTTP client
    error), ``bad_response`` (undecodable, too large, or not a chat completion),
    ``stream_cut`` (a streamed answer ended, or sent an error, before it was whole),
    ``stream_stalled`` (a streamed answer went silent past the tier's ``idle_timeout_s``) or
    ``circuit_open`` (the tier's circuit refused the request). ``attempts`` counts the requests
    made; ``usage`` is what the provider reported for them (an answer it billed but that
    could not be used still cost its tokens).
    """

    def __init__(
        self, reason: str, message: str, attempts: int, usage: Usage | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts
        self.usage = usage if usage is not None else Usage(calls=attempts)


class ModelConfigError(ChoreoError, ValueError):
    """A model tier cannot be reached as configured; the message says what to set."""


class ScriptError(ChoreoError, ValueError):
    """A scripted model's script (``choreo.model_server``) is missing or invalid; the message
    names the file and each bad field."""
