"""Fluent Bit's classic `fluent-bit.conf` read into log-shipper settings (a drop-in config).

`podkit log-shipper --fluent-bit-config FILE` (and the image's default, the file at
/fluent-bit/etc/fluent-bit.conf if it exists) goes through `read(path)`: each
`[INPUT] Name tail` becomes followed paths, each `[OUTPUT]` an output, `Match` is honoured
by tag, `@INCLUDE` and `@SET` work, `Parsers_File` regex parsers become the log-adapter's
`regex` parser, `DB` becomes the state dir.

A key podkit does not support is a ConfigError naming the file, line, section and key
(exit 2); harmless keys (Daemon, Log_Level, HTTP_Server, storage.*...) are accepted and
listed in one `fluent_bit_config` line at start-up, with what podkit does differently.
"""

from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from podkit.config import ConfigError, ForeignSettings, Notice

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}

# Keys accepted and ignored, by section (lower case); said once at start-up.
_IGNORED = {
    "service": {
        "daemon", "log_level", "log_file", "plugins_file", "http_server", "http_listen",
        "http_port", "health_check", "hc_errors_count", "hc_retry_failure_count", "hc_period",
        "coro_stack_size", "scheduler.cap", "scheduler.base", "json.convert_nan_to_null",
        "hot_reload", "storage.path", "storage.sync", "storage.checksum", "storage.metrics",
        "storage.backlog.mem_limit", "storage.max_chunks_up", "storage.delete_irrecoverable_chunks",
    },
    "tail": {
        "db.sync", "db.locking", "db.journal_mode", "db.compare_filename", "buffer_chunk_size",
        "path_key", "offset_key", "inotify_watcher", "storage.type", "threaded", "alias",
        "storage.pause_on_chunks_overlimit", "log_level",
    },
    "output": {"workers", "storage.total_limit_size", "log_level", "json_date_key",
               "json_date_format", "tls.debug", "net.keepalive", "net.connect_timeout"},
    "es": {"type", "suppress_type_name", "generate_id", "replace_dots", "trace_output",
           "trace_error", "current_time_index", "buffer_size"},
    "loki": {"drop_single_key"},
    "file": {"mkdir"},
}  # fmt: skip

# Fluent Bit's stock parsers (its image's parsers.conf) that podkit has as built-ins.
_KNOWN_PARSERS = {
    "nginx": "nginx",
    "apache": "apache",
    "apache2": "apache",
    "apache_error": None,
    "json": "json",
    "docker": "json",
    "syslog-rfc5424": "syslog-rfc5424",
    "syslog-rfc3164": "syslog-rfc3164",
    "syslog-rfc3164-local": "syslog-rfc3164",
    "logfmt": "logfmt",
    "cri": None,
}


@dataclass
class Item:
    key: str
    value: str
    file: str
    line: int

    @property
    def name(self) -> str:
        return self.key.lower()


@dataclass
class Section:
    kind: str
    """SERVICE, INPUT, FILTER, OUTPUT, PARSER, MULTILINE_PARSER, ... (upper case)."""
    file: str
    line: int
    items: list[Item] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        found = [i for i in self.items if i.name == key]
        return found[-1].value if found else default

    def item(self, key: str) -> Item | None:
        found = [i for i in self.items if i.name == key]
        return found[-1] if found else None

    def all(self, key: str) -> list[Item]:
        return [i for i in self.items if i.name == key]


def fail(where: Item | Section, section: str, what: str) -> ConfigError:
    if isinstance(where, Item):
        return ConfigError(f"{where.file}:{where.line} [{section}] {where.key}: {what}")
    return ConfigError(f"{where.file}:{where.line} [{section}]: {what}")


# --- the classic format --------------------------------------------------------------


def parse(path: str, env: dict[str, str] | None = None) -> list[Section]:
    """The sections of a classic config file, @INCLUDE followed and @SET/${VAR} expanded."""
    variables: dict[str, str] = {}
    sections: list[Section] = []
    _parse_file(os.path.abspath(path), variables, env if env is not None else dict(os.environ),
                sections, depth=0)  # fmt: skip
    return sections


