"""The optional multiline stage: join stack-trace continuation lines into one record.

A line either starts a record or continues the one before it. Built-in rules recognise
Python, Java and Go stack traces; `custom` takes a start and/or a continuation regex.
A record is handed out when the next one starts, after the flush timeout, or when it
reaches `max_lines` / `max_bytes` (then the rest starts a new record: nothing is dropped).
The checkpoint never passes a record still being assembled.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from podkit.follow.api import MultilineConfig

_BUILTIN_CONTINUATION = {
    # Indented frames and source lines, the Traceback header, chained-exception notes, and
    # the final `SomeError: message` line.
    "python": rb"^(\s|Traceback \(most recent call last\):|During handling of the above"
    rb"|The above exception was the direct cause"
    rb"|[A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit|Iteration)\b(:|$))",
    # `\tat frame`, `\t... 12 more`, `Caused by: ...`, `\tSuppressed: ...`.
    "java": rb"^(\s|Caused by: |\.\.\. \d+ (more|common frames omitted))",
    # After `panic:`: blank lines, `goroutine N [state]:`, `pkg.func(...)` lines,
    # tab-indented file:line, `created by`, `[signal ...`, `exit status N`.
    "go": rb"^(\s|$|goroutine \d+ \[|created by |\[signal |exit status \d"
    rb"|[\w./*()\[\]-]+\(.*\)( \+0x[0-9a-f]+)?$)",
}


def _matcher(pattern: str | bytes | None) -> Callable[[bytes], object] | None:
    if pattern is None:
        return None
    raw = pattern.encode() if isinstance(pattern, str) else pattern
    return re.compile(raw).search


class MultilineJoiner:
    __slots__ = ("continues", "flush_timeout", "lines", "max_bytes", "max_lines", "size", "start")

    continues: Callable[[bytes], bool]

    def __init__(self, config: MultilineConfig, max_line_bytes: int) -> None:
        self.flush_timeout = config.flush_timeout
        self.max_lines = max(config.max_lines, 1)
        self.max_bytes = max(config.max_bytes, max_line_bytes)
        self.lines: list[bytes] = []
        self.size = 0
        self.start = 0
        if config.mode == "custom":
            start = _matcher(config.start_pattern)
            cont = _matcher(config.continuation_pattern)
            if start is None and cont is None:
                raise ValueError(
                    "multiline custom mode needs start_pattern or continuation_pattern"
                )
            self.continues = _continues(start, cont)
        else:
            builtin = _matcher(_BUILTIN_CONTINUATION[config.mode])
            assert builtin is not None
            self.continues = _continues(None, builtin)

    def feed(
        self, lines: list[bytes], offsets: list[int], end: int, *, flush: bool = False
    ) -> tuple[list[bytes], list[int], int]:
        """Records completed by `lines`, their offsets, and how far the checkpoint may move."""
        out: list[bytes] = []
        out_offsets: list[int] = []
        pending = self.lines
        for line, offset in zip(lines, offsets, strict=True):
            if (
                pending
                and len(pending) < self.max_lines
                and self.size + len(line) + 1 <= self.max_bytes
                and self.continues(line)
            ):
                pending.append(line)
                self.size += len(line) + 1
                continue
            if pending:
                out.append(pending[0] if len(pending) == 1 else b"\n".join(pending))
                out_offsets.append(self.start)
            pending = self.lines = [line]
            self.size = len(line)
            self.start = offset
        if pending and flush:
            out.append(pending[0] if len(pending) == 1 else b"\n".join(pending))
            out_offsets.append(self.start)
            self.lines = []
            self.size = 0
            return out, out_offsets, end
        return out, out_offsets, (self.start if pending else end)


def _continues(
    start: Callable[[bytes], object] | None, cont: Callable[[bytes], object] | None
) -> Callable[[bytes], bool]:
    """Whether a line continues the record before it, from the start/continuation regexes."""
    if cont is not None and start is not None:
        is_cont, is_start = cont, start
        return lambda line: bool(is_cont(line)) and not is_start(line)
    if cont is not None:
        only_cont = cont
        return lambda line: bool(only_cont(line))
    assert start is not None
    only_start = start
    return lambda line: not only_start(line)
