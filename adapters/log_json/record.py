"""Lines in, JSON records out: parse, normalise, encode; always one valid JSON object per line.

Whatever bytes come in, what goes out is valid UTF-8 JSON on a single line:

- the line is decoded once as UTF-8; invalid bytes become U+FFFD and the record gets
  `raw_b64`, the original bytes in base64, so nothing is lost;
- orjson escapes control characters (NUL, ESC of ANSI colours, tabs, newlines of a joined
  stack trace), quotes and backslashes;
- a line the parser rejects is emitted anyway: `message` is the whole line, `parser` and
  `parse_error` (the error kind) say what happened, and it is counted;
- a value orjson cannot encode (a user parser's lone surrogate, a 100-digit int) is made
  encodable, and if that fails too the line is emitted as a failure of kind "unencodable".

The hot loop is `encode(lines)`: per-line work is one decode, one parser call, a few dict
operations and one `orjson.dumps`; counters are plain ints read by a metrics collector at
scrape time, never a prometheus call per line.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import orjson

from podkit.parsers import ParseError, Parser, Pending

from .normalize import CONVERTERS, LEVELS, TimeError, TimeParser, is_partial, normalize_level

DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
MAX_DEPTH = 64
DETAIL_LIMIT = 200
MAX_FAILURE_KINDS = 50

# Exact spellings seen in logs, so the common case is one dict lookup, no lower() or strip().
_LEVEL_FAST: dict[Any, str] = {}
for _spelling, _canonical in LEVELS.items():
    for _form in (_spelling, _spelling.upper(), _spelling.capitalize()):
        _LEVEL_FAST[_form] = _canonical


_STORE, _KEEP = object(), object()  # how `level_raw` is added: a store, or unless set


def _default(value: Any) -> Any:
    """orjson's fallback for types it does not know: make them JSON-able, never fail."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def _sanitize(value: Any, depth: int = 0) -> Any:
    """Second chance for a record orjson refused: lone surrogates, huge ints, deep nesting."""
    if depth > MAX_DEPTH:
        return "...[podkit: nested too deep]"
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float | datetime | date | time):
        return value
    if isinstance(value, dict):
        return {_sanitize(str(k), depth + 1): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitize(v, depth + 1) for v in value]
    return _sanitize(_default(value), depth + 1)


@dataclass
class BuildCounts:
    """What the builder counted; read by the metrics collector and the --check summary.

    Each line handed to the builder is counted once in exactly one of `parsed`, `partial`,
    `failed` and `pending`, so `lines_in` is their sum.
    """

    lines_in: int = 0
    bytes_in: int = 0
    records_out: int = 0
    """Records built; `written` counts those the output has taken (follow mode)."""
    written: int = 0
    parsed: int = 0
    partial: int = 0
    """Parsed, but the level or timestamp stayed in the message (counted apart from parsed)."""
    pending: int = 0
    """Lines a stateful parser joined into a later line's record (CRI partial lines)."""
    invalid_utf8: int = 0
    ingest_time: int = 0
    """Records stamped with the time they were read: no time in the line, an unreadable one
    (bad_timestamp) or a line the parser rejected."""
    failures: Counter[str] = field(default_factory=Counter)
    type_errors: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def take(self) -> dict[str, Any]:
        """What was counted since the last take, and zero again (a worker's counts)."""
        delta: dict[str, Any] = {name: getattr(self, name) for name in _INT_COUNTS}
        for name in _INT_COUNTS:
            setattr(self, name, 0)
        delta["failures"], delta["type_errors"] = dict(self.failures), dict(self.type_errors)
        self.failures.clear()
        self.type_errors.clear()
        return delta

    def add(self, delta: dict[str, Any]) -> None:
        """Add counts a worker took (see `take`)."""
        for name in _INT_COUNTS:
            setattr(self, name, getattr(self, name) + delta[name])
        self.failures.update(delta["failures"])
        self.type_errors.update(delta["type_errors"])


_INT_COUNTS = (
    "lines_in", "bytes_in", "records_out", "written", "parsed", "partial", "pending",
    "invalid_utf8", "ingest_time",
)  # fmt: skip


