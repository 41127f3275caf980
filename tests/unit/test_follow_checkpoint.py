"""The checkpoint store: atomic round trip; any damaged file is set aside, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.follow.checkpoint import CheckpointStore, Entry


def test_round_trip_and_no_temp_file_left(tmp_path):
    store = CheckpointStore(tmp_path / "state")
    entries = [Entry("/var/log/a.log", 1, 2, 256, "abcd", 100, 200), Entry("b", 1, 3, 0, "", 0, 0)]
    store.save(entries)
    assert store.load() == (entries, None)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["follow-checkpoints.json"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
entry_like = st.fixed_dictionaries(
    {},
    optional={k: json_values for k in ("path", "dev", "inode", "fp_len", "fp", "offset", "size")},
)


@settings(max_examples=200, deadline=None)
@given(
    doc=st.one_of(
        st.binary(max_size=200),
        json_values.map(orjson.dumps),
        st.lists(entry_like, max_size=3).map(lambda fs: orjson.dumps({"files": fs})),
    )
)
def test_any_damaged_file_loads_as_empty_with_an_error(doc):
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp))
        assert store.path is not None
        store.path.write_bytes(doc)
        entries, error = store.load()
        if error is None:  # it happened to be valid: then every entry is usable
            assert all(e.offset >= 0 and isinstance(e.path, str) for e in entries)
        else:
            assert entries == []
            assert store.path.with_suffix(".corrupt").read_bytes() == doc
