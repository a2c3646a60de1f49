"""Log setup for every service and the CLI: one line per event, machine-readable.

``CHOREO_LOG_FORMAT=json`` (the default) writes one JSON object per line; ``keyvalue`` (alias
``console``) writes ``ts=… level=… service=… msg="…" key=value`` lines. Either way each line
carries the service, and every event about a trace carries its ``trace_id``. Messages and
values are written as data: control characters (terminal escape codes among them) are escaped,
so a log file never changes the terminal that shows it.

``CHOREO_LOG_LEVEL`` (default ``INFO``): ``INFO`` logs each service's lifecycle and every
verdict about a trace; ``DEBUG`` adds one line per step.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from choreo.observe.settings import Settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Libraries whose info lines are routine chatter (fetches, group joins, each HTTP request,
#: unclosed clients at exit); a caller reports what matters once, in its own words.
_CHATTY = ("aiokafka", "kafka", "asyncio", "httpx", "httpcore")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers parse without configuration."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)  # JSON escapes every control character


def _value(value: Any) -> str:
    """A value as one token: bare if it is a plain word, else quoted with escapes."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not re.search(r'[\s"=\\]', text) and not _CONTROL.search(text):
        return text
    return json.dumps(text)


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… service=… logger=… msg="…" key=value …``: one line, grep-friendly."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        pairs = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            pairs["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_value(v)}" for k, v in pairs.items())


def formatter(settings: Settings, service: str) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(service)
    return KeyValueFormatter(service)


def configure(settings: Settings, service: str) -> None:
    """Send every logger's records at ``CHOREO_LOG_LEVEL`` or above to stderr, one per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings, service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in _CHATTY:  # their info is every fetch and group join: only problems, or all
        logging.getLogger(name).setLevel(
            logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
        )


def configure_cli(settings: Settings) -> None:
    """The CLI's own logging: warnings only (everything at ``DEBUG``), and no client chatter:
    a command reports a failure once, in its own words."""
    configure(settings, "cli")
    debug = settings.log_level == "DEBUG"
    if not debug:
        logging.getLogger().setLevel(logging.WARNING)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL)
