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

import atexit
import json
import logging
import re
import sys
import threading
import time
from collections import Counter
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


#: The Kafka client libraries, whose warnings during a broker's loss are summarised.
_KAFKA = ("aiokafka", "kafka")


def _shape(record: logging.LogRecord) -> str:
    """What a client line says, without what varies between its repeats: its template with
    each argument elided, except errors, which are named (``NodeNotReadyError``)."""
    args = record.args if isinstance(record.args, tuple) else ()
    named = tuple(
        a.__name__
        if isinstance(a, type)
        else type(a).__name__
        if isinstance(a, BaseException)
        else "…"
        for a in args
    )
    try:
        return str(record.msg) % named if named else str(record.msg)
    except (TypeError, ValueError):
        return str(record.msg)


class OutageSummary(logging.Filter):
    """Holds back the Kafka client's warnings and errors while a broker is gone, and writes
    one line for the whole outage once the client has been quiet for ``quiet_s`` seconds:
    how long, how many lines, and what was retried (each kind of line with its count).

    A lost broker makes every client of a service log each retry (about 16,000 lines across
    five services in one failover soak); the mesh's own lines, which say what it did about
    it, pass untouched; an error of the mesh's own (a service exiting, say) first writes the
    summary held so far, so the lines keep the order of cause and effect. Attach it to the
    handler (a logger's filter misses its children).
    """

    def __init__(self, handler: logging.Handler, quiet_s: float = 10.0, top: int = 5) -> None:
        super().__init__()
        self.handler, self.quiet_s, self.top = handler, quiet_s, top
        self._lock = threading.Lock()
        self._kinds: Counter[str] = Counter()
        self._first = self._last = self._last_at = 0.0
        self._timer: threading.Timer | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(_KAFKA):
            if record.levelno >= logging.ERROR:
                self.flush()  # what the client retried comes before the error it led to
            return True
        with self._lock:
            if not self._kinds:
                self._first = record.created
            self._kinds[_shape(record)] += 1
            self._last, self._last_at = time.monotonic(), record.created
            if self._timer is None:
                self._arm(self.quiet_s)
        return False

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._check)
        self._timer.daemon = True
        self._timer.start()

    def _check(self) -> None:
        with self._lock:
            left = self._last + self.quiet_s - time.monotonic()
            if left > 0:
                self._arm(left)
                return
            self._timer = None
            kinds, self._kinds = self._kinds, Counter()
        self.handler.handle(self.summary(kinds))

    def flush(self) -> None:
        """Write the summary of an outage still being held (at exit)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            kinds, self._kinds = self._kinds, Counter()
        if kinds:
            self.handler.handle(self.summary(kinds))

    def summary(self, kinds: Counter[str]) -> logging.LogRecord:
        """The outage's one line: ``lines`` held back over ``seconds`` (first to last), and
        the ``top`` kinds of line (``retried``: kind → count)."""
        lines = sum(kinds.values())
        record = logging.LogRecord(
            "choreo.kafka",
            logging.WARNING,
            __file__,
            0,
            "Kafka client retried through a broker outage",
            None,
            None,
        )
        record.lines = lines
        record.seconds = round(self._last_at - self._first, 1)
        record.retried = dict(kinds.most_common(self.top))
        return record


def formatter(settings: Settings, service: str) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(service)
    return KeyValueFormatter(service)


def configure(settings: Settings, service: str) -> None:
    """Send every logger's records at ``CHOREO_LOG_LEVEL`` or above to stderr, one per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings, service))
    root = logging.getLogger()
    if settings.log_level != "DEBUG":  # at DEBUG, every client line as it comes
        summary = OutageSummary(handler)
        handler.addFilter(summary)
        atexit.register(summary.flush)
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
