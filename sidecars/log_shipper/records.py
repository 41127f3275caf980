"""Follower batches become records: encoded once, shared by every output.

A `Chunk` is one follower batch with its metadata (path, ingest time, pod/namespace/node).
Outputs take what they need from it lazily: NDJSON lines (file, stdout, http, redis),
messages (loki), deterministic record ids (elasticsearch `_id`, postgres unique key).
Encoding works on whole batches: one decode per batch, one orjson call per line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import orjson

from podkit.follow.api import Batch

if TYPE_CHECKING:
    from podkit.parsers import Parser

# Downward-API env vars a pod spec usually sets (fieldRef metadata.name, ...).
POD_ENV = {"pod": "POD_NAME", "namespace": "POD_NAMESPACE", "node": "NODE_NAME"}


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
    """Lines as text; invalid UTF-8 keeps its bytes visible as \\xNN escapes (counted).

    Line by line: `RecordEncoder.encode` calls it only once the whole batch failed to decode.
    """
    texts: list[str] = []
    invalid = 0
    for line in lines:
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(line.decode("utf-8", "backslashreplace"))
            invalid += 1
    return texts, invalid


# Bytes that need a JSON escape beyond the four `replace`s below: control characters
# other than tab, CR and \n (which separates the lines). `translate` deletes the rest in C.
_NOT_CONTROL = bytes(b for b in range(256) if b >= 0x20 or b in (0x09, 0x0A, 0x0D))
_JSON_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\t", b"\\t"), (b"\r", b"\\r"))


@dataclass(eq=False)
class Chunk:
    """One follower batch as records. Immutable once built; outputs read it concurrently.

    The NDJSON of the whole chunk is built once, in bulk (`body`), and outputs cut slices
    of it: a batch of 4096 lines costs a few C-level passes, not 4096 encoder calls.
    """

    path: str
    file_key: str
    offsets: list[int]
    raw: bytes
    """The lines joined with b"\n" (no trailing newline)."""
    count: int
    cum: list[int]
    """cum[i]: raw bytes of the lines before line i, newlines not counted (count + 1 items)."""
    meta: dict[str, Any]
    """Fields every record of this chunk carries (path, ingest_time, pod, ...)."""
    ingest_ns: int
    texts: list[str] | None = None
    """The lines as text when they were not all valid UTF-8 (\\xNN escapes)."""
    fields: list[dict[str, Any] | None] | None = None
    """Parsed fields per line when a parser is set (None where the line did not parse)."""
    invalid_utf8: int = 0
    parse_errors: int = 0
    created: float = field(default_factory=time.monotonic)
    delivery: Any = None
    """Set by the pipeline: what to tell when outputs have settled records of this chunk."""

    def __len__(self) -> int:
        return self.count

    @property
    def byte_count(self) -> int:
        """Bytes of the lines as read, newlines included (what size limits count)."""
        return self.cum[-1] + self.count

    def bytes_between(self, start: int, stop: int) -> int:
        return self.cum[stop] - self.cum[start] + stop - start

    @cached_property
    def messages(self) -> list[str]:
        if self.texts is not None:
            return self.texts
        return self.raw.decode("utf-8").split("\n") if self.count else []

    @cached_property
    def _body(self) -> bytes:
        """The NDJSON of every record (each ends with a newline)."""
        count = self.count
        if not count:
            return b""
        raw = self.raw
        if self.fields is None and self.texts is None and not raw.translate(None, _NOT_CONTROL):
            # Valid UTF-8 without control characters: escaping `\\`, `"`, tab and CR
            # makes JSON string contents, and one %-format call builds every record.
            for plain, escaped in _JSON_ESCAPES:
                if plain in raw:
                    raw = raw.replace(plain, escaped)
            meta = orjson.dumps(self.meta)[1:-1].replace(b"%", b"%%")
            template = b'{"message":"%b","offset":%d,' + meta + b"}\n"
            args: list[Any] = [None] * (2 * count)
            args[0::2] = raw.split(b"\n")
            args[1::2] = self.offsets
            return (template * count) % tuple(args)
        return b"".join([_dump(self.record(i)) + b"\n" for i in range(count)])

    @cached_property
    def _starts(self) -> list[int]:
        """Where each record starts in the body, plus its end; only built when cut.

        JSON never holds a raw newline, so the body's newlines are exactly the record ends.
        """
        lengths = map((1).__add__, map(len, self._body.split(b"\n")[:-1]))
        return list(accumulate(lengths, initial=0))

    def ndjson(self, start: int, stop: int) -> bytes:
        """Records [start, stop) as NDJSON (each ends with a newline)."""
        if start == 0 and stop == self.count:
            return self._body
        starts = self._starts
        return self._body[starts[start] : starts[stop]]

    @property
    def json_lines(self) -> list[bytes]:
        """Each record as one JSON object (no newline)."""
        return [self.record_bytes(i) for i in range(self.count)]

    def record(self, index: int) -> dict[str, Any]:
        record: dict[str, Any] = {"message": self.messages[index], "offset": self.offsets[index]}
        record.update(self.meta)
        if self.fields is not None and self.fields[index] is not None:
            record["fields"] = self.fields[index]
        return record

    def record_bytes(self, index: int) -> bytes:
        starts = self._starts
        return self._body[starts[index] : starts[index + 1] - 1]

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
        self.byte_count = sum(s.chunk.bytes_between(s.start, s.stop) for s in slices)

    def __len__(self) -> int:
        return sum(len(s) for s in self.slices)

    def __iter__(self) -> Iterator[tuple[Chunk, int]]:
        """(chunk, index) of every record."""
        for part in self.slices:
            for index in range(part.start, part.stop):
                yield part.chunk, index

    def ndjson(self) -> bytes:
        parts = [part.chunk.ndjson(part.start, part.stop) for part in self.slices]
        return parts[0] if len(parts) == 1 else b"".join(parts)

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
        lines = batch.lines
        raw = b"\n".join(lines)
        texts: list[str] | None = None
        invalid = 0
        try:
            raw.decode("utf-8")  # validation only; C speed
        except UnicodeDecodeError:
            texts, invalid = decode_lines(lines)
        meta: dict[str, Any] = {"path": batch.path, "ingest_time": _rfc3339(now)}
        meta.update(self.metadata)
        count = len(lines)
        chunk = Chunk(
            path=batch.path,
            file_key=batch.file_id.key(),
            offsets=list(batch.offsets),
            raw=raw,
            count=count,
            cum=list(accumulate(map(len, lines), initial=0)),
            meta=meta,
            ingest_ns=now,
            texts=texts,
            invalid_utf8=invalid,
        )
        if self.parser is not None:
            text = getattr(self.parser, "input_type", "bytes") == "str"
            chunk.fields, chunk.parse_errors = self._parse(chunk.messages if text else lines)
        return chunk

    def _parse(self, lines: list[bytes] | list[str]) -> tuple[list[dict[str, Any] | None], int]:
        assert self.parser is not None
        parse = self.parser
        parsed: list[dict[str, Any] | None] = []
        errors = 0
        for line in lines:
            try:
                parsed.append(parse(line))
            except Exception:  # ParseError, or a plugin's bug: the raw line still goes
                parsed.append(None)
                errors += 1
        return parsed, errors


def _dump(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:  # a parser's odd value (an int beyond 64 bits...)
        fields = record.pop("fields", None)
        record["fields_error"] = str(exc)
        record["fields_text"] = repr(fields)[:65536]
        return orjson.dumps(record, default=str)


def _rfc3339(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
