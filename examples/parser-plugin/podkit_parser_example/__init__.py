"""A podkit parser for a legacy pipe-separated format:

    2024-05-01T12:00:00Z|ERROR|payments|card declined|order=123|amount=9.99

Columns are named by the `columns` option; `key=value` columns after them become fields.
"""

from __future__ import annotations

from typing import Any

from podkit.parsers import ParseError

DEFAULT_COLUMNS = ("timestamp", "level", "service", "message")


class PipeParser:
    """Options (from the adapter's `parser_options`): `separator`, `columns`, `time_format`."""

    name = "pipes"
    input_type = "str"  # podkit decodes the line (UTF-8, invalid bytes replaced)

    def __init__(
        self, separator: str = "|", columns: list[str] | None = None, time_format: str = "iso"
    ) -> None:
        if not separator:
            raise ValueError("separator must not be empty")
        self.separator = separator
        self.columns = tuple(columns or DEFAULT_COLUMNS)
        # How podkit reads the `timestamp` text this parser returns (unless the user sets
        # --time-format): "iso", "clf", "epoch_ms", ... or a strptime format.
        self.time_format = time_format

    def __call__(self, line: str) -> dict[str, Any]:
        parts = line.split(self.separator)
        if len(parts) < len(self.columns):
            raise ParseError(
                f"expected {len(self.columns)} columns, found {len(parts)}", kind="too_few_columns"
            )
        fields: dict[str, Any] = dict(zip(self.columns, parts, strict=False))
        for extra in parts[len(self.columns) :]:
            key, sep, value = extra.partition("=")
            if not sep or not key:
                raise ParseError(f"extra column {extra[:40]!r} is not key=value", kind="bad_extra")
            fields[key.strip()] = value.strip()
        return fields
