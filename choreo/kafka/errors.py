"""The Kafka layer's errors, apart from the clients so they can be caught without aiokafka."""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class BrokerError(ChoreoError, RuntimeError):
    """No broker could be found or started; the message says what was tried."""


class BrokerOutage(ChoreoError, RuntimeError):
    """The broker has not answered for longer than the configured outage; the service exits."""


class Fenced(ChoreoError, RuntimeError):
    """Another process owns this input now (it started a producer with the same transactional
    id). Nothing this process still holds may be written: it must exit and be restarted."""


class RecordTooLarge(ChoreoError, ValueError):
    """A record would exceed the limit; the message names what, its size and the limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} would be {size} bytes, over the record limit of {limit} bytes")
        self.what, self.size, self.limit = what, size, limit


class BrokerRefused(ChoreoError, PermissionError):
    """The broker answered but refused this client: wrong credentials, a certificate it does
    not trust (or that this client does not), or an ACL its principal lacks; the message says
    which, and what to check."""


class TopicsRefused(ChoreoError, RuntimeError):
    """The broker refused to create a mesh's topics (a replication factor or
    ``min.insync.replicas`` the cluster cannot meet, no right to create topics, ...); the
    message gives the broker's reason and the topics."""
