"""Settings: defaults < YAML file (--config) < environment (PODKIT_*) < flags, validated once.

A helper declares its settings as a pydantic model that subclasses `HelperSettings`; each
field is at once a flag (`--some-flag`), an environment variable (`PODKIT_SOME_FLAG`) and
a key of the config file (`some_flag:`). Any problem ends in `ConfigError`, which the CLI
prints as one line naming the setting, where the value came from, the value (unless it
is a secret) and what is wrong, and exits with status 2.

Drop-in names are declared here too, not in each helper: `Alias` gives a field the flag
and env spellings of the image it replaces (`-nginx.scrape-uri`, `GITSYNC_REPO`,
`DATABASES_HOST`), and `ForeignConfig` reads a foreign config file (Fluent Bit's) into
the same settings dict, so every spelling is validated the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from podkit.importing import import_attr
from podkit.naming import ENV_PREFIX, Alias, aliases, env_name, flag_name

S = typing.TypeVar("S", bound="HelperSettings")
_M = typing.TypeVar("_M")


class ConfigError(Exception):
    """A setting is missing or wrong; the message is the single line shown to the user."""


class SettingError(ValueError):
    """Raised by a validator whose message already names the setting and shows the fix
    (`--parser grok needs the option 'pattern': --parser-options '...'`): shown as it is."""


@dataclass(frozen=True)
class Notice:
    """Something worth one log line at start-up (a deprecated name, an ignored key)."""

    event: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class ForeignSettings:
    """What a foreign config reader found: settings by field name, and notices to log."""

    settings: dict[str, Any]
    notices: list[Notice] = dataclass_field(default_factory=list)
    where: dict[str, str] = dataclass_field(default_factory=dict)
    """setting -> where the file set it ("FILE:LINE key"), for the error naming a bad value."""


@dataclass(frozen=True)
class ForeignConfig:
    """Metadata on a path setting: `reader(path) -> ForeignSettings` reads that file.

    The settings it returns rank as a config file's (below PODKIT_* env and flags, below
    podkit's own --config too). `default_path` is read when the setting is unset and that
    file exists (an image's conventional mount point), in podkit's images only (env
    PODKIT_IMAGE, which images/Containerfile.in sets): on a host, the same path may hold the
    distribution's own file for the tool podkit replaces. A reader raises ConfigError
    naming the file, line, section and key of a problem.
    """

    reader: str
    default_path: str = ""


# --- value types shared by every helper -------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or text like "250ms", "5s", "2m", "1h"."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError("expected a duration such as 5, 0.5s, 250ms, 2m or 1h")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    return value


def parse_byte_size(value: Any) -> Any:
    """Bytes as a number, or text like "64KiB", "10MB", "1Gi"."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = match and _SIZE_UNITS.get(match.group(2).lower())
        if not match or unit is None:
            raise ValueError("expected a size such as 65536, 64KiB, 10MB or 1GiB")
        return int(float(match.group(1)) * unit)
    return value


def format_duration(seconds: float) -> str:
    """Seconds in the notation `parse_duration` reads back: "250ms", "5s", "2m", "1h"."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def format_byte_size(size: int) -> str:
    """Bytes in the notation `parse_byte_size` reads back: "64KiB", "256MiB", "10MB", "100"."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024),
                         ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):  # fmt: skip
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_value(value: Any) -> str:
    """A setting's value as a user would type it: lists comma-separated, no Python reprs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(format_value(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(", ", ": "))
    if isinstance(value, BaseModel):
        return format_value(value.model_dump())
    if isinstance(value, str):
        return value if value.isprintable() else repr(value)
    return str(value)


def split_host_port(value: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" (all interfaces) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:6379 or :9113")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _check_host_port(value: str) -> str:
    split_host_port(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
ByteSize = Annotated[int, BeforeValidator(parse_byte_size), Field(ge=0)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]


def _read_secret_file(value: Any) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    path = Path(str(value))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"secret file {path} cannot be read: {reason}") from None
    # Secrets mounted from Kubernetes Secrets often end in a newline; it is never meant.
    return SecretStr(text.rstrip("\r\n"))


SecretFile = Annotated[
    SecretStr | None,
    BeforeValidator(_read_secret_file),
    Field(json_schema_extra={"metavar": "PATH", "secret_file": True}),
]
"""A path on the command line; the file's content (one trailing newline removed) once loaded."""


