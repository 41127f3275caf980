"""`podkit log-adapter` settings: the follower's, plus parser, record and output settings."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from podkit.config import SettingError
from podkit.follow.settings import FollowSettings
from podkit.parsers import MissingParserOptions, load_parser
from podkit.plugins import PluginError, load

from .normalize import TimeParser, resolve_zone

ADMIN_PORT = 9702
MAX_WORKERS = 64


class LogAdapterSettings(FollowSettings):
    parser: str = Field(
        "classic",
        description="parser: auto (chosen per file from its first lines), a built-in name "
        "(classic, nginx, syslog, logfmt, json, cri, klog, python, postgresql, redis, mariadb, "
        "nginx_error, apache_error, haproxy, java, go, node, Fluent Bit's names, regex, grok, "
        "...), an installed podkit.parsers plugin, module:attr or a .py file",
        json_schema_extra={"metavar": "NAME"},
    )
    parser_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the parser (YAML: pattern for regex/grok, mode for json, "
        "log_line_prefix for postgresql, candidates/sample_lines/recheck_lines for auto, ...)",
    )
    time_format: str | None = Field(
        None,
        description="how timestamps in lines are read: iso, auto, clf, syslog, klog, slashed, "
        "redis, ctime, clock, zoned, epoch, epoch_ms or a strptime format (default: the "
        "parser's)",
        json_schema_extra={"metavar": "FORMAT"},
    )
    timezone: str = Field(
        "UTC",
        description="zone of timestamps that carry none: UTC, local, +02:00 or an IANA name",
        json_schema_extra={"metavar": "ZONE"},
    )
    types: dict[str, Literal["int", "float", "bool", "str"]] = Field(
        default_factory=dict, description="field types (YAML: {status: int, took: float})"
    )
    keep_raw: bool = Field(False, description="add the whole line as `raw` to every record")
    multiline: Literal["off", "python", "java", "go", "custom"] = Field(
        "off", description="join stack traces into one record (the follower's multiline stage)"
    )
    multiline_start: str | None = Field(
        None,
        description="custom multiline: regex of a line that starts a record",
        json_schema_extra={"metavar": "REGEX"},
    )
    output: Literal["stdout", "file"] = Field(
        "stdout", description="where records go: stdout (kubectl logs) or --output-path"
    )
    output_path: str | None = Field(
        None, description="file records are appended to", json_schema_extra={"metavar": "PATH"}
    )
    workers: str = Field(
        "auto",
        description="processes that parse and encode batches beside the one that reads and "
        "writes: auto (the CPUs this container may use, less one, at least 1), a number, "
        "or 0 to parse in the adapter's own process",
        json_schema_extra={"metavar": "N"},
    )
    check: str | None = Field(
        None,
        description="test the parser on FILE: JSON on stdout, summary on stderr, exit 1 on "
        "any failed line; then exit",
        json_schema_extra={"metavar": "FILE"},
    )

    @field_validator("parser")
    @classmethod
    def _parser_exists(cls, value: str) -> str:
        try:
            load("parser", value, default_attr="parser")
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("parser_options")
    @classmethod
    def _parser_accepts_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        parser = info.data.get("parser")
        if parser:
            try:
                loaded = load_parser(parser, value)
            except MissingParserOptions as exc:
                raise SettingError(str(exc)) from None
            except PluginError as exc:
                raise ValueError(str(exc)) from None
            own_format = getattr(loaded, "time_format", None)
            if own_format is not None:
                try:
                    TimeParser(str(own_format))
                except ValueError as exc:
                    raise SettingError(
                        f"invalid setting --parser={parser}: its time_format attribute: {exc}"
                    ) from None
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_valid(cls, value: object) -> str:
        text = str(value).strip().lower()
        if text == "auto" or (text.isascii() and text.isdigit() and int(text) <= MAX_WORKERS):
            return text if text == "auto" else str(int(text))
        raise ValueError(
            f"expected auto or a whole number of processes from 0 to {MAX_WORKERS} "
            "(0: parse in the adapter's own process)"
        )

    @field_validator("time_format")
    @classmethod
    def _time_format_known(cls, value: str | None) -> str | None:
        if value is not None:
            TimeParser(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_known(cls, value: str) -> str:
        resolve_zone(value)
        return value

    @field_validator("multiline_start")
    @classmethod
    def _regex_compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("multiline") == "custom":
                raise ValueError("--multiline custom needs --multiline-start REGEX")
            return value
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("output_path")
    @classmethod
    def _output_path_given(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("output") == "file" and not value:
            raise ValueError("--output file needs --output-path PATH")
        return value

    @field_validator("check")
    @classmethod
    def _something_to_read(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and not info.data.get("path"):
            raise ValueError("give --path (a file or glob to follow), or --check FILE")
        return value
