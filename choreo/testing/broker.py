"""One broker for every mesh a test process runs: resolved once, stopped at exit.

``shared_broker()`` resolves the broker in the project's one order
(choreo.kafka.broker.resolve_broker): ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a
testcontainers Kafka where a Docker engine answers, else the embedded broker on a free
loopback port. The first call starts it (the embedded broker in about a second); later calls
return the same handle; the broker this module started is stopped when the interpreter exits.
Each mesh takes a topic prefix of its own, so meshes and tests never see each other's records.
"""

from __future__ import annotations

import atexit
import threading

from choreo.kafka.broker import BrokerHandle, resolve_broker

_lock = threading.Lock()
_shared: BrokerHandle | None = None


def shared_broker() -> BrokerHandle:
    """The test process's broker, resolved and started on first use; stopped at exit.

    Raises choreo.kafka.errors.BrokerError when no broker can be found or started.
    """
    global _shared
    with _lock:
        if _shared is None:
            _shared = resolve_broker()
            atexit.register(_shared.stop)
        return _shared
