"""Which event ids a trace has applied, looked up in O(1) and kept up in O(the new ids).

A snapshot's ``applied`` list holds every id the trace applied, in order; a redelivered step
may come back long after it was folded (a replica that died before committing its input), so
no id is ever dropped. Scanning that list for every record read costs O(the trace's steps)
per step (25 µs at 1,000 steps, 250 µs at 10,000). ``AppliedIds`` keeps a set of each
trace's ids beside the list it was read from, and adds only the ids appended since.

It relies on how the keeper makes ``applied`` lists: a new version's list is the one before
it with ids appended (``choreo.keeper.fold``), never changed in place once looked up. So a
list that is at least as long as the one the set was read from and holds the very same id
object at that one's last position extends it; any other list (a version rolled back, a
trace restored from the state topic) is read again whole, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from choreo.schemas import Snapshot


@dataclass
class _Read:
    """A trace's ids as a set, read from a list of ``count`` ids whose last was ``last``, and
    the bytes of their JSON strings (quotes included)."""

    ids: set[str]
    count: int
    last: str | None
    json_bytes: int

    def extended_by(self, applied: list[str]) -> bool:
        """True when ``applied`` is the list this was read from with ids appended."""
        return len(applied) >= self.count and (
            self.count == 0 or applied[self.count - 1] is self.last
        )


class AppliedIds:
    """The ids each trace has applied, by trace id (see the module's docstring)."""

    def __init__(self) -> None:
        self._read: dict[str, _Read] = {}

    def has(self, snapshot: Snapshot, event_id: str) -> bool:
        """True when ``snapshot``'s trace applied ``event_id`` (at or before its version)."""
        return event_id in self._of(snapshot).ids

    def encoded_size(self, snapshot: Snapshot) -> int:
        """The bytes of ``snapshot``'s ``applied`` list encoded as JSON."""
        read = self._of(snapshot)
        return 2 + read.json_bytes + max(read.count - 1, 0)  # brackets, strings, commas

    def _of(self, snapshot: Snapshot) -> _Read:
        applied = snapshot.applied
        read = self._read.get(snapshot.trace_id)
        if read is None or not read.extended_by(applied):
            read = _Read(set(), 0, None, 0)
            self._read[snapshot.trace_id] = read
        added = applied[read.count :]
        read.ids.update(added)
        read.json_bytes += sum(len(_json.encode(i)) for i in added)
        read.count = len(applied)
        read.last = applied[-1] if applied else None
        return read

    def forget(self, trace_id: str) -> None:
        """Drop ``trace_id``'s ids (an ended or lost trace); a later lookup reads them again."""
        self._read.pop(trace_id, None)


_json = msgspec.json.Encoder()
