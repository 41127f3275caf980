"""log-shipper settings: the follower's, the record metadata, and the outputs.

Outputs come from flags (`--output http --http-url URL ...`, `--output` repeated for
several outputs of different types, each reading its own prefixed flags) or from the YAML
config (`outputs:` a list of mappings, each with `type:` and that output's keys, batching
and retry included). Either way every output's options are validated here, so a mistake
exits 2 with one line naming the flag or the YAML key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from podkit import plugins
from podkit.config import ByteSize, Duration, ForeignConfig, SecretFile, problem_words
from podkit.follow.settings import FollowSettings

# Flag prefix of each built-in output's own settings: --http-url -> http output's `url`.
FLAG_PREFIXES = {
    "file": "file_",
    "http": "http_",
    "loki": "loki_",
    "elasticsearch": "es_",
    "redis": "redis_",
    "postgres": "postgres_",
}
# Settings every output has; a flag sets them for the single output.
COMMON_OUTPUT_FLAGS = (
    "batch_max_records",
    "batch_max_bytes",
    "batch_timeout",
    "buffer_max_bytes",
    "retry_initial",
    "retry_max",
    "retry_max_attempts",
    "request_timeout",
)

if TYPE_CHECKING:
    from podkit.follow import MultilineConfig
    from podkit.sidecars.log_shipper.outputs.base import Output


class OutputEntry(BaseModel):
    """One item of `outputs:`; its keys are checked by that output's own options model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