class RecordBuilder:
    """Turns raw lines into JSON records with one parser and the adapter's settings."""

    def __init__(
        self,
        parser: Parser,
        *,
        time_parser: TimeParser | None = None,
        types: dict[str, str] | None = None,
        keep_raw: bool = False,
        stats: BuildCounts | None = None,
    ) -> None:
        self.parser = parser
        self.name = str(getattr(parser, "name", "parser"))
        parse_str = getattr(parser, "parse", None)
        # Built-ins take the already-decoded text through `parse`, skipping their own check.
        self._str_input = getattr(parser, "input_type", "str") == "str"
        self._parse: Callable[[Any], dict[str, Any]] = (
            parse_str if self._str_input and getattr(parser, "trusted", False) else parser  # type: ignore[assignment]
        )
        self.time = time_parser or TimeParser(getattr(parser, "time_format", None) or "iso")
        merged_types = {**getattr(parser, "types", {}), **(types or {})}
        unknown = {t for t in merged_types.values() if t not in CONVERTERS}
        if unknown:
            raise ValueError(f"unknown field type(s) {sorted(unknown)}: use int, float, bool, str")
        self.types = {name: CONVERTERS[t] for name, t in merged_types.items()}
        self.keep_raw = keep_raw
        # Parsers whose level is derived (an access log's status), not written, add no
        # `level_raw`; for the others it keeps the token `level` was normalised from.
        # Parsers that map their own tokens (Redis' `#`) set level_raw themselves: kept.
        self._level_raw: object = (
            None
            if getattr(parser, "derived_level", False)
            else _KEEP
            if getattr(parser, "sets_level_raw", True)
            else _STORE
        )
        self.stats = stats or BuildCounts()
        self._now = self.time.now()
        self._time_cache = self.time._cache

    def fork(self) -> RecordBuilder:
        """A builder for another file: its own parser state when the parser has any."""
        if not getattr(self.parser, "stateful", False):
            return self
        forked = RecordBuilder(
            self.parser.fork(),  # type: ignore[attr-defined]
            time_parser=self.time,
            keep_raw=self.keep_raw,
            stats=self.stats,
        )
        forked.types = self.types  # already merged and resolved to converters
        return forked

    def flush(self) -> bytearray:
        """Records a stateful parser still holds (CRI partial lines), at the end of input."""
        flush = getattr(self.parser, "flush", None)
        held = flush() if flush is not None else []
        self._now = self.time.now()
        out = bytearray()
        stats = self.stats
        demoted_before = stats.partial + stats.failures["bad_timestamp"]
        for fields in held:
            record = self._finish(fields, b"", "", False)
            try:
                out += orjson.dumps(record, default=_default, option=DUMPS_OPTIONS)
            except orjson.JSONEncodeError as exc:
                out += self._second_chance(record, b"", "", False, exc)
                continue
            stats.parsed += 1
        # Each held record's last line was counted pending: it is the record's line now.
        stats.pending -= len(held)
        stats.parsed -= stats.partial + stats.failures["bad_timestamp"] - demoted_before
        stats.records_out += len(held)
        return out

    # --- the hot loop ---------------------------------------------------------------------

    def encode(self, lines: Iterable[bytes]) -> bytearray:
        """Records for `lines`, each a JSON object ending in a newline, concatenated."""
        self._now = self.time.now()  # one ingest time per batch: lines read together
        # One growing buffer, not a list of records: each bytes object orjson returns
        # keeps a 4 KiB allocation, so a list of 4096 of them would cost 16 MiB of RSS.
        out = bytearray()
        append = out.extend
        parse = self._parse
        str_input = self._str_input
        finish = self._finish
        dumps = orjson.dumps
        stats = self.stats
        count = size = pending = 0
        # Lines _finish counted as partial or bad_timestamp are not `parsed` (fixed below).
        demoted_before = stats.partial + stats.failures["bad_timestamp"]
        for raw in lines:
            count += 1
            size += len(raw)
            try:
                text = raw.decode()
                bad = False
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace")
                bad = True
                stats.invalid_utf8 += 1
            try:
                fields = parse(text if str_input else raw)
            except Pending:
                pending += 1
                continue
            except ParseError as exc:
                append(self._failure(raw, text, bad, exc.kind, str(exc)))
                continue
            except Exception as exc:  # a parser bug must cost one line, not the helper
                append(self._failure(raw, text, bad, "exception", f"{type(exc).__name__}: {exc}"))
                continue
            if type(fields) is not dict:
                append(self._failure(raw, text, bad, "bad_result", "parser returned no dict"))
                continue
            record = finish(fields, raw, text, bad)
            try:
                append(dumps(record, default=_default, option=DUMPS_OPTIONS))
            except orjson.JSONEncodeError as exc:
                append(self._second_chance(record, raw, text, bad, exc))
                continue
            stats.parsed += 1
        stats.parsed -= stats.partial + stats.failures["bad_timestamp"] - demoted_before
        stats.lines_in += count
        stats.bytes_in += size
        stats.pending += pending
        # Every line but a pending one appended exactly one record (counting the newlines
        # instead walked the whole output byte by byte: ~4% of the adapter's CPU).
        stats.records_out += count - pending
        return out

    def _finish(self, fields: dict[str, Any], raw: bytes, text: str, bad: bool) -> dict[str, Any]:
        timestamp = fields.get("timestamp")
        if timestamp is None:
            if is_partial(fields):  # counted apart; taken out of `parsed` by the caller
                self.stats.partial += 1
            fields = {"timestamp": self._now, **fields, "timestamp_source": "ingest"}
            self.stats.ingest_time += 1
        else:
            try:
                # The time parser's cache, looked up here: most lines share a second.
                fields["timestamp"] = self._time_cache[timestamp]
            except (KeyError, TypeError):
                pass
            else:
                timestamp = None
        if timestamp is not None:
            try:
                fields["timestamp"] = self.time(timestamp)
            except TimeError as exc:
                fields["timestamp"] = self._now
                fields["timestamp_source"] = "ingest"
                fields["timestamp_raw"] = (
                    timestamp if isinstance(timestamp, str) else str(timestamp)
                )
                fields["parser"] = self.name
                fields["parse_error"] = "bad_timestamp"
                fields["parse_error_detail"] = str(exc)[:DETAIL_LIMIT]
                self.stats.failures["bad_timestamp"] += 1
                self.stats.ingest_time += 1
        level = fields.get("level")
        if level is not None:
            try:
                fields["level"] = _LEVEL_FAST[level]
            except (KeyError, TypeError):
                fields["level"] = normalize_level(level)
            # The token as the line wrote it, unless the parser set it (None: `auto` handing
            # on a derived level, which has none).
            raw_mode = self._level_raw
            if raw_mode is _STORE:
                fields["level_raw"] = level
            elif raw_mode is _KEEP and fields.setdefault("level_raw", level) is None:
                del fields["level_raw"]
        elif "timestamp_source" not in fields and is_partial(fields):
            self.stats.partial += 1  # no level, a time from the line (else counted above)
        if "message" not in fields:
            fields["message"] = text
        if self.types:
            for name, convert in self.types.items():
                value = fields.get(name)
                if value is not None:
                    try:
                        fields[name] = convert(value)
                    except (ValueError, TypeError, OverflowError):
                        self.stats.type_errors[name] += 1
        if self.keep_raw:
            fields["raw"] = text
        if bad:
            fields["raw_b64"] = base64.b64encode(raw).decode("ascii")
        elif "raw_b64" in fields:
            # podkit's own field (the original bytes of a line that was not UTF-8): a
            # parser's field of that name is kept, under another name.
            fields["parser_raw_b64"] = fields.pop("raw_b64")
        return fields

    def _failure(self, raw: bytes, text: str, bad: bool, kind: str, detail: str) -> bytes:
        kind = str(kind or "no_match")[:64]
        failures = self.stats.failures
        if kind not in failures and len(failures) >= MAX_FAILURE_KINDS:
            kind = "other"  # a plugin putting line content in `kind` must not explode labels
        failures[kind] += 1
        self.stats.ingest_time += 1  # stamped with the read time, like a line with no time
        record: dict[str, Any] = {
            "timestamp": self._now,
            "timestamp_source": "ingest",
            "message": text,
            "parser": self.name,
            "parse_error": kind,
            "parse_error_detail": detail[:DETAIL_LIMIT].encode("utf-8", "replace").decode(),
        }
        if bad:
            record["raw_b64"] = base64.b64encode(raw).decode("ascii")
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)

    def _second_chance(
        self, record: dict[str, Any], raw: bytes, text: str, bad: bool, exc: Exception
    ) -> bytes:
        try:
            encoded = orjson.dumps(_sanitize(record), default=_default, option=DUMPS_OPTIONS)
        except Exception:
            return self._failure(raw, text, bad, "unencodable", f"{type(exc).__name__}: {exc}")
        self.stats.parsed += 1
        return encoded
