"""PgBouncer's `pgbouncer.ini` read into pg-ambassador settings (a drop-in config).

`podkit pg-ambassador --pgbouncer-config FILE` (and, in the image, the file at
/etc/pgbouncer/pgbouncer.ini if it exists) goes through `read(path)`. The syntax is
PgBouncer 1.25's (lib/usual/cfparser.c, src/loader.c): `[section]`, `key = value` to the
end of the line, comment lines starting with `;` or `#` (not inside a line), keys of
`A-Za-z0-9_.-*` or quoted (`'my db'`, or `"my db"` as doc/config.md says), `%include
FILE` up to 10 deep; [databases] and [users] values are connection strings, `key=value`
separated by spaces, a value quoted in `'...'` with `''` for a quote.

[pgbouncer] keys map to the settings of the pgbouncer image's `PGBOUNCER_<KEY>` env
(settings.py decides which podkit honours, refuses or ignores: one table for both
spellings); [databases] becomes `databases`, [users] `users`. PgBouncer's own defaults
apply where it differs from podkit's and clients would notice: listen port 6432, pool_mode
session, auth_type md5. A key podkit does not support is a ConfigError naming the file,
line and key (exit 2); harmless ones are listed in one `pgbouncer_config` line at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from podkit.config import ConfigError, ForeignSettings, Notice, problem_words
from podkit.naming import Alias

MAX_INCLUDE = 10  # PgBouncer's nesting limit
SECTIONS = ("pgbouncer", "databases", "users", "peers")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-*")
_BLANK = " \t"


@dataclass(frozen=True)
class IniLine:
    """One `key = value` line."""

    section: str
    key: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} [{self.section}] {self.key}"

    def error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: {what}")


# --- the file format --------------------------------------------------------------------


def parse(path: str) -> tuple[list[IniLine], set[str]]:
    """Every `key = value` of `path` in order, %include followed; and the sections seen."""
    entries: list[IniLine] = []
    section: list[str | None] = [None]
    seen: set[str] = set()
    _parse_file(path, entries, section, seen, depth=0, where="")
    return entries, seen


def _read(path: str, where: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"{where}cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError(f"{path}:{line}: a NUL byte")
    return text


def _parse_file(
    path: str,
    entries: list[IniLine],
    section: list[str | None],
    seen: set[str],
    depth: int,
    where: str,
) -> None:
    """Read `path` into `entries`; `section` (a one-item list) carries the current section
    across %include, as PgBouncer's parser does."""
    text = _read(path, where)
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()  # isspace: \r of CRLF files too
        while line:
            line = _parse_line(path, number, line, entries, section, seen, depth)


def _parse_line(
    path: str,
    number: int,
    line: str,
    entries: list[IniLine],
    section: list[str | None],
    seen: set[str],
    depth: int,
) -> str:
    """Take one statement off the front of `line`; return what is left of the line (PgBouncer
    reads `[pgbouncer] key = value` on one line as two statements)."""
    here = f"{path}:{number}"
    if line.startswith("%include") and line[8:9] in (" ", "\t"):
        if depth >= MAX_INCLUDE:
            raise ConfigError(f"{here}: %include nested more than {MAX_INCLUDE} deep (a loop?)")
        name = line[8:].strip()
        included = _include_path(name, path)
        _parse_file(included, entries, section, seen, depth + 1, f"{here}: %include: ")
        return ""
    if line[0] in "#;":
        return ""
    if line[0] == "[":
        end = line.find("]")
        if end < 0:
            raise ConfigError(f"{here}: syntax error: a section name without ']'")
        name = line[1:end]
        if name not in SECTIONS:
            raise ConfigError(f"{here}: unknown section [{name}] (PgBouncer has "
                              f"{', '.join(f'[{s}]' for s in SECTIONS)})")  # fmt: skip
        section[0] = name
        seen.add(name)
        return line[end + 1 :].lstrip()
    key, rest = _key(line, here)
    rest = rest.lstrip(_BLANK)
    if not rest.startswith("="):
        # the key only: the rest of a broken line may be a connection string's password
        raise ConfigError(f"{here}: syntax error: expected '=' after {_show(key)}")
    if section[0] is None:
        raise ConfigError(f"{here}: {key}: a key before any [section]")
    value = rest[1:].strip()
    entries.append(IniLine(section[0], key, value, path, number))
    return ""


