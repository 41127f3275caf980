"""What the speed work of issue 17 must not change: counts, order, nothing written twice.

- the log-adapter counts the records it built without walking the output: the count must
  be the output's newlines, whatever the lines and parser (CRI partial lines included);
- the log-shipper's `file` output writes from a worker thread: a send its timeout gave up
  on leaves that write running, and the next write must start only after it ended, or
  the two batches would interleave in the file.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.log_json.record import RecordBuilder
from podkit.follow.api import Batch, FileId
from podkit.logs import get_logger
from podkit.parsers import load_parser
from podkit.sidecars.log_shipper.outputs.file import FileOptions, FileOutput
from podkit.sidecars.log_shipper.records import OutBatch, RecordEncoder, Slice

LINE = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(
        [
            b'10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
            b"2024-01-01T00:00:00.1Z stdout P partial ",
            b"2024-01-01T00:00:00.2Z stdout F end",
            b"2024-05-01 12:00:00 INFO fine",
        ]
    ),
)


@pytest.mark.parametrize("name", ["nginx", "cri", "classic", "json"])
@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(LINE, max_size=20), max_size=4))
def test_records_out_is_the_newlines_written(name: str, batches: list[list[bytes]]) -> None:
    builder = RecordBuilder(load_parser(name))
    written = 0
    for lines in batches:
        before = builder.stats.records_out
        out = builder.encode(lines)
        assert builder.stats.records_out - before == out.count(b"\n")
        written += out.count(b"\n")
    assert builder.stats.records_out == written
    assert builder.stats.lines_in == sum(map(len, batches))


def _out_batch(prefix: bytes, lines: int) -> OutBatch:
    body = [prefix + b"%06d " % i + b"x" * 200 for i in range(lines)]
    offsets = list(range(0, 300 * lines, 300))
    chunk = RecordEncoder({}).encode(Batch("/a.log", FileId(1, 2, ""), body, offsets, 0, 0))
    return OutBatch([Slice(chunk, 0, len(chunk))])


def test_file_output_write_left_running_by_a_timeout_ends_before_the_next(
    tmp_path: Path,
) -> None:
    """A FIFO nobody reads yet: the first send blocks in its thread and times out; the
    second waits for it; once a reader drains the FIFO, A's records all come before B's."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the output open it
    output = FileOutput(FileOptions(type="file", path=str(fifo)), log=get_logger("test"))
    first, second = _out_batch(b"A", 2000), _out_batch(b"B", 2000)  # > 64 KiB pipe each
    received = bytearray()

    def drain_later() -> None:
        time.sleep(0.3)
        os.set_blocking(reader, True)
        while block := os.read(reader, 65536):
            received.extend(block)

    async def scenario() -> None:
        await output.open()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(output.send(first), 0.1)  # the thread goes on writing
        thread = threading.Thread(target=drain_later)
        thread.start()
        await output.send(second)
        await output.close()  # EOF for the reader
        await asyncio.to_thread(thread.join)

    try:
        asyncio.run(scenario())
    finally:
        os.close(reader)
    lines = bytes(received).splitlines()
    assert len(lines) == 4000
    assert [line[12:13] for line in lines] == [b"A"] * 2000 + [b"B"] * 2000