class HelperSettings(BaseModel):
    """Settings every helper has. Helpers subclass this and add their own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    admin_addr: HostPort = Field(
        "",
        description="address of the admin HTTP server (/livez /readyz /startupz /metrics)",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    log_format: Literal["json", "text"] = Field("json", description="log line format on stderr")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="least severe level that is logged"
    )
    shutdown_timeout: Duration = Field(
        25.0,
        description="how long a drain (SIGTERM or POST /drain) may take before exiting anyway",
    )

    @classmethod
    def compat_env(
        cls, environ: Mapping[str, str], notices: list[Notice]
    ) -> dict[str, tuple[Any, str]]:
        """Drop-in env names that are not one-to-one `Alias`es: several variables making
        one setting, values spelled another way, names refused or ignored.

        Returns field -> (value, the variable it came from); it ranks as env, below
        PODKIT_* and the `Alias` names. Raises ConfigError for a name that cannot be
        honoured; appends a Notice for one that is ignored.
        """
        return {}


COMMON_FIELDS = frozenset(HelperSettings.model_fields)


# --- where each value comes from ----------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    kind: Literal["default", "file", "env", "flag"]
    detail: str = ""
    """file: which file; env: the variable's name; flag: the spelling typed."""

    def spelling(self, field: str) -> str:
        """The setting's name as the user wrote it (an alias, if they used one)."""
        if self.kind == "flag" and self.detail:
            return self.detail
        if self.kind == "env" and self.detail and not self.detail.startswith(ENV_PREFIX):
            return self.detail  # a drop-in env name (SCRAPE_URI, GITSYNC_REPO)
        return flag_name(field)

    def describe(self, field: str) -> str:
        if self.kind == "flag":
            return f"from {self.spelling(field)}"
        if self.kind == "env":
            return f"from env {self.detail or env_name(field)}"
        if self.kind == "file":
            return f"from {self.detail}"
        return "default"