def _parse_file(
    path: str,
    variables: dict[str, str],
    env: dict[str, str],
    sections: list[Section],
    depth: int,
) -> None:
    if depth > 16:
        raise ConfigError(f"{path}: @INCLUDE nested too deep (a loop?)")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the Fluent Bit config: {reason}") from None
    base = os.path.dirname(path)
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            word, _, rest = line.partition(" ")
            directive = word.upper()
            rest = rest.strip()
            if directive == "@INCLUDE":
                pattern = rest if os.path.isabs(rest) else os.path.join(base, rest)
                matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
                for included in matches:
                    _parse_file(included, variables, env, sections, depth + 1)
                current = sections[-1] if sections else None
                continue
            if directive == "@SET":
                name, sep, value = rest.partition("=")
                if not sep or not name.strip():
                    raise ConfigError(f"{path}:{number}: @SET needs KEY=VALUE")
                variables[name.strip()] = _expand(value.strip(), variables, env, path, number)
                continue
            raise ConfigError(f"{path}:{number}: unknown directive {word}")
        if line.startswith("[") and line.endswith("]"):
            current = Section(line[1:-1].strip().upper(), path, number)
            sections.append(current)
            continue
        if current is None:
            raise ConfigError(f"{path}:{number}: a key outside any [SECTION]: {line}")
        key, _, value = line.partition(" ")
        value = _expand(value.strip(), variables, env, path, number)
        current.items.append(Item(key.strip(), value, path, number))


def _expand(
    value: str, variables: dict[str, str], env: dict[str, str], path: str, line: int
) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in env:
            return env[name]
        raise ConfigError(f"{path}:{line}: ${{{name}}} is neither @SET nor in the environment")

    return _VAR.sub(sub, value)


def _bool(item: Item, section: str) -> bool:
    text = item.value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise fail(item, section, f"expected On or Off, got {item.value!r}")


def _number(item: Item, section: str) -> float:
    try:
        return float(item.value)
    except ValueError:
        raise fail(item, section, f"expected a number of seconds, got {item.value!r}") from None


def _port(item: Item, section: str) -> int:
    if not item.value.isdigit() or not 0 < int(item.value) < 65536:
        raise fail(item, section, f"expected a port number, got {item.value!r}")
    return int(item.value)


