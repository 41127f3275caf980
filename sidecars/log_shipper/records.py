"""Follower batches become records: encoded once, shared by every output.

A `Chunk` is one follower batch with its metadata (path, ingest time, pod/namespace/node).
Outputs take what they need from it lazily: NDJSON lines (file, stdout, http, redis),
messages (loki), deterministic record ids (elasticsearch `_id`, postgres unique key).
Encoding works on whole batches: one decode per batch, one orjson call per line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson

from podkit.follow.api import Batch

# Downward-API env vars a pod spec usually sets (fieldRef metadata.name, ...).
POD_ENV = {"pod": "POD_NAME", "namespace": "POD_NAMESPACE", "node": "NODE_NAME"}

Parser = Callable[[bytes], dict[str, Any]]


def k8s_metadata(
    overrides: Mapping[str, str | None] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """pod/namespace/node from settings, else from the downward-API env vars, when set."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for key, var in POD_ENV.items():
        value = (overrides or {}).get(key) or env.get(var)
        if value:
            found[key] = value
    return found


def decode_lines(lines: list[bytes]) -> tuple[list[str], int]:
    """Lines as text; invalid UTF-8 keeps its bytes visible as \\xNN escapes (counted)."""
    if not lines:
        return [], 0
    try:
        # One decode for the whole batch: lines never contain b"\n", so split is exact.
        return b"\n".join(lines).decode("utf-8").split("\n"), 0
    except UnicodeDecodeError:
        pass
    texts: list[str] = []
    invalid = 0
    for line in lines:
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(line.decode("utf-8", "backslashreplace"))
            invalid += 1
    return texts, invalid


@dataclass(eq=False)
class Chunk:
    """One follower batch as records. Immutable once built; outputs read it concurrently."""

    path: str
    file_key: str
    offsets: list[int]
    messages: list[str]
    sizes: list[int]
    """Raw bytes of each line, plus its newline: what batch size limits count."""
    meta: dict[str, Any]
    """Fields every record of this chunk carries (path, ingest_time, pod, ...)."""
    ingest_ns: int
    fields: list[dict[str, Any] | None] | None = None
    """Parsed fields per line when a parser is set (None where the line did not parse)."""
    invalid_utf8: int = 0
    parse_errors: int = 0
    created: float = field(default_factory=time.monotonic)
    delivery: Any = None
    """Set by the pipeline: what to tell when outputs have settled records of this chunk."""

    def __len__(self) -> int:
        return len(self.messages)

    @cached_property
    def byte_count(self) -> int:
        return sum(self.sizes)

    @cached_property
    def json_lines(self) -> list[bytes]:
        """Each record as one JSON object (no newline)."""
        meta = orjson.dumps(self.meta)[1:-1]
        if self.fields is None:
            return [
                b'{"message":%b,"offset":%d,%b}' % (orjson.dumps(message), offset, meta)
                for message, offset in zip(self.messages, self.offsets, strict=True)
            ]
        return [self.record_bytes(i) for i in range(len(self))]

    def record(self, index: int) -> dict[str, Any]:
        record: dict[str, Any] = {"message": self.messages[index], "offset": self.offsets[index]}
        record.update(self.meta)
        if self.fields is not None and self.fields[index] is not None:
            record["fields"] = self.fields[index]
        return record

    def record_bytes(self, index: int) -> bytes:
        if self.fields is None:
            return self.json_lines[index]
        return orjson.dumps(self.record(index), default=str)

    def record_id(self, index: int) -> str:
        """Deterministic id: the same line of the same file always gets the same id."""
        return f"{self.file_key}:{self.offsets[index]}"


@dataclass(frozen=True, slots=True)
class Slice:
    """Records [start, stop) of a chunk."""

    chunk: Chunk
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


class OutBatch:
    """What an output sends at once: slices of one or more chunks, in order."""

    __slots__ = ("byte_count", "slices")

    def __init__(self, slices: list[Slice]) -> None:
        self.slices = slices
        self.byte_count = sum(sum(s.chunk.sizes[s.start : s.stop]) for s in slices)

    def __len__(self) -> int:
        return sum(len(s) for s in self.slices)

    def __iter__(self) -> Iterator[tuple[Chunk, int]]:
        """(chunk, index) of every record."""
        for part in self.slices:
            for index in range(part.start, part.stop):
                yield part.chunk, index

    def json_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        for part in self.slices:
            lines.extend(part.chunk.json_lines[part.start : part.stop])
        return lines

    def ndjson(self) -> bytes:
        lines = self.json_lines()
        return b"\n".join(lines) + b"\n" if lines else b""

    def subset(self, positions: list[int]) -> OutBatch:
        """The records at these positions (0-based over the whole batch), as a new batch."""
        wanted = set(positions)
        slices: list[Slice] = []
        position = 0
        for part in self.slices:
            for index in range(part.start, part.stop):
                if position in wanted:
                    last = slices[-1] if slices else None
                    if last is not None and last.chunk is part.chunk and last.stop == index:
                        slices[-1] = Slice(part.chunk, last.start, index + 1)
                    else:
                        slices.append(Slice(part.chunk, index, index + 1))
                position += 1
        return OutBatch(slices)


class RecordEncoder:
    """Turns follower batches into chunks, with metadata and the optional parser."""

    def __init__(self, metadata: Mapping[str, str], parser: Parser | None = None) -> None:
        self.metadata = dict(metadata)
        self.parser = parser

    def encode(self, batch: Batch) -> Chunk:
        now = time.time_ns()
        messages, invalid = decode_lines(batch.lines)
        meta: dict[str, Any] = {"path": batch.path, "ingest_time": _rfc3339(now)}
        meta.update(self.metadata)
        chunk = Chunk(
            path=batch.path,
            file_key=batch.file_id.key(),
            offsets=list(batch.offsets),
            messages=messages,
            sizes=[len(line) + 1 for line in batch.lines],
            meta=meta,
            ingest_ns=now,
            invalid_utf8=invalid,
        )
        if self.parser is not None:
            chunk.fields, chunk.parse_errors = self._parse(batch.lines)
        return chunk

    def _parse(self, lines: list[bytes]) -> tuple[list[dict[str, Any] | None], int]:
        assert self.parser is not None
        parsed: list[dict[str, Any] | None] = []
        errors = 0
        for line in lines:
            try:
                parsed.append(self.parser(line))
            except Exception:  # a parser must never stop shipping; the raw line still goes
                parsed.append(None)
                errors += 1
        return parsed, errors


def _rfc3339(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
