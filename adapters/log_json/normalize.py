"""Normalising what parsers return: timestamps to RFC 3339, levels to one vocabulary, types.

Timestamps are the costly part (strptime is ~10 us), so each known format has a hand-written
reader and every rendered value is cached by its input text: log lines written in the same
second share one timestamp string, and the cache turns them into a dict lookup.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LEVEL_NAMES = ("trace", "debug", "info", "notice", "warning", "error", "fatal")
"""The fixed set every `level` is normalised to, least to most severe. OpenTelemetry's
SeverityText (TRACE DEBUG INFO WARN ERROR FATAL) plus syslog's `notice` (OTel INFO2); Fluent
Bit passes levels through, so these names are what dashboards and alert rules match on. The
token the line carried is kept in `level_raw`."""

LEVELS: dict[str, str] = {}
for canonical, spellings in {
    "trace": ("trace", "trc", "t", "finest", "finer", "verbose", "v", "10"),
    "debug": ("debug", "dbg", "d", "fine", "config", "7", "debug1", "debug2", "debug3",
              "debug4", "debug5", "20"),
    "info": ("info", "inf", "i", "information", "informational", "6", "log", "30"),
    "notice": ("notice", "note", "n", "5"),
    "warning": ("warning", "warn", "wrn", "w", "4", "40"),
    "error": ("error", "err", "e", "severe", "3", "50"),
    "fatal": (
        "fatal", "critical", "crit", "c", "ftl", "f", "panic", "alert", "emerg",
        "emergency", "0", "1", "2", "60",
    ),
}.items():  # fmt: skip
    for spelling in spellings:
        LEVELS[spelling] = canonical


def normalize_level(value: Any) -> Any:
    """`WARN`, `warning`, `W`, `<4>`, 4, 40 (pino) -> "warning"; `FATAL`, `crit`, `emerg` ->
    "fatal"; an unknown level is kept, lower-cased."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return LEVELS.get(str(value), str(value))
    if not isinstance(value, str):
        return value
    key = value.strip().strip("[]<>").lower()
    return LEVELS.get(key, key)


_LEVEL_IN_TEXT = re.compile(
    r"(?<![\w-])(?:TRACE|DEBUG\d?|INFO|NOTICE|WARN|WARNING|ERROR|FATAL|CRITICAL|PANIC|LOG"
    r"|INF|WRN|ERR|DBG|TRC|FTL)\b:?"
    r"|\[(?:trace|debug|info|notice|warn|warning|error|crit|alert|emerg)\]"
)
_TIME_IN_TEXT = re.compile(r"\[?(?:\d{2,4}[-/.]\d{2}[-/.]\d{2,4}[ T:]\d{1,2}:\d{2}|\d{10}\b)")
PEEK = 48


def is_partial(fields: dict[str, Any]) -> bool:
    """A parse that left the level or the timestamp in the message (PostgreSQL's line read
    as `classic`: message `UTC [2196] LOG:  starting`): counted `partial`, not `parsed`."""
    message = fields.get("message")
    if type(message) is not str:
        return False
    if "level" not in fields and _LEVEL_IN_TEXT.search(message, 0, PEEK):
        return True
    return "timestamp" not in fields and _TIME_IN_TEXT.match(message) is not None


class TimeIn(NamedTuple):
    """A timestamp text in another format than the parser's `time_format`, for the
    adapter's TimeParser to read with its own clock and zone: a time of day gets the
    adapter's date, a syslog time its guessed year (never the parser's wall clock)."""

    fmt: str
    text: str

    def __str__(self) -> str:  # as timestamp_raw when it cannot be read
        return self.text