def strip_optional(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def field_kind(info: FieldInfo) -> Literal["bool", "list", "structured", "scalar"]:
    annotation = strip_optional(info.annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool"
    if origin in (list, tuple, set, frozenset, Sequence):
        (item,) = typing.get_args(annotation)[:1] or (str,)
        item = strip_optional(item)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "structured"
        return "list"
    if origin in (dict, Mapping) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "structured"
    return "scalar"


def field_extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    merged = dict(extra) if isinstance(extra, dict) else {}
    for meta in info.metadata:
        meta_extra = getattr(meta, "json_schema_extra", None)
        if isinstance(meta_extra, dict):
            merged.update(meta_extra)
    return merged


def _meta(info: FieldInfo, kind: type[_M]) -> _M | None:
    return next((meta for meta in info.metadata if isinstance(meta, kind)), None)


def is_secret(info: FieldInfo) -> bool:
    return strip_optional(info.annotation) is SecretStr or bool(field_extra(info).get("secret"))


def _is_secret_file(info: FieldInfo) -> bool:
    return bool(field_extra(info).get("secret_file"))


def _env_value(info: FieldInfo, raw: str) -> Any:
    kind = field_kind(info)
    if kind == "structured" or (kind == "list" and raw.lstrip().startswith("[")):
        return yaml.safe_load(raw)
    if kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"invalid setting --config={path}: file does not exist") from None
    except OSError as exc:
        raise ConfigError(f"invalid setting --config={path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"invalid setting --config={path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid setting --config={path}: {problem}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid setting --config={path}: expected a mapping of settings")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


# --- the command line ---------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


_SPELLINGS = "_podkit_spellings"
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _note_spelling(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    spellings = getattr(namespace, _SPELLINGS, None)
    if spellings is None:
        spellings = {}
        setattr(namespace, _SPELLINGS, spellings)
    spellings[dest] = (option_string or "").split("=", 1)[0]


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, self.dest, values)
        _note_spelling(namespace, self.dest, option_string)


class _Append(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        items = list(getattr(namespace, self.dest, None) or [])
        items.append(values)
        setattr(namespace, self.dest, items)
        _note_spelling(namespace, self.dest, option_string)


class _Bool(argparse.Action):
    """`--flag`, `--flag=true|false` (pflag and Go style) and `--no-flag`."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if option_string and option_string.startswith("--no-"):
            value = False
        elif values is None or str(values).lower() in _TRUE:
            value = True
        elif str(values).lower() in _FALSE:
            value = False
        else:
            raise argparse.ArgumentError(self, f"expected true or false, got {values!r}")
        setattr(namespace, self.dest, value)
        _note_spelling(namespace, self.dest, option_string)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each setting once, under its podkit name; its aliases are listed in its help text."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        name = action.option_strings[0]
        if isinstance(action, _Bool):
            return f"{name}[=BOOL], --no-{name.removeprefix('--')}"
        return f"{name} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def _validators(info: FieldInfo) -> set[object]:
    """The validator functions of a field, also those inside `X | None` and lists."""
    found = {getattr(meta, "func", None) for meta in info.metadata}
    stack: list[Any] = [info.annotation]
    while stack:
        annotation = stack.pop()
        if typing.get_origin(annotation) is typing.Annotated:
            found |= {getattr(meta, "func", None) for meta in annotation.__metadata__}
        stack += typing.get_args(annotation)
    return found


def value_kind(info: FieldInfo) -> Literal["duration", "size", "other"]:
    validators = _validators(info)
    if parse_duration in validators:
        return "duration"
    if parse_byte_size in validators:
        return "size"
    return "other"


def _format_setting(info: FieldInfo, value: Any) -> str:
    """A value of this setting in the notation its input takes (5s, 256MiB, a,b)."""
    if field_kind(info) == "structured":
        return json.dumps(value, default=str, separators=(", ", ": "))
    kind = value_kind(info)
    if kind == "duration" and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(value)
    if kind == "size" and isinstance(value, int) and not isinstance(value, bool):
        return format_byte_size(value)
    return format_value(value)


def help_default(name: str, info: FieldInfo, admin_default: str) -> str:
    """The default as `--help` and `--man` both show it ("" when there is none to show)."""
    if name == "admin_addr":
        return admin_default
    if is_secret(info) or info.is_required():
        return ""
    default = info.get_default(call_default_factory=True)
    if default in (None, "", [], {}) and not isinstance(default, bool):
        return ""
    return _format_setting(info, default)


EPILOG = (
    "Every flag --some-flag is also the environment variable PODKIT_SOME_FLAG and the\n"
    "key some_flag: of the --config file. Flags win over env, env over the file.\n"
    "Durations take 250ms, 5s, 2m; sizes take 64KiB, 10MB; lists are repeated flags\n"
    "or comma-separated env values. 'also:' lists the names of the image a helper\n"
    "replaces, which work as they are."
)


class _Manual(argparse.Action):
    """`--man`: print the manual (podkit.manual) and exit 0, before any validation."""

    def __init__(self, option_strings, dest, manual, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.manual = manual

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        sys.stdout.write(self.manual())
        parser.exit(0)


class ManualRenderer(typing.Protocol):
    """Renders `--man` (podkit.manual.render): handed in by the CLI, so that the loader
    does not import the manual, which reads the loader's declarations."""

    def __call__(
        self, prog: str, settings_cls: type[HelperSettings], *, description: str, admin_default: str
    ) -> str: ...


_METAVARS = {"structured": "JSON", "duration": "DURATION", "size": "SIZE"}


def build_parser(
    prog: str,
    settings_cls: type[HelperSettings],
    *,
    description: str = "",
    admin_default: str = "",
    manual: ManualRenderer | None = None,
    version: str = "",
) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=prog,
        description=description,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # a prefix of one spelling must not silently mean another
        epilog=EPILOG,
    )
    summary = description  # `description` is reused for each setting below
    if manual is not None:
        parser.add_argument(
            "--man",
            action=_Manual,
            manual=lambda: manual(
                prog, settings_cls, description=summary, admin_default=admin_default
            ),
            help="print the full manual (every setting and all its names) and exit",
        )
    if version:
        parser.add_argument(
            "--version",
            action="version",
            version=version,
            help="print the version, the git revision and the Python version, and exit",
        )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"YAML file of settings [env: {ENV_PREFIX}CONFIG]",
    )
    own = parser.add_argument_group(f"{prog} settings")
    common = parser.add_argument_group("common settings")
    for name, info in settings_cls.model_fields.items():
        group = common if name in COMMON_FIELDS else own
        kind = field_kind(info)
        extra = field_extra(info)
        alias = aliases(info)
        spellings = [flag_name(name), *alias.flags, *alias.deprecated_flags]
        notes = [f"env: {', '.join([env_name(name), *alias.env])}"]
        if alias.flags:
            notes.append(f"also: {' '.join(alias.flags)}")
        default = help_default(name, info, admin_default)
        if info.is_required():
            notes.append("required")
        elif default:
            notes.append(f"default: {default}")
        description = (info.description or "").replace("%", "%%")
        help_text = f"{description} [{'; '.join(notes)}]"
        if kind == "structured":
            help_text += " (YAML/JSON)"
        metavar = (
            extra.get("metavar")
            or _METAVARS.get(kind if kind == "structured" else value_kind(info))
            or name.upper()
        )
        if kind == "bool":
            negations = [f"--no-{name.replace('_', '-')}"]
            group.add_argument(
                *spellings, *negations, dest=name, action=_Bool, nargs="?", metavar="BOOL",
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
        elif kind == "list":
            group.add_argument(
                *spellings, dest=name, action=_Append, metavar=metavar,
                default=argparse.SUPPRESS, help=help_text + " (repeatable)",
            )  # fmt: skip
        else:
            choices = typing.get_args(strip_optional(info.annotation))
            literal = typing.get_origin(strip_optional(info.annotation)) is Literal
            group.add_argument(
                *spellings, dest=name, action=_Store,
                metavar="{" + ",".join(map(str, choices)) + "}" if literal else metavar,
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
    return parser


# --- putting it together ------------------------------------------------------------------


_TYPE_WORDS = {
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (a YAML/JSON object)",
    "model_type": "expected a mapping (a YAML/JSON object)",
    "model_attributes_type": "expected a mapping (a YAML/JSON object)",
    "missing": "a required key is missing",
    "extra_forbidden": "unknown key",
}
_BOUND_WORDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}


def problem_words(error: ErrorDetails, info: FieldInfo | None = None) -> str:
    """What is wrong, in podkit's words rather than pydantic's ("Input should be ...")."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind == "literal_error":
        annotation = strip_optional(info.annotation) if info is not None else None
        if typing.get_origin(annotation) is Literal:
            expected = ", ".join(map(str, typing.get_args(annotation)))
        else:  # a nested field: pydantic's "'a', 'b' or 'c'" without the quotes
            expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{format_value(error.get('input'))!r} is not one of: {expected}"
    if kind in _BOUND_WORDS:
        key, words = _BOUND_WORDS[kind]
        bound = ctx.get(key)
        if info is not None and isinstance(bound, int | float):
            bound = _format_setting(info, bound)
        return f"{words} {bound}"
    unit = "characters" if kind.startswith("string") else "items"
    if kind in ("string_too_short", "too_short"):
        return f"needs at least {ctx.get('min_length')} {unit}"
    if kind in ("string_too_long", "too_long"):
        return f"allows at most {ctx.get('max_length')} {unit}"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    message = error["msg"].removeprefix("Input should be ")
    return message[:1].lower() + message[1:]


def _describe_error(
    settings_cls: type[HelperSettings],
    error: ErrorDetails,
    origins: dict[str, Origin],
    merged: dict[str, Any],
) -> str:
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else ""
    info = settings_cls.model_fields.get(field)
    origin = origins.get(field, Origin("default"))
    if error["type"] == "extra_forbidden":
        where = origin.detail or "the config"
        return f"unknown setting {field!r} in {where}"
    if error["type"] == "missing" and len(loc) == 1:
        alias = aliases(info) if info is not None else Alias()
        also = "".join(f", or env {name}" for name in alias.env)
        return (
            f"missing required setting {flag_name(field)} "
            f"(or env {env_name(field)}{also}, or {field}: in --config)"
        )
    if isinstance((error.get("ctx") or {}).get("error"), SettingError):
        return str(error["ctx"]["error"])
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    message = problem_words(error, info if len(loc) == 1 else None)
    if not loc:  # a check across settings: its input is all of them, secrets included
        return f"invalid settings: {message}"
    setting = origin.spelling(field) + path
    value = error.get("input", merged.get(field))
    if (info is not None and is_secret(info) and not _is_secret_file(info)) or isinstance(
        value, Mapping
    ):  # a secret, or a mapping that may hold one (an output's password...): not shown
        return f"invalid setting {setting} ({origin.describe(field)}): {message}"
    shown = (
        _format_setting(info, value) if info is not None and len(loc) == 1 else format_value(value)
    )
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return f"invalid setting {setting}={shown} ({origin.describe(field)}): {message}"


def _env_names(name: str, info: FieldInfo) -> list[tuple[str, bool]]:
    """(variable, deprecated) in the order they count: PODKIT_* first, then the aliases."""
    alias = aliases(info)
    return [
        (env_name(name), False),
        *((env, False) for env in alias.env),
        *((env, True) for env in alias.deprecated_env),
    ]


IMAGE_ENV = f"{ENV_PREFIX}IMAGE"
"""Set in podkit's images: a ForeignConfig's default path is read there only."""


def _read_foreign(
    settings_cls: type[HelperSettings],
    merged: dict[str, Any],
    notices: list[Notice],
    environ: Mapping[str, str],
) -> dict[str, tuple[Any, Origin]]:
    """Run each ForeignConfig reader whose path is set (or whose default file exists)."""
    found: dict[str, tuple[Any, Origin]] = {}
    in_image = bool(environ.get(IMAGE_ENV))
    for name, info in settings_cls.model_fields.items():
        foreign = _meta(info, ForeignConfig)
        if foreign is None:
            continue
        default = foreign.default_path
        path = merged.get(name) or (
            default if in_image and default and os.path.isfile(default) else ""
        )
        if not path:
            continue
        result: ForeignSettings = import_attr(foreign.reader)(str(path))
        notices.extend(result.notices)
        origin = Origin("file", f"{flag_name(name).removeprefix('--')} file {path}")
        for key, value in result.settings.items():
            where = result.where.get(key)
            found[key] = (value, Origin("file", where) if where else origin)
        if name not in merged:
            found[name] = (str(path), Origin("default"))
    return found


def load_settings(
    settings_cls: type[S],
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    prog: str,
    description: str = "",
    admin_default: str = "",
    notices: list[Notice] | None = None,
    manual: ManualRenderer | None = None,
    version: str = "",
) -> S:
    """Merge defaults < foreign file < --config file < env < flags and validate.

    Raises ConfigError. `notices` collects what deserves a log line once logging is set
    up (deprecated spellings used, keys a foreign config reader ignored).
    """
    notices = notices if notices is not None else []
    parser = build_parser(
        prog,
        settings_cls,
        description=description,
        admin_default=admin_default,
        manual=manual,
        version=version,
    )
    namespace = parser.parse_args(list(argv))
    spellings: dict[str, str] = getattr(namespace, _SPELLINGS, {})
    flags = {k: v for k, v in vars(namespace).items() if k != _SPELLINGS}
    origins: dict[str, Origin] = {}
    merged: dict[str, Any] = {"admin_addr": admin_default}

    config_path = flags.pop("config", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        for key, value in read_config_file(config_path).items():
            merged[key] = value
            origins[key] = Origin("file", f"config file {config_path}")

    for name, info in settings_cls.model_fields.items():
        for variable, deprecated in _env_names(name, info):
            raw = environ.get(variable)
            if raw is None:
                continue
            try:
                merged[name] = _env_value(info, raw)
            except yaml.YAMLError:
                raise ConfigError(
                    f"invalid setting {flag_name(name)} (from env {variable}): "
                    "expected a YAML/JSON value"
                ) from None
            origins[name] = Origin("env", variable)
            if deprecated:
                notices.append(
                    Notice("deprecated_setting", {"name": variable, "use": env_name(name)})
                )
            break

    for name, (value, variable) in settings_cls.compat_env(environ, notices).items():
        if origins.get(name, Origin("default")).kind != "env":
            merged[name] = value
            origins[name] = Origin("env", variable)

    for name, value in flags.items():
        info = settings_cls.model_fields[name]
        spelling = spellings.get(name, flag_name(name))
        if field_kind(info) == "structured":
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(
                    f"invalid setting {spelling}: expected a YAML/JSON value"
                ) from None
        merged[name] = value
        origins[name] = Origin("flag", spelling)
        if spelling in aliases(info).deprecated_flags:
            notices.append(Notice("deprecated_setting", {"name": spelling, "use": flag_name(name)}))

    # A foreign file ranks below everything the user set in podkit's own terms.
    for key, (value, origin) in _read_foreign(settings_cls, merged, notices, environ).items():
        if key not in merged:
            merged[key] = value
            origins[key] = origin

    try:
        return settings_cls.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ConfigError(_describe_error(settings_cls, first, origins, merged)) from None


def environ_snapshot() -> dict[str, str]:
    """The whole environment: aliases read names outside PODKIT_* (GITSYNC_*, DATABASES_*)."""
    return dict(os.environ)
