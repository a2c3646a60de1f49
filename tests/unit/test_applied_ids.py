"""The keeper's applied-id index answers as a scan of the trace's ``applied`` list would, and
measures it as its encoding would."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.keeper.applied import AppliedIds
from choreo.schemas import Snapshot

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["step", "rollback", "restore"]), st.integers(0, 30)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_a_lookup_equals_a_scan_of_the_list_through_steps_rollbacks_and_restores(
    actions: list[tuple[str, int]],
) -> None:
    """Versions grow by appending ids to a new list (as the keeper's folds do); a rollback
    goes back to an earlier version's very list; a restore brings the same ids as new
    objects (decoded from the state topic). Every lookup, of ids applied or not, is exact."""
    index = AppliedIds()
    versions = [Snapshot(trace_id="t", version=1, applied=["admit"])]
    current = versions[0]
    for action, n in actions:
        if action == "step":
            current = Snapshot(
                trace_id="t", version=current.version + 1, applied=[*current.applied, f"e{n}"]
            )
            versions.append(current)
        elif action == "rollback":
            current = versions[n % len(versions)]
        else:
            current = Snapshot(
                trace_id="t",
                version=current.version,
                applied=[i.encode().decode() for i in current.applied],
            )
        assert index.encoded_size(current) == len(msgspec.json.encode(current.applied))
        for probe in ["admit", *(f"e{k}" for k in range(31))]:
            assert index.has(current, probe) == (probe in current.applied), probe