def _size(item: Item, section: str) -> str:
    text = item.value.strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*([kKmMgG][bB]?)?", text):
        raise fail(item, section, f"expected a size such as 5MB or 32k, got {item.value!r}")
    return text


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _tag_regex(pattern: str) -> re.Pattern[str]:
    """Fluent Bit's Match: `*` matches anything, everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _globs_meet(a: str, b: str) -> bool:
    """Whether some tag matches both `*`-patterns (a tail Tag with `*` and a Match)."""

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return meet(i + 1, j) or (j < len(b) and meet(i, j + 1))
        if j < len(b) and b[j] == "*":
            return meet(i, j + 1) or (i < len(a) and meet(i + 1, j))
        return i < len(a) and j < len(b) and a[i] == b[j] and meet(i + 1, j + 1)

    return meet(0, 0)


# --- the mapping -------------------------------------------------------------------


class _Reader:
    def __init__(self, path: str, sections: list[Section]) -> None:
        self.path = path
        self.sections = sections
        self.settings: dict[str, Any] = {}
        self.ignored: list[str] = []
        self.differs: list[str] = []
        self.parsers: dict[str, Section] = {}

    def ignore(self, item: Item, section: str) -> None:
        self.ignored.append(f"{os.path.basename(item.file)}:{item.line} [{section}] {item.key}")

    def differ(self, item: Item, section: str, what: str) -> None:
        where = f"{os.path.basename(item.file)}:{item.line} [{section}] {item.key}"
        self.differs.append(f"{where}: {what}")

    def check_keys(self, section: Section, label: str, known: set[str], ignored: set[str]) -> None:
        for item in section.items:
            if item.name in known:
                continue
            if item.name in ignored:
                self.ignore(item, label)
                continue
            raise fail(item, label, "not supported by podkit log-shipper")

    def run(self) -> ForeignSettings:
        flush: float | None = None
        for s in self.sections:
            if s.kind == "PARSER":
                self.parser_section(s)
        for s in self.sections:
            if s.kind == "SERVICE":
                flush = self.service(s) if flush is None else flush
        inputs = [s for s in self.sections if s.kind == "INPUT"]
        outputs = [s for s in self.sections if s.kind == "OUTPUT"]
        for s in self.sections:
            if s.kind in ("SERVICE", "INPUT", "OUTPUT", "PARSER"):
                continue
            name = s.item("name")
            raise fail(name or s, s.kind, f"[{s.kind}] sections are not supported by podkit")
        if not inputs:
            raise ConfigError(f"{self.path}: no [INPUT] section (podkit needs Name tail)")
        tags = [self.input(s, i) for i, s in enumerate(inputs)]
        self.route(inputs, tags, outputs, flush)
        notices = []
        if self.ignored or self.differs:
            fields: dict[str, Any] = {"path": self.path, "ignored": self.ignored}
            if self.differs:
                fields["differs"] = self.differs
            notices.append(Notice("fluent_bit_config", fields))
        return ForeignSettings(self.settings, notices)

    # --- [SERVICE] and parsers -------------------------------------------------------

    def service(self, s: Section) -> float | None:
        self.check_keys(s, "SERVICE", {"flush", "grace", "parsers_file"}, _IGNORED["service"])
        flush = None
        if (item := s.item("flush")) is not None:
            flush = _number(item, "SERVICE")
        if (item := s.item("grace")) is not None:
            self.settings["shutdown_timeout"] = _number(item, "SERVICE")
        for item in s.all("parsers_file"):
            path = item.value if os.path.isabs(item.value) else os.path.join(
                os.path.dirname(self.path), item.value
            )  # fmt: skip
            if not os.path.isfile(path):
                self.differ(item, "SERVICE", f"{path} not found: only built-in parser names work")
                continue
            for section in parse(path):
                if section.kind == "PARSER":
                    self.parser_section(section)
                elif section.kind != "MULTILINE_PARSER":  # only used if named: checked there
                    raise fail(section, section.kind, "a parsers file holds [PARSER] sections")
        return flush

    def parser_section(self, s: Section) -> None:
        name = s.get("name")
        if not name:
            raise fail(s, "PARSER", "a [PARSER] needs a Name")
        self.parsers[name] = s

    def parser(self, item: Item) -> tuple[str, dict[str, Any]]:
        """The podkit parser (and options) for `Parser NAME` of an input."""
        section = self.parsers.get(item.value)
        if section is None:
            if item.value not in _KNOWN_PARSERS:
                raise fail(item, "INPUT", f"parser {item.value!r} is not in a Parsers_File")
            return _KNOWN_PARSERS[item.value] or "", {}
        fmt = (section.get("format") or "").lower()
        where = f"PARSER {item.value}"
        for key in section.items:
            if key.name in ("time_key", "time_format", "time_keep", "types", "time_offset"):
                self.differ(key, where, "podkit ships the matched text of every field as it is")
            elif key.name not in ("name", "format", "regex", "skip_empty_values"):
                raise fail(key, where, "not supported by podkit log-shipper")
        if fmt == "regex":
            regex = section.item("regex")
            if regex is None:
                raise fail(section, where, "Format regex needs a Regex")
            # Onigmo's (?<name>...) is Python's (?P<name>...); lookbehinds stay as they are.
            pattern = re.sub(r"\(\?<(?![=!])", "(?P<", regex.value)
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise fail(
                    regex, where, f"not a regular expression podkit can use: {exc}"
                ) from None
            if not compiled.groupindex:
                raise fail(regex, where, "the regex has no named group (?<name>...)")
            return "regex", {"pattern": pattern}
        if fmt in ("json", "logfmt"):
            return fmt, {}
        raise fail(
            section.item("format") or section, where, f"Format {fmt or '(none)'} is not supported"
        )

    # --- [INPUT] ---------------------------------------------------------------------

    def input(self, s: Section, index: int) -> str:
        name = s.item("name")
        if name is None or name.value.lower() != "tail":
            raise fail(name or s, "INPUT", "podkit log-shipper follows files only: Name tail")
        known = {
            "name", "tag", "path", "exclude_path", "refresh_interval", "read_from_head", "db",
            "mem_buf_limit", "skip_long_lines", "buffer_max_size", "rotate_wait",
            "multiline.parser", "parser", "key",
        }  # fmt: skip
        self.check_keys(s, "INPUT", known, _IGNORED["tail"])
        put = self.settings
        path = s.item("path")
        if path is None:
            raise fail(s, "INPUT", "Name tail needs a Path")
        put.setdefault("path", []).extend(_list(path.value))
        if (item := s.item("exclude_path")) is not None:
            put.setdefault("exclude", []).extend(_list(item.value))
        if (item := s.item("refresh_interval")) is not None:
            put["refresh_interval"] = _number(item, "INPUT")
        if (item := s.item("rotate_wait")) is not None:
            put["rotate_wait"] = _number(item, "INPUT")
        item = s.item("read_from_head")
        # Fluent Bit's default is to start files found at start-up at their end.
        put["read_from"] = "head" if item is not None and _bool(item, "INPUT") else "tail"
        if (item := s.item("db")) is not None:
            state_dir = os.path.dirname(os.path.abspath(item.value))
            if put.get("state_dir", state_dir) != state_dir:
                raise fail(item, "INPUT", "podkit keeps one state dir: every DB in one directory")
            put["state_dir"] = state_dir
            self.differ(item, "INPUT", f"checkpoints in {state_dir}/follow-checkpoints.json")
        if (item := s.item("mem_buf_limit")) is not None:
            put["buffer_bytes"] = _size(item, "INPUT")
        if (item := s.item("buffer_max_size")) is not None:
            put["max_line_bytes"] = _size(item, "INPUT")
        if (item := s.item("skip_long_lines")) is not None:
            _bool(item, "INPUT")
            self.differ(item, "INPUT", "a longer line is cut (marked, counted), not skipped")
        if (item := s.item("key")) is not None and item.value != "log":
            raise fail(item, "INPUT", "podkit's records keep the line in `message`")
        self.input_parsers(s)
        return s.get("tag") or f"tail.{index}"

    def input_parsers(self, s: Section) -> None:
        put = self.settings
        if (item := s.item("parser")) is not None:
            parser, options = self.parser(item)
            if not parser:
                raise fail(item, "INPUT", f"parser {item.value!r} has no podkit equivalent")
            if put.get("parser", parser) != parser or put.get("parser_options", options) != options:
                raise fail(item, "INPUT", "podkit uses one parser for every followed file")
            put["parser"] = parser
            if options:
                put["parser_options"] = options
        if (item := s.item("multiline.parser")) is not None:
            modes = _list(item.value)
            supported = [m for m in modes if m in ("python", "java", "go")]
            if len(modes) != 1 or not supported:
                raise fail(
                    item,
                    "INPUT",
                    f"{item.value}: podkit log-shipper joins python, java or go stack traces "
                    "(one of them); for cri/docker container logs use podkit log-adapter",
                )
            if put.get("multiline", supported[0]) != supported[0]:
                raise fail(item, "INPUT", "podkit uses one multiline mode for every file")
            put["multiline"] = supported[0]

    # --- [OUTPUT] and routing --------------------------------------------------------

    def route(
        self, inputs: list[Section], tags: list[str], outputs: list[Section], flush: float | None
    ) -> None:
        built: list[dict[str, Any]] = []
        used = [False] * len(inputs)
        for s in outputs:
            covered = self.matched(s, tags)
            if not any(covered):
                item = s.item("match") or s.item("match_regex") or s
                if isinstance(item, Item):
                    self.differ(item, "OUTPUT", "matches no input: this output is left out")
                continue
            if not all(covered):
                where = s.item("match") or s.item("match_regex") or s
                raise fail(
                    where,
                    "OUTPUT",
                    "matches only some inputs; podkit ships every followed file to every "
                    "output (split the pod's shippers, or Match them all)",
                )
            used = [True] * len(inputs)
            out = self.output(s)
            if flush is not None:
                out["batch_timeout"] = flush
            built.append(out)
        if not built:
            raise ConfigError(f"{self.path}: no [OUTPUT] matches the inputs' tags")
        if not all(used):  # every input is matched by every output kept, or by none
            raise ConfigError(f"{self.path}: an [INPUT] is matched by no [OUTPUT]")
        for kind in {o["type"] for o in built}:
            same = [o for o in built if o["type"] == kind and "name" not in o]
            if len(same) > 1:
                for n, out in enumerate(same):
                    out["name"] = f"{kind}-{n}"
        self.settings["outputs"] = built

    def matched(self, s: Section, tags: list[str]) -> list[bool]:
        match, regex = s.item("match"), s.item("match_regex")
        if match is None and regex is None:
            return [False] * len(tags)  # Fluent Bit routes nothing to it either
        covered = []
        for tag in tags:
            if match is not None:
                pattern = _tag_regex(match.value)
                full = pattern.fullmatch(tag) is not None  # a `*` in the tag stands for any
                some = full or _globs_meet(tag, match.value)
            else:
                assert regex is not None
                try:
                    compiled = re.compile(regex.value)
                except re.error as exc:
                    raise fail(regex, "OUTPUT", f"not a regular expression: {exc}") from None
                full = compiled.fullmatch(tag) is not None
                some = full
            if some and not full:
                raise fail(match or s, "OUTPUT", f"matches some of the files tagged {tag} only")
            covered.append(full)
        return covered

    def output(self, s: Section) -> dict[str, Any]:
        name_item = s.item("name")
        if name_item is None:
            raise fail(s, "OUTPUT", "an [OUTPUT] needs a Name")
        kind = name_item.value.lower()
        builders: dict[str, Callable[[Section], dict[str, Any]]] = {
            "stdout": self.out_stdout,
            "file": self.out_file,
            "http": self.out_http,
            "es": self.out_es,
            "loki": self.out_loki,
        }
        builder = builders.get(kind)
        if builder is None:
            raise fail(name_item, "OUTPUT", f"output {name_item.value!r} is not supported "
                       "(stdout, file, http, es, loki)")  # fmt: skip
        out = builder(s)
        if (item := s.item("alias")) is not None:
            out["name"] = item.value
        if (item := s.item("retry_limit")) is not None:
            value = item.value.lower()
            if value in ("false", "no_limits", "no_retries"):
                out["retry_max_attempts"] = 0 if value != "no_retries" else 1
            elif value.isdigit():
                out["retry_max_attempts"] = int(value) + 1
            else:
                raise fail(item, "OUTPUT", f"expected a number, False or no_limits: {item.value!r}")
        return out

    _COMMON = {"name", "match", "match_regex", "alias", "retry_limit"}
    _TLS = {"tls", "tls.verify", "tls.ca_file"}

    def out_stdout(self, s: Section) -> dict[str, Any]:
        self.check_keys(s, "OUTPUT", self._COMMON | {"format"}, _IGNORED["output"])
        item = s.item("format")
        if item is None or item.value.lower() != "json_lines":
            where = item or s.item("name")
            assert where is not None
            self.differ(where, "OUTPUT", "podkit's stdout writes one JSON record per line")
        return {"type": "stdout"}

    def out_file(self, s: Section) -> dict[str, Any]:
        known = self._COMMON | {"path", "file", "format"}
        self.check_keys(s, "OUTPUT", known, _IGNORED["output"] | _IGNORED["file"])
        name = s.get("file")
        if not name:
            raise fail(s.item("name") or s, "OUTPUT", "set File: podkit writes one file")
        directory = s.get("path") or "."
        if (item := s.item("format")) is not None and item.value.lower() not in ("json", "plain"):
            raise fail(item, "OUTPUT", "podkit's file output writes JSON lines (Format plain)")
        where = s.item("name")
        assert where is not None
        self.differ(where, "OUTPUT", "podkit's file output writes one JSON record per line")
        return {"type": "file", "path": os.path.join(directory, name)}

    def _http_base(
        self, s: Section, default_port: int, extra: set[str], ignored: set[str]
    ) -> dict[str, Any]:
        known = self._COMMON | self._TLS | {"host", "port", "http_user", "http_passwd"} | extra
        self.check_keys(s, "OUTPUT", known, _IGNORED["output"] | ignored)
        tls = False
        out: dict[str, Any] = {}
        if (item := s.item("tls")) is not None:
            tls = _bool(item, "OUTPUT")
        if (item := s.item("tls.verify")) is not None:
            out["tls_verify"] = _bool(item, "OUTPUT")
        if (item := s.item("tls.ca_file")) is not None:
            out["ca_file"] = item.value
        host = s.get("host") or "127.0.0.1"
        port_item = s.item("port")
        port = _port(port_item, "OUTPUT") if port_item is not None else default_port
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        out["url"] = f"{'https' if tls else 'http'}://{host}:{port}"
        if (item := s.item("http_user")) is not None:
            out["username"] = item.value
        if (item := s.item("http_passwd")) is not None:
            # Kept as a secret from here on (never logged); a file is podkit's own way.
            out["password_file"] = SecretStr(item.value)
            self.differ(item, "OUTPUT", "prefer a password file (--http-password-file)")
        return out

    def out_http(self, s: Section) -> dict[str, Any]:
        out = self._http_base(s, 80, {"uri", "format", "header", "compress"}, set())
        out["type"] = "http"
        out["url"] += s.get("uri") or "/"
        fmt = s.item("format")
        if fmt is None or fmt.value.lower() != "json_lines":
            where = fmt or s.item("name")
            assert where is not None
            raise fail(where, "OUTPUT", "podkit's http output sends NDJSON: set Format json_lines")
        headers = []
        for header in s.all("header"):
            key, _, value = header.value.partition(" ")
            if not value.strip():
                raise fail(header, "OUTPUT", "expected Header NAME VALUE")
            headers.append(f"{key}: {value.strip()}")
        if headers:
            out["header"] = headers
        if (item := s.item("compress")) is not None:
            if item.value.lower() != "gzip":
                raise fail(item, "OUTPUT", "only gzip")
            out["gzip"] = True
        return out

    def out_es(self, s: Section) -> dict[str, Any]:
        extra = {"index", "path", "pipeline", "logstash_format"}
        out = self._http_base(s, 9200, extra, _IGNORED["es"])
        out["type"] = "elasticsearch"
        out["url"] += (s.get("path") or "").rstrip("/")
        out["index"] = s.get("index") or "fluent-bit"
        if (item := s.item("pipeline")) is not None:
            out["pipeline"] = item.value
        if (item := s.item("logstash_format")) is not None and _bool(item, "OUTPUT"):
            raise fail(item, "OUTPUT", "daily logstash-* indices are not supported; set Index")
        return out

    def out_loki(self, s: Section) -> dict[str, Any]:
        extra = {"uri", "labels", "tenant_id", "line_format"}
        out = self._http_base(s, 3100, extra, _IGNORED["loki"])
        out["type"] = "loki"
        out["url"] += s.get("uri") or "/loki/api/v1/push"
        labels = []
        labels_item = s.item("labels")
        text = labels_item.value if labels_item is not None else "job=fluent-bit"
        for label in _list(text):
            name, sep, value = label.partition("=")
            if not sep or "$" in label:
                where: Item | Section = labels_item or s
                raise fail(where, "OUTPUT", f"{label!r}: podkit's labels are NAME=VALUE constants")
            labels.append(f"{name.strip()}={value.strip()}")
        out["label"] = labels
        if (item := s.item("tenant_id")) is not None:
            out["tenant"] = item.value
        if (item := s.item("line_format")) is not None:
            if item.value.lower() != "json":
                raise fail(item, "OUTPUT", "podkit sends line_format json (the record)")
            out["line_format"] = "json"
        return out


def read(path: str) -> ForeignSettings:
    """`--fluent-bit-config FILE` -> log-shipper settings (ForeignConfig reader)."""
    path = os.path.abspath(path)
    return _Reader(path, parse(path)).run()