class TimeError(ValueError):
    """A timestamp the configured format cannot read."""


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_CLF_RE = re.compile(
    r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:\s+([+-]\d{4}))?$"
)
_REDIS_RE = re.compile(r"(\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_CTIME_RE = re.compile(
    r"(?:[A-Za-z]{3} )?([A-Za-z]{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? (\d{4})$"
)
_CLOCK_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?$")
_ZONE_WORD_RE = re.compile(r"(.*\d) ([A-Za-z]{1,5}|[+-]\d{2}(?::?\d{2})?)$")
_SYSLOG_RE = re.compile(r"([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_KLOG_RE = re.compile(r"(\d{2})(\d{2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_FRACTION_RE = re.compile(r"([.,])(\d{7,})")


def _local_zone() -> tzinfo:
    """The container's zone with its DST rules: $TZ, else /etc/localtime, else UTC."""
    key = os.environ.get("TZ", "").lstrip(":")
    if key:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(key)
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return UTC


def resolve_zone(name: str) -> tzinfo:
    """ "UTC", "local", "+02:00" or an IANA name -> tzinfo; ValueError if unknown."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    if name == "local":
        return _local_zone()
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use UTC, local, +02:00 or Europe/Berlin)"
        ) from None


def _micro(fraction: str | None) -> int:
    return int((fraction or "0")[:6].ljust(6, "0"))


_FORMAT_WORDS = {"iso": "ISO 8601", "auto": "in any time format podkit knows"}


class TimeParser:
    """Reads timestamps in one input format, assumes `zone` when they carry none.

    Formats: "iso" (ISO 8601 / RFC 3339, the default), "auto" (each of these in turn),
    "clf" (10/Oct/2000:13:55:36 -0700), "slashed" (2024/05/01 12:00:00.123, nginx, NATS, Go),
    "redis" (01 May 2024 12:00:00.123), "ctime" (Wed May 01 12:00:00.123456 2024, Apache),
    "clock" (12:00:00.123: today), "zoned" (2024-05-01 12:00:00.123 UTC, PostgreSQL),
    "syslog" (Oct 11 22:14:15, year guessed), "klog" (0501 12:00:00.123456, year guessed),
    "epoch" / "epoch_ms" / "epoch_us" / "epoch_ns", or any `strptime` format containing "%".
    """

    CACHE_SIZE = 4096

    def __init__(
        self,
        fmt: str = "iso",
        zone: tzinfo = UTC,
        now: Callable[[], datetime] | None = None,
        *,
        hint: str = "",
    ) -> None:
        self.fmt = fmt
        self.hint = hint
        """Appended to the error of a timestamp not in the format: what setting fixes it."""
        self.zone = zone
        self._now = now or (lambda: datetime.now(zone))
        self._cache: dict[Any, str] = {}
        self._others: dict[str, TimeParser] = {}  # readers of TimeIn values, by format
        readers: dict[str, Callable[[str], datetime]] = {
            "iso": self._iso,
            "clf": self._clf,
            "syslog": self._syslog,
            "klog": self._klog,
            "slashed": self._slashed,
            "redis": self._redis,
            "ctime": self._ctime,
            "clock": self._clock,
            "zoned": self._zoned,
            "auto": self._auto,
        }
        scales = {"epoch": 1, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
        if fmt in readers:
            self._read = readers[fmt]
        elif fmt in scales:
            scale = scales[fmt]
            self._read = lambda text: datetime.fromtimestamp(float(text) / scale, UTC)
        elif "%" in fmt:
            self._read = self._strptime
        else:
            known = ", ".join([*readers, *scales])
            raise ValueError(f"unknown time format {fmt!r}: use {known} or a strptime format")

    def __call__(self, value: Any) -> str:
        """Any timestamp value -> RFC 3339 text. Raises TimeError."""
        cache = self._cache
        try:
            return cache[value]
        except KeyError:
            pass
        except TypeError:  # unhashable (a list from a JSON line)
            raise TimeError(f"timestamp is a {type(value).__name__}") from None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, TimeIn):
            return self._read_in(value)  # not cached: its date depends on the clock
        elif isinstance(value, bool):
            raise TimeError("timestamp is a bool")
        elif isinstance(value, int | float):
            try:
                moment = datetime.fromtimestamp(value, UTC)
            except (OverflowError, OSError, ValueError) as exc:
                raise TimeError(f"epoch {value!r} out of range") from exc
        elif isinstance(value, str):
            moment = self.moment(value)
        else:
            raise TimeError(f"timestamp is a {type(value).__name__}")
        text = self._text(moment)
        if len(cache) >= self.CACHE_SIZE:
            cache.clear()
        cache[value] = text
        return text

    def _read_in(self, value: TimeIn) -> str:
        reader = self._others.get(value.fmt)
        if reader is None:
            reader = self._others[value.fmt] = TimeParser(value.fmt, self.zone, self._now)
        return self._text(reader.moment(value.text))

    def _text(self, moment: datetime) -> str:
        """RFC 3339 text; a naive time is in the adapter's zone."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.isoformat()

    def now(self) -> str:
        return self._now().isoformat()

    def moment(self, value: str) -> datetime:
        """The datetime a timestamp text stands for (naive when it names no zone)."""
        try:
            return self._read(value.strip())
        except (ValueError, OverflowError, KeyError) as exc:
            expected = _FORMAT_WORDS.get(self.fmt) or f"in time format {self.fmt!r}"
            hint = f": {self.hint}" if self.hint else ""
            raise TimeError(f"timestamp {value[:64]!r} is not {expected}{hint}") from exc

    # --- readers, each returns a datetime (naive when the text has no zone) ---------------

    @staticmethod
    def _iso(text: str) -> datetime:
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        # fromisoformat takes at most 6 fraction digits; RFC 3339 writers often give 9.
        if len(text) > 26:
            text = _FRACTION_RE.sub(lambda m: m.group(1) + m.group(2)[:6], text, count=1)
        return datetime.fromisoformat(text)

    @staticmethod
    def _clf(text: str) -> datetime:
        match = _CLF_RE.match(text)
        if not match:
            raise ValueError("not a common log format time")
        day, month, year, hh, mm, ss, frac, offset = match.groups()
        zone = None
        if offset:
            minutes = int(offset[1:3]) * 60 + int(offset[3:5])
            zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
        return datetime(
            int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss),
            _micro(frac), tzinfo=zone,
        )  # fmt: skip

    @classmethod
    def _slashed(cls, text: str) -> datetime:
        # nginx, NATS, Go's log: 2024/05/01 12:00:00[.123456]
        return cls._iso(text.replace("/", "-", 2))

    @staticmethod
    def _redis(text: str) -> datetime:
        match = _REDIS_RE.match(text)
        if not match:
            raise ValueError("not a redis time")
        day, mon, year, hh, mm, ss, frac = match.groups()
        month = _MONTHS[mon.lower()]
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), _micro(frac))

    @staticmethod
    def _ctime(text: str) -> datetime:
        # Apache's error log: Tue Dec 01 13:25:46.573432 2026
        match = _CTIME_RE.match(text)
        if not match:
            raise ValueError("not a ctime")
        mon, day, hh, mm, ss, frac, year = match.groups()
        month = _MONTHS[mon.lower()]
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), _micro(frac))

    def _clock(self, text: str) -> datetime:
        # Only a time of day (logback's default): today, in the zone of the clock.
        match = _CLOCK_RE.match(text)
        if not match:
            raise ValueError("not hh:mm:ss")
        hh, mm, ss, frac = match.groups()
        today = self._now().astimezone(self.zone)
        return datetime(today.year, today.month, today.day, int(hh), int(mm), int(ss), _micro(frac))

    def _zoned(self, text: str) -> datetime:
        # PostgreSQL's %m/%t: 2024-05-01 12:00:00.123 UTC (a zone abbreviation or +03).
        match = _ZONE_WORD_RE.match(text)
        if not match:
            return self._iso(text)
        stamp, zone = match.groups()
        moment = self._iso(stamp)
        if zone[0] in "+-":
            hours = int(zone[1:3])
            minutes = int(zone[-2:]) if len(zone) > 3 else 0
            offset = timedelta(hours=hours, minutes=minutes)
            return moment.replace(tzinfo=timezone(-offset if zone[0] == "-" else offset))
        if zone.upper() in ("UTC", "GMT", "Z", "UT"):
            return moment.replace(tzinfo=UTC)
        return moment  # CET, EST...: ambiguous abbreviations; --timezone says which zone

    def _guess_year(self, month: int, day: int) -> int:
        # No year in the line: the current one, unless that puts it far in the future
        # (a December line read in January belongs to last year).
        now = self._now()
        year = now.year
        if month > now.month + 1 or (month == now.month + 1 and day > 1 and now.month == 12):
            year -= 1
        return year

    def _syslog(self, text: str) -> datetime:
        match = _SYSLOG_RE.match(text)
        if not match:
            raise ValueError("not a syslog time")
        mon, day, hh, mm, ss, frac = match.groups()
        month = _MONTHS[mon.lower()]
        year = self._guess_year(month, int(day))
        return datetime(year, month, int(day), int(hh), int(mm), int(ss), _micro(frac))

    def _klog(self, text: str) -> datetime:
        match = _KLOG_RE.match(text)
        if not match:
            raise ValueError("not a klog time")
        mon, day, hh, mm, ss, frac = match.groups()
        year = self._guess_year(int(mon), int(day))
        return datetime(year, int(mon), int(day), int(hh), int(mm), int(ss), _micro(frac))

    def _auto(self, text: str) -> datetime:
        for reader in (
            self._iso, self._zoned, self._syslog, self._clf, self._slashed, self._redis,
            self._ctime, self._klog, self._clock,
        ):  # fmt: skip
            try:
                return reader(text)
            except (ValueError, KeyError):
                continue
        raise ValueError("no known timestamp format")

    def _strptime(self, text: str) -> datetime:
        return datetime.strptime(text, self.fmt)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1", "t", "y"):
        return True
    if text in ("false", "no", "off", "0", "f", "n", ""):
        return False
    raise ValueError(f"not a boolean: {text[:32]!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return int(value)
    return int(value)


def _to_float(value: Any) -> float:
    result = float(value)
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")  # JSON has no NaN or Infinity
    return result


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "str": str,
}
