"""The public parser API: turn one log line into fields. Shared by log-adapter and log-shipper.

A parser is either

- a callable `parse(line) -> dict[str, Any]`, or
- a class whose instances are such callables; `load_parser(spec, options)` instantiates it
  with the options as keyword arguments (`MyParser(**options)`), so a bad option is a
  `TypeError`/`ValueError` raised at load time, never at the first line. A required
  option (a constructor argument without a default) that is not given is named, with an
  example from the class's `option_examples = {"pattern": "..."}` when it has one.

It returns the fields of the line, or raises `ParseError` when the line is not in its
format. Any other exception is treated like a `ParseError` of kind "exception" (the line is
still emitted, raw, and counted); it never stops the helper.

**bytes or str.** Lines arrive as `bytes` (without the newline). A parser gets `str`
instead (decoded as UTF-8, invalid bytes replaced by U+FFFD) when it says so, in this order:

1. an attribute `input_type = "str"` (or `"bytes"`) on the function, class or instance;
2. otherwise the annotation of its first parameter: `line: bytes` gets bytes, `line: str` str;
3. otherwise (no annotation) `str`, the friendlier choice for a quick plugin.

Fields a parser may return, with a meaning the consumers know:

- `timestamp`: a `datetime`, an `int`/`float` of Unix seconds, or text. Text is read
  as ISO 8601 unless a format is given: the user's `--time-format`, else the parser's
  own `time_format` attribute (on the function, class or instance: "clf", "syslog",
  "epoch_ms", a strptime format such as "%d/%b/%Y %H:%M" ...; see log-adapter's
  `--time-format` for the names). A text timestamp in neither is a `bad_timestamp`
  failure whose detail names the setting that fixes it.
- `level`: any spelling (`WARN`, `warning`, `W`, `err`, syslog severity 0-7); normalised.
- `message`: the human-readable text. Everything else is passed through as a field.
  Values must be JSON-able: str, int, float, bool, None, lists and dicts of them
  (bytes are decoded for you).

Naming a parser (`load_parser(spec)`, via `podkit.plugins.load("parser", spec)`):

- an entry-point name in the `podkit.parsers` group (built-ins and installed packages);
- `package.module:attr`;
- a path to a `.py` file (mounted from a ConfigMap); it must define `parser`, or name the
  attribute: `/etc/podkit/my_parser.py:parse_line`.

Calling one (what a consumer such as log-shipper does)::

    parser = load_parser(settings.parser, settings.parser_options)  # ParserLoadError: exit 2
    try:
        fields = parser(line)            # bytes; or str if parser.input_type == "str"
    except Pending:
        ...                              # held (CRI partial line): nothing to emit yet
    except ParseError as exc:
        ...                              # emit the raw line with exc.kind, count it

A parser with `stateful = True` keeps lines between calls: take `parser.fork()` for each
file, and at the end of input call `parser.flush()` (when it has one) for the records it
still holds. podkit's own record building (RFC 3339 times, levels, always-valid JSON) is
`podkit.adapters.log_json.record.RecordBuilder`.

Example (a file mounted at /etc/podkit/kv.py)::

    from podkit.parsers import ParseError

    def parser(line: str) -> dict:
        if "=" not in line:
            raise ParseError("no key=value pair", kind="no_equals")
        key, _, value = line.partition("=")
        return {"message": line, key.strip(): value.strip()}
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, Literal, Protocol, cast, runtime_checkable

from podkit import plugins

__all__ = [
    "LoadedParser",
    "MissingParserOptions",
    "ParseError",
    "Parser",
    "ParserLoadError",
    "Pending",
    "load_parser",
]

InputType = Literal["bytes", "str"]


class ParseError(Exception):
    """The line is not in the parser's format.

    `kind` is a short, stable, low-cardinality label (it becomes a metric label and the
    record's `parse_error`): "no_match", "bad_timestamp", "bad_json", ... The message may
    say more, but must not grow with the line (no line content in `kind`).
    """

    def __init__(self, message: str = "line does not match", *, kind: str = "no_match") -> None:
        super().__init__(message)
        self.kind = kind


class Pending(Exception):
    """The parser kept this line to join it with the next ones; there is no record yet.

    Stateful parsers (CRI partial lines) raise it. They set `stateful = True` and a
    `fork()` that returns a fresh instance: the consumer uses one instance per file.
    """


class ParserLoadError(plugins.PluginError):
    """The parser could not be found, loaded or configured; the message says why."""


class MissingParserOptions(ParserLoadError):
    """A parser class needs options that were not given; the message names them, with an
    example in the `--parser-options` syntax, and names the setting itself."""

    def __init__(self, spec: str, missing: list[str], options: dict[str, Any], obj: Any) -> None:
        examples = getattr(obj, "option_examples", None) or {}
        example = {**options, **{name: examples.get(name, "...") for name in missing}}
        names = ", ".join(repr(name) for name in missing)
        what = "option" if len(missing) == 1 else "options"
        super().__init__(
            f"--parser {spec} needs the {what} {names}: "
            f"--parser-options '{json.dumps(example, default=str)}'"
        )
        self.missing = missing


def _missing_options(cls: type, options: dict[str, Any]) -> list[str]:
    """Constructor arguments without a default that `options` does not give."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in options
    ]


