"""Big state values by reference (choreo.schemas.blobs, choreo.keeper.blobs): whatever the
values and however they change, a reader of the state log who fetches the chunks the
references name gets the keeper's state back exactly, and a chunk that does not hash as its
reference says is refused."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.keeper.batch import Batch, Logged
from choreo.keeper.blobs import Blobs, placed
from choreo.schemas import Envelope, decode
from choreo.schemas.blobs import BlobMismatch, Chunk, join, ref_of, refs_in, split
from choreo.schemas.deltas import StateLog
from tests.state.test_state_log import histories, snapshot, values

#: Tiny, so that most values of the generated histories go by reference, in several chunks.
THRESHOLD = 12

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@given(json_values, st.integers(1, 64))
def test_a_value_split_into_chunks_joins_back_to_itself(value: Any, chunk_bytes: int) -> None:
    ref, chunks = split(value, chunk_bytes, "b", 0)
    by_hash = {chunk.sha256: data for chunk, data in chunks}
    assert all(len(data) <= chunk_bytes for _, data in chunks)
    assert join(ref, lambda c: by_hash[c.sha256]) == msgspec.json.decode(msgspec.json.encode(value))


def test_a_chunk_that_does_not_hash_to_its_key_is_refused() -> None:
    ref, chunks = split(["a" * 40, "b" * 40], 16, "b", 0)
    broken = {chunk.sha256: data for chunk, data in chunks}
    first = ref.chunks[0].sha256
    broken[first] = b"X" + broken[first][1:]
    with pytest.raises(BlobMismatch, match=first):
        join(ref, lambda c: broken[c.sha256])


class Written:
    """The blob topic and state topic of one partition, as a keeper writes them."""

    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}
        self.log = StateLog()

    def write(self, batch: Batch) -> None:
        """Write ``batch``'s chunks (offsets from 0 up), place them, write its state records."""
        offsets = {}
        for _, chunk, data in batch.chunks:
            offsets[chunk.sha256, chunk.partition] = len(self.chunks)
            self.chunks[len(self.chunks)] = data
        batch.place(offsets)
        for _, key, value in batch.state_records():
            self.log.add(key.encode(), value)

    def chunk(self, chunk: Chunk) -> bytes:
        return self.chunks[chunk.offset]

    def fields(self) -> dict[str, Any]:
        """The trace's state as a reader of the log gets it: folded, then fetched."""
        state = self.log.state("t")
        assert state is not None
        fetched = dict(state.fields)
        for name, held in refs_in(state.fields):
            fetched[name] = held.value(join(held.ref, self.chunk))
        return fetched


@settings(max_examples=150)
@given(histories(), st.integers(0, 64))
def test_the_state_log_with_values_by_reference_folds_back_to_the_keepers_state(
    versions: list[Any], due_every: int
) -> None:
    blobs = Blobs("b", THRESHOLD)
    written = Written()
    logged: Logged | None = None
    for version in versions:
        batch = Batch(blobs=blobs)
        batch.store(version, logged)
        written.write(batch)
        logged = batch.logged()["t"]
        if due_every and version.version % due_every == 0:
            logged.due_bytes = 0  # a full snapshot next: references in snapshots and deltas
        assert written.fields() == _json(version.fields)


def test_a_list_and_an_object_by_reference_grown_by_deltas_fold_to_their_whole_values() -> None:
    log, notes = ["a" * 20], {"k": "b" * 20}
    states = [
        {"log": log, "notes": notes},
        {"log": [*log, "c"], "notes": {**notes, "m": 1}},
        {"log": [*log, "c", "d"], "notes": {**notes, "m": 2}},
    ]
    blobs, written, logged = Blobs("b", THRESHOLD), Written(), None
    for version, fields in enumerate(states, 1):
        batch = Batch(blobs=blobs)
        batch.store(snapshot(version, fields, ["admit"]), logged)
        written.write(batch)
        logged = batch.logged()["t"]
    head = written.log.state("t")
    assert head is not None and ref_of(head.fields["log"]) is not None  # grown, not fetched
    assert written.fields() == {"log": ["a" * 20, "c", "d"], "notes": {"k": "b" * 20, "m": 2}}


@given(st.dictionaries(st.sampled_from(["log", "n", "draft"]), values, min_size=1))
def test_an_event_carries_references_placed_at_their_offsets_and_no_value_over_the_threshold(
    state: dict[str, Any],
) -> None:
    blobs = Blobs("b", THRESHOLD)
    batch = Batch(blobs=blobs)
    event = Envelope(event_id="e", trace_id="t", type="x", source="s", state=state)
    batch.send("events", "t", event)
    written = Written()
    written.write(batch)
    sent = decode(batch.sends[0][2], Envelope).state or {}
    for name, value in sent.items():
        held = ref_of(value)
        if held is None:
            assert len(msgspec.json.encode(value)) <= THRESHOLD
        else:
            assert held.value(join(held.ref, written.chunk)) == _json(state[name])


def test_placing_offsets_touches_only_a_references_chunks() -> None:
    sha = "ab" * 32
    text = f'{{"a":"\\"{sha}\\",0,4611686018427387904","c":[["{sha}",0,4611686018427387904]]}}'
    assert (
        placed(text.encode(), {(sha, 0): 7})
        == text.replace(f'["{sha}",0,4611686018427387904]', f'["{sha}",0,7]').encode()
    )


def _json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))
