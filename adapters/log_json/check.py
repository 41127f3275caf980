"""`--check FILE`: run the parser over a file once, the way a user tests it before deploying.

Lines are joined by the follower's multiline stage when --multiline is set. JSON records
go to stdout, a summary to stderr (lines, parsed, failed, failures by kind,
field type errors), and the exit status is 1 if any line failed to parse.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import BinaryIO, TextIO

from podkit.follow.multiline import MultilineJoiner

from .build import make_builder, multiline_config
from .record import Stats
from .settings import LogAdapterSettings

CHUNK_LINES = 4096


def read_lines(handle: BinaryIO) -> Iterator[list[bytes]]:
    """Lines in chunks, without their newline (CRLF too); an unterminated last line counts."""
    chunk: list[bytes] = []
    for line in handle:
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        chunk.append(line)
        if len(chunk) >= CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _with_last(chunks: Iterator[list[bytes]]) -> Iterator[tuple[list[bytes], bool]]:
    previous: list[bytes] | None = None
    for chunk in chunks:
        if previous is not None:
            yield previous, False
        previous = chunk
    yield previous or [], True


def _joiner(settings: LogAdapterSettings) -> MultilineJoiner | None:
    config = multiline_config(settings)
    if config is None:
        return None
    return MultilineJoiner(config, settings.max_line_bytes)


def summary(stats: Stats, parser: str) -> str:
    lines = [
        f"check: parser={parser} lines={stats.lines_in} records={stats.records_out} "
        f"parsed={stats.parsed} failed={stats.failed} pending={stats.pending} "
        f"invalid_utf8={stats.invalid_utf8} ingest_time={stats.ingest_time}"
    ]
    for kind, count in stats.failures.most_common():
        lines.append(f"check:   failed {kind}: {count}")
    for name, count in stats.type_errors.most_common():
        lines.append(f"check:   field {name} not of its type: {count}")
    return "\n".join(lines)


def run_check(
    settings: LogAdapterSettings, out: BinaryIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    assert settings.check is not None
    builder = make_builder(settings)
    try:
        handle = open(settings.check, "rb")  # noqa: SIM115 - closed below, after the loop
    except OSError as exc:
        print(f"check: cannot read {settings.check}: {exc.strerror}", file=err)
        return 2
    joiner = _joiner(settings)
    with handle:
        chunks = read_lines(handle)
        for chunk, last in _with_last(chunks):
            if joiner is not None:
                # The follower's own multiline stage, so --check shows what the pod will.
                offsets = [0] * len(chunk)
                chunk = joiner.feed(chunk, offsets, 0, flush=last)[0]
            out.write(builder.encode(chunk))
    out.write(builder.flush())
    out.flush()
    print(summary(builder.stats, builder.name), file=err)
    return 1 if builder.stats.failed else 0


def oneshot(settings: LogAdapterSettings) -> int | None:
    """`Helper.oneshot`: with --check, run it and exit with its status; else serve."""
    return run_check(settings) if settings.check else None
