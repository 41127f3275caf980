"""The RecordBuilder a set of settings describes (shared by follow mode and --check)."""

from __future__ import annotations

from podkit.parsers import load_parser

from .normalize import TimeParser, resolve_zone
from .record import RecordBuilder, Stats
from .settings import LogAdapterSettings


def make_builder(settings: LogAdapterSettings, stats: Stats | None = None) -> RecordBuilder:
    parser = load_parser(settings.parser, settings.parser_options)
    time_format = settings.time_format or getattr(parser, "time_format", "iso")
    time_parser = TimeParser(time_format, resolve_zone(settings.timezone))
    return RecordBuilder(
        parser,
        time_parser=time_parser,
        types=dict(settings.types),
        keep_raw=settings.keep_raw,
        stats=stats,
    )