@runtime_checkable
class Parser(Protocol):
    """What `load_parser` returns: a line in, fields out, `ParseError` on a line it rejects.

    Call it with the line's bytes. If `input_type` is "str" the parser works on text; a
    consumer that has already decoded the line (UTF-8, errors replaced) may pass the str
    and save a second decode. `name` labels metrics and the `parser` field of failures.
    """

    name: str
    input_type: InputType

    def __call__(self, line: bytes | str) -> dict[str, Any]: ...


def _input_type(obj: Any) -> InputType:
    declared = getattr(obj, "input_type", None)
    if declared in ("bytes", "str"):
        return declared  # type: ignore[no-any-return]
    if declared is not None:
        raise ParserLoadError(f"input_type must be 'bytes' or 'str', not {declared!r}")
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else obj.__call__
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return "str"
    if not params:
        raise ParserLoadError("a parser must take one argument, the line")
    annotation = params[0].annotation
    if annotation in (bytes, "bytes"):
        return "bytes"
    return "str"


class LoadedParser:
    """A user's parser made uniform: takes bytes, returns a dict, raises only ParseError.

    The attributes a consumer reads (`time_format`, `types`) are the user parser's own.
    """

    __slots__ = ("_func", "input_type", "name", "stateful", "time_format", "types")

    def __init__(self, func: Callable[[Any], Any], name: str, input_type: InputType) -> None:
        self._func = func
        self.name = name
        self.input_type = input_type
        self.stateful = bool(getattr(func, "stateful", False))
        self.time_format: str | None = getattr(func, "time_format", None)
        """How the parser's text timestamps are read (None: ISO 8601, unless configured)."""
        self.types: dict[str, str] = dict(getattr(func, "types", None) or {})

    def fork(self) -> LoadedParser:
        """A fresh instance for another file, for parsers that keep state between lines."""
        fork = getattr(self._func, "fork", None)
        if not self.stateful or fork is None:
            return self
        return LoadedParser(fork(), self.name, self.input_type)

    def __call__(self, line: bytes | str) -> dict[str, Any]:
        arg: bytes | str = line
        if self.input_type == "str":
            if isinstance(line, bytes):
                arg = line.decode("utf-8", "replace")
        elif isinstance(line, str):
            arg = line.encode("utf-8", "surrogateescape")
        try:
            fields = self._func(arg)
        except (ParseError, Pending):
            raise
        except Exception as exc:
            raise ParseError(f"{type(exc).__name__}: {exc}", kind="exception") from exc
        if not isinstance(fields, dict):
            raise ParseError(
                f"parser returned {type(fields).__name__}, not a dict", kind="bad_result"
            )
        return fields


def load_parser(spec: str, options: dict[str, Any] | None = None) -> Parser:
    """Find the parser named by `spec` and configure it with `options`.

    Raises `ParserLoadError` (a `podkit.plugins.PluginError`) with a one-line reason.
    Parsers that set `trusted = True` (podkit's built-ins: they take bytes or str and raise
    only `ParseError`/`Pending`) are returned as they are, to keep the per-line cost down;
    any other is wrapped in a `LoadedParser`.
    """
    options = dict(options or {})
    try:
        obj = plugins.load("parser", spec, default_attr="parser")
    except plugins.PluginError as exc:
        raise ParserLoadError(str(exc)) from None
    instance: Any
    if inspect.isclass(obj):
        missing = _missing_options(obj, options)
        if missing:
            raise MissingParserOptions(spec, missing, options, obj)
        try:
            instance = obj(**options)
        except (TypeError, ValueError, ParseError) as exc:
            raise ParserLoadError(f"parser {spec!r}: bad options: {exc}") from None
    elif callable(obj):
        if options:
            names = ", ".join(sorted(options))
            raise ParserLoadError(
                f"parser {spec!r} is a function and takes no options (got: {names}); "
                "make it a class to accept options"
            )
        instance = obj
    else:
        raise ParserLoadError(f"parser {spec!r} is a {type(obj).__name__}, not a callable")
    input_type = _input_type(instance)
    if getattr(instance, "trusted", False):
        return cast(Parser, instance)
    return LoadedParser(instance, getattr(instance, "name", None) or spec, input_type)
