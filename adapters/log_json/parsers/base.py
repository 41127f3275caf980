"""What every built-in parser shares: str input, default time format and field types."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from podkit.parsers import ParseError


class BaseParser:
    """A built-in parser. Subclasses implement `parse(text) -> dict` and raise ParseError.

    `input_type = "str"`: the adapter decodes each line once (UTF-8, invalid bytes replaced,
    the raw bytes kept for the record) and hands the same text to the parser. Called with
    bytes (as the log-shipper may), it decodes itself.
    """

    name: ClassVar[str] = "base"
    input_type: ClassVar[str] = "str"
    trusted: ClassVar[bool] = True
    time_format: str = "iso"
    """How the `timestamp` this parser returns is read, unless the user configures one."""
    types: ClassVar[dict[str, str]] = {}
    """Field types this parser's fields get by default (the user's `types` add to them)."""
    sets_level_raw: ClassVar[bool] = False
    """True when the parser may set `level_raw` itself (it maps its own level tokens)."""
    derived_level: ClassVar[bool] = False
    """True when `level` is inferred (an HTTP status), not a token of the line: no `level_raw`."""
    stateful: ClassVar[bool] = False
    """True when lines depend on earlier lines (CRI partials): one instance per file."""
    option_examples: ClassVar[dict[str, Any]] = {}
    """Example values of required options, for the error that names a missing one."""

    def __call__(self, line: bytes | str) -> dict[str, Any]:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        return self.parse(line)

    def parse(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def fork(self) -> BaseParser:
        """A fresh instance with the same options, for another file (stateful parsers)."""
        return self


def compile_pattern(pattern: str, option: str = "pattern") -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise ValueError(f"{option} is not a valid regular expression: {exc}") from None
    if not compiled.groupindex:
        raise ValueError(f"{option} has no named group (?P<name>...)")
    return compiled


class RegexParser(BaseParser):
    """`regex`: a regular expression with named groups; each group becomes a field.

    Options: `pattern` (required), `time_format` (how the `timestamp` group is read),
    `search` (true: match anywhere, default false: match from the start of the line).
    Groups that did not take part in the match are left out.
    """

    name = "regex"
    sets_level_raw = True
    option_examples: ClassVar[dict[str, Any]] = {"pattern": r"(?P<client>\S+) (?P<method>\w+)"}

    def __init__(self, pattern: str, time_format: str = "iso", search: bool = False) -> None:
        self.regex = compile_pattern(pattern)
        self.time_format = time_format
        self._match = self.regex.search if search else self.regex.match

    def parse(self, text: str) -> dict[str, Any]:
        match = self._match(text)
        if match is None:
            raise ParseError("line does not match the pattern")
        return {k: v for k, v in match.groupdict().items() if v is not None}