def _key(line: str, here: str) -> tuple[str, str]:
    """The key at the start of `line` (bare or quoted) and the rest of the line."""
    quote = line[0]
    if quote in "'\"":
        # 'name' as PgBouncer's parser reads it; "name" with "" inside, as its docs say
        pos, chars = 1, []
        while True:
            end = line.find(quote, pos)
            if end < 0:
                raise ConfigError(f"{here}: syntax error: unterminated quoted key")
            chars.append(line[pos:end])
            if quote == '"' and line.startswith('"', end + 1):
                chars.append('"')
                pos = end + 2
                continue
            key = "".join(chars)
            if not key:
                raise ConfigError(f"{here}: syntax error: an empty quoted key")
            return key, line[end + 1 :]
    end = 0
    while end < len(line) and line[end] in _KEY_CHARS:
        end += 1
    if end == 0:
        raise ConfigError(f"{here}: syntax error: a key cannot start with {_show(line[0])}")
    return line[:end], line[end:]


def _include_path(name: str, including: str) -> str:
    """PgBouncer opens a relative %include name from its working directory; podkit does
    too, and when nothing is there, looks beside the including file (a ConfigMap's
    files are mounted together, wherever the working directory is)."""
    if os.path.isabs(name) or os.path.exists(name):
        return name
    beside = os.path.join(os.path.dirname(including), name)
    return beside if os.path.exists(beside) else name


def _show(text: str) -> str:
    text = text if len(text) <= 60 else text[:60] + "..."
    return repr(text)


def connection_string(entry: IniLine) -> Iterator[tuple[str, str]]:
    """The `key=value` pairs of a [databases] or [users] value (src/loader.c's
    cstr_get_pair): spaces between pairs, `'quoted values'` with `''` for a quote, no
    empty values."""
    text = entry.value
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return
        start = pos
        while pos < n and text[pos] not in "= ":
            pos += 1
        key = text[start:pos]
        while pos < n and text[pos].isspace():
            pos += 1
        if not key or pos >= n or text[pos] != "=":
            token = key or text[start : start + 1]
            raise entry.error(f"syntax error in the connection string at {_show(token)}")
        pos += 1
        while pos < n and text[pos].isspace():
            pos += 1
        if pos < n and text[pos] == "'":
            pos += 1
            chars = []
            while True:
                end = text.find("'", pos)
                if end < 0:
                    raise entry.error(f"unterminated quote in the value of {key}")
                chars.append(text[pos:end])
                if text.startswith("'", end + 1):
                    chars.append("'")
                    pos = end + 2
                    continue
                pos = end + 1
                break
            value = "".join(chars)
        else:
            start = pos
            while pos < n and text[pos] != " ":
                pos += 1
            value = text[start:pos]
        if not value:
            raise entry.error(f"{key}: an empty value")
        yield key, value


# --- what each key means to podkit --------------------------------------------------------

# [pgbouncer] keys whose env spelling settings.py refuses, but which are harmless here:
# in a config file they are the defaults of the file's origin rather than asked for.
_HARMLESS = {
    "unix_socket_dir": "podkit listens on TCP only (--listen)",
    "unix_socket_mode": "podkit listens on TCP only (--listen)",
    "unix_socket_group": "podkit listens on TCP only (--listen)",
    "user": "podkit runs as the image's user",
    "conffile": "this file is --pgbouncer-config",
    "service_name": "ignored",
    "ignore_startup_parameters": "podkit passes every startup parameter on to the server",
    "track_extra_parameters": "podkit tracks every parameter the server reports",
}
_NOT_SHARED = {
    "auth_hba_file", "auth_ident_file", "auth_user", "auth_query", "auth_dbname",
    "auth_ldap_options", "scram_iterations",
}  # fmt: skip
# PgBouncer's defaults that differ from podkit's and that clients would notice.
_PGBOUNCER_DEFAULTS = {"listen_port": "6432", "pool_mode": "session", "auth_type": "md5"}
# [databases] keys that must keep PgBouncer's harmless value.
_DB_REFUSED: dict[str, tuple[str | None, str]] = {
    "max_db_connections": ("0", "no per-database connection limit"),
    "max_db_client_connections": ("0", "no per-database client limit"),
    "auth_user": (None, "no auth_query login: use the auth_file"),
    "auth_query": (None, "no auth_query login: use the auth_file"),
    "auth_dbname": (None, "no auth_query login: use the auth_file"),
    "client_encoding": (None, "server connections take the client's settings"),
    "datestyle": (None, "server connections take the client's settings"),
    "timezone": (None, "server connections take the client's settings"),
    "application_name": (None, "server connections take the client's settings"),
}
_USER_REFUSED: dict[str, tuple[str | None, str]] = {
    "max_user_connections": ("0", "no per-user connection limit"),
    "max_user_client_connections": ("0", "no per-user client limit"),
    "transaction_timeout": ("0", "no transaction timeout: see idle_transaction_timeout"),
}


