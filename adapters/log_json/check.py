"""`--check FILE`: run the parser over a file once, the way a user tests it before deploying.

Lines are joined by the follower's multiline stage when --multiline is set. JSON records
go to stdout, a summary to stderr, and the exit status is 1 if any line failed to parse.
The summary's first line counts each line once: lines = parsed + partial (parsed, with
the level or time left in the message) + failed (emitted raw, or with an unreadable time)
+ pending (joined into a later line's record); then the records written, those stamped
with the read time (ingest_time) and the lines with invalid UTF-8. Failures by kind,
field type errors and, with `--parser auto`, the parser chosen and the runner-up follow.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, TextIO

from podkit.follow.multiline import MultilineJoiner

from .build import make_builder, multiline_config
from .record import BuildCounts
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


def summary(stats: BuildCounts, parser: str, auto: dict[str, Any] | None = None) -> str:
    # Every line is in one of the four counts in parentheses: they add up to `lines`.
    lines = [
        f"check: parser={parser} lines={stats.lines_in} (parsed={stats.parsed} "
        f"partial={stats.partial} failed={stats.failed} pending={stats.pending}) "
        f"records={stats.records_out} ingest_time={stats.ingest_time} "
        f"invalid_utf8={stats.invalid_utf8}"
    ]
    if auto is not None:
        lines.append(_auto_line("chose", auto.get("parser"), auto.get("score")))
        lines.append(_auto_line("runner-up", auto.get("runner_up"), auto.get("runner_up_score")))
        by_parser = auto.get("lines_by_parser") or {}
        if by_parser:
            counts = " ".join(f"{name}={count}" for name, count in by_parser.items())
            lines.append(f"check:   auto lines by parser: {counts}")
    if stats.partial:
        lines.append(f"check:   partial (level or timestamp left in the message): {stats.partial}")
    for kind, count in stats.failures.most_common():
        lines.append(f"check:   failed {kind}: {count}")
    for name, count in stats.type_errors.most_common():
        lines.append(f"check:   field {name} not of its type: {count}")
    return "\n".join(lines)


def _auto_line(role: str, name: str | None, score: dict[str, int] | None) -> str:
    if name is None:
        return f"check:   auto {role}: none"
    assert score is not None
    return (
        f"check:   auto {role}: {name} (of the sampled lines: {score['full']} parsed fully, "
        f"{score['parsed']} parsed, {score['fields']} fields)"
    )


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
    if hasattr(builder.parser, "source"):
        builder.parser.source = settings.check  # `auto` reports its choice for this file
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
    auto = None
    report = getattr(builder.parser, "report", None)
    if report is not None:
        auto = report()
        state = builder.parser.state  # type: ignore[attr-defined]
        auto["lines_by_parser"] = dict(state.lines.most_common())
    print(summary(builder.stats, builder.name, auto), file=err)
    return 1 if builder.stats.failed else 0


def oneshot(settings: LogAdapterSettings) -> int | None:
    """`Helper.oneshot`: with --check, run it and exit with its status; else serve."""
    return run_check(settings) if settings.check else None
