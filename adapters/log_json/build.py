"""What a set of settings describes, shared by follow mode and --check: the RecordBuilder
and the multiline stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podkit.parsers import load_parser

from .normalize import TimeParser, resolve_zone
from .record import BuildCounts, RecordBuilder
from .settings import LogAdapterSettings

if TYPE_CHECKING:
    from podkit.follow import MultilineConfig

TIME_FORMAT_HINT = "set --time-format (or the parser's time_format attribute)"
"""What a `bad_timestamp` failure's detail says fixes it."""


def make_builder(settings: LogAdapterSettings, stats: BuildCounts | None = None) -> RecordBuilder:
    parser = load_parser(settings.parser, settings.parser_options)
    time_format = str(settings.time_format or getattr(parser, "time_format", None) or "iso")
    time_parser = TimeParser(time_format, resolve_zone(settings.timezone), hint=TIME_FORMAT_HINT)
    return RecordBuilder(
        parser,
        time_parser=time_parser,
        types=dict(settings.types),
        keep_raw=settings.keep_raw,
        stats=stats,
    )


def multiline_config(settings: LogAdapterSettings) -> MultilineConfig | None:
    """The follower's multiline stage the settings ask for (None: off)."""
    if settings.multiline == "off":
        return None
    from podkit.follow import MultilineConfig

    return MultilineConfig(
        mode=settings.multiline,
        start_pattern=settings.multiline_start,
        flush_timeout=settings.flush_timeout,
    )
