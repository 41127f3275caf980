"""The multiline stage: stack traces joined into one record, caps, custom patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podkit.follow import MultilineConfig
from podkit.follow.multiline import MultilineJoiner

PYTHON = b"""2026-11-25 04:00:00 ERROR request failed
Traceback (most recent call last):
  File "app.py", line 10, in handle
    do()
ValueError: bad value
2026-11-25 04:00:01 INFO next"""

JAVA = b"""2026-11-25 04:00:00 ERROR boom
java.lang.IllegalStateException: boom
\tat com.example.App.run(App.java:10)
\tat com.example.App.main(App.java:3)
Caused by: java.io.IOException: disk
\tat com.example.Disk.read(Disk.java:7)
\t... 2 more
2026-11-25 04:00:01 INFO next"""

GO = b"""panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.main()
\t/app/main.go:8 +0x1d
exit status 2
2026/11/25 04:00:01 next"""


def join(mode: str, text: bytes, **kw) -> list[bytes]:
    joiner = MultilineJoiner(MultilineConfig(mode=mode, **kw), 1 << 20)  # type: ignore[arg-type]
    lines = text.split(b"\n")
    offsets = list(range(len(lines)))
    out, _, _ = joiner.feed(lines, offsets, 99)
    rest, _, end = joiner.feed([], [], 99, flush=True)
    assert end == 99
    return out + rest


def test_python_traceback_is_one_record():
    records = join("python", PYTHON)
    assert records == [b"\n".join(PYTHON.split(b"\n")[:5]), b"2026-11-25 04:00:01 INFO next"]


def test_java_stack_trace_with_cause_is_one_record():
    records = join("java", JAVA)
    # The exception line itself is not indented: it starts its own record, frames join it.
    assert records[-1] == b"2026-11-25 04:00:01 INFO next"
    assert b"Caused by: java.io.IOException: disk\n\tat com.example.Disk" in records[-2]
    assert records[-2].endswith(b"\t... 2 more")


def test_go_panic_is_one_record():
    records = join("go", GO)
    assert records == [b"\n".join(GO.split(b"\n")[:6]), b"2026/11/25 04:00:01 next"]


def test_custom_start_pattern():
    text = b"[1] a\ncont\n[2] b\n[3] c\nmore\nmore"
    assert join("custom", text, start_pattern=r"^\[\d+\]") == [
        b"[1] a\ncont",
        b"[2] b",
        b"[3] c\nmore\nmore",
    ]


def test_custom_needs_a_pattern():
    with pytest.raises(ValueError, match="pattern"):
        MultilineJoiner(MultilineConfig(mode="custom"), 1024)


def test_caps_split_a_record_without_dropping_lines():
    text = b"start\n" + b"\n".join(b"  frame %d" % i for i in range(10))
    records = join("python", text, max_lines=4)
    assert b"\n".join(records) == text
    assert all(r.count(b"\n") <= 3 for r in records)


def test_checkpoint_never_passes_a_record_being_assembled():
    joiner = MultilineJoiner(MultilineConfig(mode="python"), 1 << 20)
    out, offs, end = joiner.feed([b"ERROR x", b"Traceback (most recent call last):"], [0, 8], 43)
    assert out == [] and end == 0  # nothing complete: the checkpoint stays at the start
    out, offs, end = joiner.feed([b"  File 'a'", b"next record"], [43, 54], 66)
    assert out == [b"ERROR x\nTraceback (most recent call last):\n  File 'a'"]
    assert offs == [0] and end == 54


@given(st.lists(st.sampled_from([b"x", b"  y", b"Traceback (most recent call last):", b""])))
def test_joining_keeps_every_line(lines):
    joiner = MultilineJoiner(MultilineConfig(mode="python", max_lines=3), 1 << 20)
    out, _, _ = joiner.feed(lines, list(range(len(lines))), len(lines))
    rest, _, _ = joiner.feed([], [], len(lines), flush=True)
    assert b"\n".join(out + rest) == b"\n".join(lines)