@dataclass
class _Found:
    settings: dict[str, Any]
    where: dict[str, str]
    ignored: dict[str, str]

    def set(self, field: str, value: Any, entry: IniLine) -> None:
        self.settings[field] = value
        self.where[field] = entry.where


def read(path: str) -> ForeignSettings:
    """`path` (a pgbouncer.ini) as pg-ambassador settings; ConfigError naming FILE:LINE."""
    entries, sections = parse(path)
    found = _Found({}, {}, {})
    if "pgbouncer" not in sections:
        raise ConfigError(f"{path}: no [pgbouncer] section (PgBouncer refuses such a file)")
    _main_section([e for e in entries if e.section == "pgbouncer"], found)
    databases: dict[str, dict[str, Any]] = {}
    users: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.section == "databases":
            databases[entry.key] = _database(entry)
            found.where["databases"] = entry.where
        elif entry.section == "users":
            users[entry.key] = _user(entry)
            found.where["users"] = entry.where
        elif entry.section == "peers":
            raise entry.error(
                "unsupported: podkit does not forward cancel requests to peer processes "
                "([peers]); run one pg-ambassador per pod"
            )
    if databases:
        found.settings["databases"] = databases
    if users:
        found.settings["users"] = users
    # the file itself, then one line: what podkit accepted and does not use
    fields: dict[str, Any] = {"file": path, "databases": sorted(databases)}
    if found.ignored:
        fields["ignored"] = found.ignored
    return ForeignSettings(found.settings, [Notice("pgbouncer_config", fields)], found.where)


def _main_section(entries: list[IniLine], found: _Found) -> None:
    from podkit.ambassadors.postgres import settings as pg

    by_env: dict[str, str] = {}
    for name, info in pg.PgAmbassadorSettings.model_fields.items():
        for meta in info.metadata:
            if isinstance(meta, Alias):
                by_env.update(dict.fromkeys(meta.env, name))
    values = {e.key: e for e in entries}  # the last one counts, as in PgBouncer
    listen_addr = values.get("listen_addr")
    listen_port = values.get("listen_port")
    if listen_addr is not None or listen_port is not None:
        _listen(listen_addr, listen_port, found)
    else:
        found.settings["listen"] = f"127.0.0.1:{_PGBOUNCER_DEFAULTS['listen_port']}"
    for key, entry in values.items():
        value = entry.value
        env = "PGBOUNCER_" + key.upper()
        if key in ("listen_addr", "listen_port"):
            continue
        if key == "auth_type":
            mapped = pg.AUTH_TYPES.get(value.lower())
            if mapped is None:
                raise entry.error(f"unsupported: {value}; podkit supports "
                                  f"{', '.join(pg.AUTH_TYPES)}")  # fmt: skip
            found.set("client_auth", mapped, entry)
        elif key == "auth_file":
            found.set("auth_file", value, entry)
        elif key == "pool_mode":
            if value.lower() not in ("session", "transaction"):
                raise entry.error(f"unsupported: {value}; podkit pools per session or per "
                                  "transaction")  # fmt: skip
            found.set("pool_mode", value.lower(), entry)
        elif key == "max_prepared_statements" and value.strip() == "0":
            found.ignored[key] = "podkit always keeps prepared statements across servers"
        elif key in _HARMLESS:
            found.ignored[key] = _HARMLESS[key]
        elif key in _NOT_SHARED:
            raise entry.error("unsupported: no auth_query, hba, ident or LDAP login in podkit; "
                              "use the auth_file")  # fmt: skip
        elif env in by_env:
            values_meaning, why = pg.REFUSED_VALUES.get(env, ((), ""))
            if value in values_meaning:
                raise entry.error(f"unsupported value {value}: {why}")
            field = by_env[env]
            if field in ("server_tls_mode",):
                value = value.lower()
            found.set(field, value, entry)
        elif env in pg.REFUSED:
            harmless, why = pg.REFUSED[env]
            if value and value.lower() not in harmless:
                raise entry.error(f"unsupported: {why}; podkit cannot honour {key} = {value}")
            found.ignored[key] = "the default, as podkit does"
        elif env in pg.IGNORED:
            found.ignored[key] = "ignored"
        else:
            raise entry.error("unknown key (not a PgBouncer 1.25 setting podkit knows)")
    if "pool_mode" not in values:
        found.settings["pool_mode"] = _PGBOUNCER_DEFAULTS["pool_mode"]
    if "auth_type" not in values:
        found.settings["client_auth"] = pg.AUTH_TYPES[_PGBOUNCER_DEFAULTS["auth_type"]]


