"""LineSplitter: chunks in, lines out; partial lines held, long lines cut and counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.follow import CUT_MARKER
from podkit.follow.lines import LineSplitter


def split_all(chunks: list[bytes], max_line: int, *, flush: bool = True):
    splitter = LineSplitter(max_line)
    lines: list[bytes] = []
    offsets: list[int] = []
    for chunk in chunks:
        splitter.feed(chunk, lines, offsets)
    if flush:
        splitter.flush(lines, offsets)
    return splitter, lines, offsets


def reference(data: bytes, max_line: int) -> tuple[list[bytes], list[int], int]:
    """What the splitter must produce: every line, cut where too long, with its offset."""
    lines, offsets, lost = [], [], 0
    pos = 0
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # data ends with a newline: no partial last line
    for part in parts:
        out = part
        if len(part) > max_line:
            lost += len(part) - max_line
            out = part[:max_line] + CUT_MARKER
        lines.append(out)
        offsets.append(pos)
        pos += len(part) + 1
    return lines, offsets, lost


def cut_points(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


def test_lines_offsets_and_partial_held():
    splitter, lines, offsets = split_all([b"ab\ncd", b"e\n\nf"], 100, flush=False)
    assert lines == [b"ab", b"cde", b""]
    assert offsets == [0, 3, 7]
    assert splitter.end == 8
    assert splitter.partial == b"f"
    splitter.flush(lines, offsets)
    assert lines[-1] == b"f" and offsets[-1] == 8 and splitter.end == 9


def test_long_line_cut_with_marker_and_counted_not_stopping_the_file():
    data = b"short\n" + b"x" * 50 + b"\nafter\n"
    splitter, lines, _ = split_all([data[i : i + 7] for i in range(0, len(data), 7)], 10)
    assert lines == [b"short", b"x" * 10 + CUT_MARKER, b"after"]
    assert splitter.cut_lost == 40
    assert splitter.cuts == 1


def test_invalid_utf8_and_nul_pass_through_unchanged():
    data = b"\xff\xfe\x00bad\x00\n\xc3(\n"
    _, lines, _ = split_all([data], 100)
    assert lines == [b"\xff\xfe\x00bad\x00", b"\xc3("]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([b"\n", b"\n\n", b"\x00", b"y" * 70])),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    max_line=st.integers(min_value=1, max_value=64),
)
def test_any_chunking_gives_the_same_lines(parts, cuts, max_line):
    data = b"".join(parts)
    splitter, lines, offsets = split_all(cut_points(data, cuts), max_line)
    want_lines, _, want_lost = reference(data, max_line)
    assert lines == want_lines
    assert splitter.cut_lost == want_lost
    # Every line starts right after the previous line's newline (offsets are exact).
    for line, offset in zip(lines, offsets, strict=True):
        body = line.removesuffix(CUT_MARKER) if line.endswith(CUT_MARKER) else line
        assert data[offset : offset + len(body)] == body
    assert offsets == sorted(offsets)