class LogShipperSettings(FollowSettings):
    buffer_bytes: ByteSize = Field(
        4 << 20,
        ge=4096,
        description="lines read but not yet delivered by every output; reading pauses here "
        "(bounds memory: the classic pod limits the shipper to 128Mi)",
    )
    fluent_bit_config: Annotated[
        str | None,
        ForeignConfig(
            reader="podkit.sidecars.log_shipper.fluentbit_config:read",
            default_path="/fluent-bit/etc/fluent-bit.conf",
        ),
    ] = Field(
        None,
        description="read this Fluent Bit classic config (fluent-bit.conf: [INPUT] tail, "
        "[OUTPUT] stdout/file/http/es/loki, @INCLUDE, Parsers_File); default: "
        "/fluent-bit/etc/fluent-bit.conf if it exists. podkit's own settings win over it",
        json_schema_extra={"metavar": "FILE"},
    )
    multiline: Literal["off", "python", "java", "go"] = Field(
        "off", description="join stack traces into one record (the follower's multiline stage)"
    )
    parser: str | None = Field(
        None,
        description="parse each line with this parser (nginx, syslog, logfmt, json, ... any "
        "podkit.parsers plugin, module:attr or a .py file) and ship its fields too",
        json_schema_extra={"metavar": "NAME"},
    )
    parser_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the parser (YAML: pattern for regex, ...)"
    )
    ready_timeout: Duration = Field(
        60.0, description="/readyz fails once an output has owed records this long without success"
    )
    pod_name: str | None = Field(None, description="record metadata; default: env POD_NAME")
    pod_namespace: str | None = Field(
        None, description="record metadata; default: env POD_NAMESPACE"
    )
    node_name: str | None = Field(None, description="record metadata; default: env NODE_NAME")

    output: list[str] = Field(
        default_factory=lambda: ["stdout"],
        description="output when `outputs:` is not in the config: stdout, file, http, loki, "
        "elasticsearch, redis, postgres, or a plugin; repeat it for several outputs of "
        "different types, each set by its own prefixed flags (--file-path, --http-url...)",
        json_schema_extra={"metavar": "NAME"},
    )
    outputs: list[OutputEntry] = Field(
        default_factory=list,
        description="several outputs (YAML): a list of {type: NAME, ...options}",
    )

    # Batching and retry of the flag outputs, each of them (YAML outputs set their own).
    batch_max_records: int | None = Field(None, ge=1, description="send once this many wait")
    batch_max_bytes: ByteSize | None = Field(None, description="send once this many bytes wait")
    batch_timeout: Duration | None = Field(None, description="send a partial batch after this")
    buffer_max_bytes: ByteSize | None = Field(
        None, description="bytes queued per output before reading pauses"
    )
    retry_initial: Duration | None = Field(None, description="first retry delay (then doubles)")
    retry_max: Duration | None = Field(None, description="longest retry delay")
    retry_max_attempts: int | None = Field(
        None, ge=0, description="give a batch up after this many attempts (0 = never, default)"
    )
    request_timeout: Duration | None = Field(None, description="timeout of one send")

    # --output file
    file_path: str | None = Field(None, description="file output: path to append JSON lines to")
    file_fsync: bool | None = Field(None, description="file output: fsync every batch")
    # --output http
    http_url: str | None = Field(None, description="http output: URL to POST NDJSON to")
    http_header: list[str] = Field(
        default_factory=list, description='http output: extra header "Name: value"'
    )
    http_gzip: bool | None = Field(None, description="http output: gzip bodies")
    http_bearer_token_file: SecretFile = Field(None, description="http output: bearer token file")
    http_username: str | None = Field(None, description="http output: basic auth user")
    http_password_file: SecretFile = Field(
        None, description="http output: basic auth password file"
    )
    # --output loki
    loki_url: str | None = Field(None, description="loki output: base URL or push URL")
    loki_label: list[str] = Field(
        default_factory=list, description="loki output: stream label NAME=VALUE"
    )
    loki_tenant: str | None = Field(None, description="loki output: X-Scope-OrgID")
    loki_line_format: Literal["raw", "json"] | None = Field(
        None, description="loki output: raw line or the whole JSON record"
    )
    # --output elasticsearch
    es_url: str | None = Field(None, description="elasticsearch output: base URL")
    es_index: str | None = Field(None, description="elasticsearch output: index")
    es_username: str | None = Field(None, description="elasticsearch output: basic auth user")
    es_password_file: SecretFile = Field(None, description="elasticsearch output: password file")
    es_api_key_file: SecretFile = Field(None, description="elasticsearch output: API key file")
    # --output redis
    redis_url: str | None = Field(None, description="redis output: redis:// URL")
    redis_stream: str | None = Field(None, description="redis output: stream key")
    redis_maxlen: int | None = Field(None, ge=0, description="redis output: MAXLEN ~ cap")
    redis_password_file: SecretFile = Field(None, description="redis output: password file")
    # --output postgres
    postgres_dsn: str | None = Field(None, description="postgres output: postgresql:// URI")
    postgres_table: str | None = Field(None, description="postgres output: table")
    postgres_password_file: SecretFile = Field(None, description="postgres output: password file")

    _output_specs: list[tuple[type, Any]] = PrivateAttr(default_factory=list)
    _parser: Any = PrivateAttr(None)

    def multiline_config(self) -> MultilineConfig | None:
        """The follower's multiline stage (None: one record per line)."""
        if self.multiline == "off":
            return None
        from podkit.follow import MultilineConfig

        return MultilineConfig(mode=self.multiline, flush_timeout=self.flush_timeout)

    @property
    def loaded_parser(self) -> Any:
        """The --parser, loaded and configured (None without one)."""
        return self._parser

    @property
    def output_specs(self) -> list[tuple[type, Any]]:
        """(Output class, validated options) for every configured output."""
        return self._output_specs

    @field_validator("output", mode="before")
    @classmethod
    def _output_names(cls, value: Any) -> Any:
        # YAML `output: http` and comma lists (`PODKIT_OUTPUT=stdout,file`) read as a list.
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            return value  # pydantic says what is wrong with it
        return [name.strip() for item in items for name in item.split(",") if name.strip()]

    @model_validator(mode="after")
    def _load_parser(self) -> LogShipperSettings:
        if self.parser is None:
            if self.parser_options:
                raise _error(("parser_options",), "...", "set --parser too")
            return self
        from podkit.parsers import ParserLoadError, load_parser

        try:
            parser = load_parser(self.parser, self.parser_options)
        except ParserLoadError as exc:
            raise _error(("parser",), self.parser, str(exc)) from None
        if getattr(parser, "stateful", False):
            # Stateful parsers (CRI partial lines) join lines into one record; the
            # shipper keeps one record per line so every line's checkpoint is exact.
            raise _error(("parser",), self.parser, "joins lines (stateful); use log-adapter for it")
        self._parser = parser
        return self

    @model_validator(mode="after")
    def _build_outputs(self) -> LogShipperSettings:
        if self.outputs:
            entries: list[tuple[tuple[str | int, ...], dict[str, Any], dict[str, str] | None]] = [
                (("outputs", i), entry.model_dump(), None) for i, entry in enumerate(self.outputs)
            ]
        else:
            entries = [
                (("output",), self._flag_output(kind), self._flag_map(kind))
                for kind in self._flag_outputs()
            ]
        names: set[str] = set()
        for loc, raw, flag_map in entries:
            cls = self._load_output(loc, raw)
            try:
                options = cls.Options.model_validate(raw)
            except ValidationError as exc:
                raise _relocated(exc, loc, flag_map) from None
            name = options.name or options.type
            if name in names:
                raise _error((*loc, "name"), name, "two outputs have this name; set `name:`")
            names.add(name)
            self._output_specs.append((cls, options))
        return self

    def _flag_outputs(self) -> list[str]:
        """The --output types, once each; every prefixed flag set must belong to one."""
        kinds = self.output
        if not kinds:
            raise _error(("output",), "", "names no output; give one (stdout, file, http...)")
        for kind in kinds:
            if kinds.count(kind) > 1:
                # Its flags (--file-path...) could not say which of the two they are for.
                raise _error(
                    ("output",),
                    ",".join(kinds),
                    f"names {kind} twice; two outputs of one type need `outputs:` in the "
                    "--config file, each with its own `name:`",
                )
        for field in type(self).model_fields:
            for other, prefix in FLAG_PREFIXES.items():
                if not field.startswith(prefix) or other in kinds:
                    continue
                value = getattr(self, field)
                if value not in (None, []):
                    raise _error(
                        (field,),
                        "********" if isinstance(value, SecretStr) else value,
                        f"belongs to the {other} output, but --output is {','.join(kinds)}",
                    )
        return kinds

    def _flag_output(self, kind: str) -> dict[str, Any]:
        """One --output's options: the common flags, and the flags with its own prefix."""
        raw: dict[str, Any] = {"type": kind}
        for field in COMMON_OUTPUT_FLAGS:
            value = getattr(self, field)
            if value is not None:
                raw[field] = value
        prefix = FLAG_PREFIXES.get(kind)
        if prefix:
            for field in type(self).model_fields:
                value = getattr(self, field)
                if field.startswith(prefix) and value not in (None, []):
                    raw[field.removeprefix(prefix)] = value
        return raw

    def _flag_map(self, output: str) -> dict[str, str]:
        prefix = FLAG_PREFIXES.get(output, "")
        mapping = {field: field for field in COMMON_OUTPUT_FLAGS}
        for field in type(self).model_fields:
            if prefix and field.startswith(prefix):
                mapping[field.removeprefix(prefix)] = field
        mapping["type"] = "output"
        return mapping

    @staticmethod
    def _load_output(loc: tuple[Any, ...], raw: dict[str, Any]) -> type[Output]:
        from podkit.sidecars.log_shipper.outputs.base import Output as OutputClass

        kind = raw.get("type")
        if not isinstance(kind, str) or not kind:
            raise _error((*loc, "type"), kind, "each output needs `type:` (stdout, file, http...)")
        try:
            cls = plugins.load("output", kind)
        except plugins.PluginError as exc:
            raise _error(loc if loc == ("output",) else (*loc, "type"), kind, str(exc)) from None
        if not (isinstance(cls, type) and issubclass(cls, OutputClass)):
            raise _error(loc, kind, "is not an output class (subclass Output)")
        return cls


def _error(loc: tuple[Any, ...], value: Any, message: str) -> ValidationError:
    detail = InitErrorDetails(
        type=PydanticCustomError("value_error", message.replace("{", "(").replace("}", ")")),
        loc=loc,
        input=value,
    )
    return ValidationError.from_exception_data("LogShipperSettings", [detail])


def _relocated(
    exc: ValidationError, loc: tuple[Any, ...], flag_map: dict[str, str] | None
) -> ValidationError:
    """An output's own validation error, located at the flag or YAML key the user wrote."""
    first = exc.errors(include_url=False)[0]
    inner = tuple(first.get("loc") or ())
    if flag_map is not None:
        key = str(inner[0]) if inner else "output"
        field = flag_map.get(key)
        where: tuple[Any, ...] = (field, *inner[1:]) if field else ("output", *inner)
        if first["type"] == "missing" and field and len(where) == 1:
            detail = InitErrorDetails(type="missing", loc=where, input=None)
            return ValidationError.from_exception_data("LogShipperSettings", [detail])
    else:
        where = (*loc, *inner)
    message = problem_words(first)
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        message = f"unknown key {inner[-1]!r} for this output"
    elif first["type"] == "missing":
        message, value = "required key missing", "(missing)"
    return _error(where, value, message)