def _listen(addr: IniLine | None, port: IniLine | None, found: _Found) -> None:
    host = "127.0.0.1"
    if addr is not None:
        value = addr.value.strip()
        if "," in value:
            raise addr.error(f"unsupported: {value}; podkit listens on one address")
        if value == "*":
            host = "0.0.0.0"
        elif value:
            host = value.strip("[]")
        else:
            found.ignored["listen_addr"] = "empty (Unix socket only): podkit listens on 127.0.0.1"
    number = _PGBOUNCER_DEFAULTS["listen_port"]
    if port is not None:
        number = port.value.strip()
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise port.error(f"expected a port, 1 to 65535, got {_show(port.value)}")
    host = f"[{host}]" if ":" in host else host
    entry = addr if addr is not None else port
    assert entry is not None
    found.set("listen", f"{host}:{int(number)}", entry)


def _entry_model(entry: IniLine, model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    """Validate now, so that a bad value names its line."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first.get("loc") or ())
        shown = "" if key == "password" else f"={raw.get(key)}"
        raise entry.error(f"{key}{shown}: {problem_words(first)}") from None
    return raw


def _refused(
    entry: IniLine, key: str, value: str, table: dict[str, tuple[str | None, str]]
) -> None:
    allowed, why = table[key]
    if allowed is None or value != allowed:
        raise entry.error(f"{key}: unsupported: {why}")


def _database(entry: IniLine) -> dict[str, Any]:
    from podkit.ambassadors.postgres.databases import DatabaseEntry

    if entry.key == "pgbouncer":
        raise entry.error("the database name 'pgbouncer' is reserved for the admin console")
    raw: dict[str, Any] = {}
    for key, value in connection_string(entry):
        if key in ("host", "dbname", "user", "password", "connect_query", "pool_mode"):
            if key == "host" and "," in value:
                raise entry.error("host: unsupported: podkit connects to one host (resolved "
                                  "again for every server connection)")  # fmt: skip
            if key == "host" and value[:1] in ("/", "@"):
                raise entry.error("host: unsupported: Unix sockets; podkit connects over TCP")
            if key == "pool_mode":
                value = value.lower()
                if value not in ("session", "transaction"):
                    raise entry.error(f"pool_mode={value}: unsupported; podkit pools per "
                                      "session or per transaction")  # fmt: skip
            raw[key] = value
        elif key in ("port", "pool_size", "min_pool_size", "reserve_pool_size", "reserve_pool"):
            raw["reserve_pool_size" if key == "reserve_pool" else key] = _int(entry, key, value)
        elif key == "server_lifetime":
            raw[key] = _int(entry, key, value)
        elif key == "load_balance_hosts":
            continue  # one host: nothing to balance
        elif key in _DB_REFUSED:
            _refused(entry, key, value, _DB_REFUSED)
        else:
            raise entry.error(f"{key}: unknown connection parameter")
    return _entry_model(entry, DatabaseEntry, raw)


def _user(entry: IniLine) -> dict[str, Any]:
    from podkit.ambassadors.postgres.databases import UserEntry

    raw: dict[str, Any] = {}
    for key, value in connection_string(entry):
        if key == "pool_mode":
            if value.lower() not in ("session", "transaction"):
                raise entry.error(f"pool_mode={value}: unsupported; podkit pools per session "
                                  "or per transaction")  # fmt: skip
            raw[key] = value.lower()
        elif key in ("pool_size", "reserve_pool_size", "query_timeout",
                     "idle_transaction_timeout", "client_idle_timeout"):  # fmt: skip
            raw[key] = _int(entry, key, value)
        elif key in _USER_REFUSED:
            _refused(entry, key, value, _USER_REFUSED)
        else:
            raise entry.error(f"{key}: unknown user setting")
    return _entry_model(entry, UserEntry, raw)


def _int(entry: IniLine, key: str, value: str) -> int:
    """A whole number as PgBouncer's atoi would take it, but whole: no trailing junk."""
    text = value.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit() or not digits.isascii():
        raise entry.error(f"{key}={value}: expected a whole number")
    return int(text)
