"""Settings: defaults < YAML file (--config) < environment (PODKIT_*) < flags, validated once.

A helper declares its settings as a pydantic model that subclasses `HelperSettings`; each
field is at once a flag (`--some-flag`), an environment variable (`PODKIT_SOME_FLAG`) and
a key of the config file (`some_flag:`). Any problem ends in `ConfigError`, which the CLI
prints as one line naming the setting, where the value came from, the value (unless it
is a secret) and what is wrong, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

ENV_PREFIX = "PODKIT_"

S = typing.TypeVar("S", bound="HelperSettings")


class ConfigError(Exception):
    """A setting is missing or wrong; the message is the single line shown to the user."""


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


COMMON_FIELDS = frozenset(HelperSettings.model_fields)


# --- where each value comes from ----------------------------------------------------------


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


@dataclass(frozen=True)
class Origin:
    kind: Literal["default", "file", "env", "flag"]
    detail: str = ""

    def describe(self, field: str) -> str:
        if self.kind == "flag":
            return f"from {flag_name(field)}"
        if self.kind == "env":
            return f"from env {env_name(field)}"
        if self.kind == "file":
            return f"from {self.detail}"
        return "default"


def _strip_optional(annotation: Any) -> Any:
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


def _field_kind(info: FieldInfo) -> Literal["bool", "list", "structured", "scalar"]:
    annotation = _strip_optional(info.annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool"
    if origin in (list, tuple, set, frozenset, Sequence):
        (item,) = typing.get_args(annotation)[:1] or (str,)
        item = _strip_optional(item)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "structured"
        return "list"
    if origin in (dict, Mapping) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "structured"
    return "scalar"


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    merged = dict(extra) if isinstance(extra, dict) else {}
    for meta in info.metadata:
        meta_extra = getattr(meta, "json_schema_extra", None)
        if isinstance(meta_extra, dict):
            merged.update(meta_extra)
    return merged


def is_secret(info: FieldInfo) -> bool:
    return _strip_optional(info.annotation) is SecretStr or bool(_extra(info).get("secret"))


def _is_secret_file(info: FieldInfo) -> bool:
    return bool(_extra(info).get("secret_file"))


def _env_value(info: FieldInfo, raw: str) -> Any:
    kind = _field_kind(info)
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


def _help_default(name: str, info: FieldInfo, admin_default: str) -> str:
    if name == "admin_addr":
        return admin_default
    if is_secret(info) or info.is_required():
        return ""
    default = info.get_default(call_default_factory=True)
    if default in (None, "", [], {}):
        return ""
    if isinstance(default, list):
        return ",".join(map(str, default))
    return str(default)


def build_parser(
    prog: str, settings_cls: type[HelperSettings], *, description: str = "", admin_default: str = ""
) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Every flag --some-flag is also the environment variable PODKIT_SOME_FLAG and the\n"
            "key some_flag: of the --config file. Flags win over env, env over the file.\n"
            "Durations take 250ms, 5s, 2m; sizes take 64KiB, 10MB; lists are repeated flags\n"
            "or comma-separated env values."
        ),
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
        kind = _field_kind(info)
        extra = _extra(info)
        notes = [f"env: {env_name(name)}"]
        default = _help_default(name, info, admin_default)
        if info.is_required():
            notes.append("required")
        elif default:
            notes.append(f"default: {default}")
        description = (info.description or "").replace("%", "%%")
        if kind == "structured":
            group.add_argument(
                flag_name(name),
                help=argparse.SUPPRESS,
                default=argparse.SUPPRESS,
            )
            continue
        help_text = f"{description} [{'; '.join(notes)}]"
        metavar = extra.get("metavar") or name.upper()
        if kind == "bool":
            group.add_argument(
                flag_name(name),
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif kind == "list":
            group.add_argument(
                flag_name(name),
                action="append",
                metavar=metavar,
                default=argparse.SUPPRESS,
                help=help_text + " (repeatable)",
            )
        else:
            choices = typing.get_args(_strip_optional(info.annotation))
            literal = typing.get_origin(_strip_optional(info.annotation)) is Literal
            group.add_argument(
                flag_name(name),
                metavar="{" + ",".join(map(str, choices)) + "}" if literal else metavar,
                default=argparse.SUPPRESS,
                help=help_text,
            )
    return parser


# --- putting it together ------------------------------------------------------------------


def _describe_error(
    settings_cls: type[HelperSettings],
    error: dict[str, Any],
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
        return (
            f"missing required setting {flag_name(field)} "
            f"(or env {env_name(field)}, or {field}: in --config)"
        )
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    setting = flag_name(field) + path
    if info is not None and (is_secret(info) and not _is_secret_file(info)):
        return f"invalid setting {setting} ({origin.describe(field)}): {message}"
    value = error.get("input", merged.get(field))
    shown = value if isinstance(value, str) and value.isprintable() else repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return f"invalid setting {setting}={shown} ({origin.describe(field)}): {message}"


def load_settings(
    settings_cls: type[S],
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    prog: str,
    description: str = "",
    admin_default: str = "",
) -> S:
    """Merge defaults < file < env < flags and validate. Raises ConfigError."""
    parser = build_parser(prog, settings_cls, description=description, admin_default=admin_default)
    flags = vars(parser.parse_args(list(argv)))
    origins: dict[str, Origin] = {}
    merged: dict[str, Any] = {"admin_addr": admin_default}

    config_path = flags.pop("config", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        for key, value in read_config_file(config_path).items():
            merged[key] = value
            origins[key] = Origin("file", f"config file {config_path}")

    for name, info in settings_cls.model_fields.items():
        raw = environ.get(env_name(name))
        if raw is not None:
            try:
                merged[name] = _env_value(info, raw)
            except yaml.YAMLError:
                raise ConfigError(
                    f"invalid setting {flag_name(name)} (from env {env_name(name)}): "
                    "expected a YAML/JSON value"
                ) from None
            origins[name] = Origin("env")

    for name, value in flags.items():
        info = settings_cls.model_fields[name]
        if _field_kind(info) == "structured":
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(
                    f"invalid setting {flag_name(name)}: expected a YAML/JSON value"
                ) from None
        merged[name] = value
        origins[name] = Origin("flag")

    try:
        return settings_cls.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ConfigError(_describe_error(settings_cls, first, origins, merged)) from None


def environ_snapshot() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIX)}
