"""Structured logs: one JSON object per line on stderr, or aligned text for people.

Every record carries `ts` (RFC 3339, UTC), `level`, `helper` and `event`, plus the fields
the caller passed. Third-party loggers (aiohttp, asyncio) go through the same handler,
so nothing reaches stderr in another shape.

    log = get_logger("redis")
    log.info("master_changed", old="10.0.0.1:6379", new="10.0.0.2:6379")
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

_FIELDS = "podkit_fields"
_helper_name = "podkit"


def _timestamp(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, _FIELDS, None) or {})
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, exc, tb = record.exc_info
        fields["error"] = f"{exc_type.__name__}: {exc}"
        fields["traceback"] = "".join(traceback.format_exception(exc_type, exc, tb))
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "helper": _helper_name,
            "event": record.getMessage(),
        }
        if not record.name.startswith("podkit"):
            payload["logger"] = record.name
        payload.update(_record_fields(record))
        return orjson.dumps(payload, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(record)
        tb = fields.pop("traceback", None)
        parts = [
            _timestamp(record.created),
            f"{record.levelname:<7}",
            _helper_name,
            record.getMessage(),
        ]
        parts += [f"{key}={value}" for key, value in fields.items()]
        line = " ".join(parts)
        return f"{line}\n{tb.rstrip()}" if tb else line


class EventLogger(logging.LoggerAdapter[logging.Logger]):
    """`log.info("event_name", key=value, ...)`: the event is the message, kwargs are fields."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        exc_info = kwargs.pop("exc_info", None)
        stacklevel = kwargs.pop("stacklevel", 1)
        self.logger.log(
            level,
            msg,
            *args,
            exc_info=exc_info,
            extra={_FIELDS: kwargs},
            stacklevel=stacklevel + 2,
        )

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)


class Throttled:
    """Warnings about a recurring per-connection problem, at most one per event a period.

    A proxy refusing thousands of clients a second must not write thousands of lines: the
    first of each event is logged, the ones after it within `every` seconds are counted and
    reported as `suppressed` on the next line (the helper's metrics count them all).
    """

    def __init__(self, log: EventLogger, every: float = 1.0) -> None:
        self.log = log
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get(event, (float("-inf"), 0))
        if now - last < self.every:
            self._last[event] = (last, suppressed + 1)
            return
        self._last[event] = (now, 0)
        self.log.warning(event, **fields, **({"suppressed": suppressed} if suppressed else {}))


def get_logger(name: str) -> EventLogger:
    """A logger for one part of podkit (`podkit.<name>`)."""
    full = name if name.startswith("podkit") else f"podkit.{name}"
    return EventLogger(logging.getLogger(full))


def configure(helper: str, *, fmt: str = "json", level: str = "info") -> None:
    """Send every log record to stderr in the chosen format. Idempotent."""
    global _helper_name
    _helper_name = helper
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is per request; /metrics scrapes would flood the log.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # watchfiles (the follower's inotify watch) logs every change batch at info.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
