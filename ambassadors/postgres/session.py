"""Session state that transaction pooling cannot carry, found in the SQL a client sends.

`classify(sql, reported)` looks at each statement of a query text and returns what the
pooler must do about it: pin the client to its server (a session `SET` of a GUC the
server does not report, `LISTEN`, a session advisory lock, a temp table, a `WITH HOLD`
cursor, SQL `PREPARE`), or follow a `DEALLOCATE` / `DISCARD ALL`. Most queries are
cleared by one search of the lowered text that finds none of the keywords, so the hot
path stays cheap (about 0.4 us for a pgbench query, against 2.3 us for a case-blind
regex with word boundaries).
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

# Any statement that could matter contains one of these (reset and set_config contain
# "set"; DROP/ALTER/CREATE DATABASE "database"), searched in the lowered text; everything
# else is free. A hit only means the statements are looked at word by word.
_SUSPECT = re.compile(rb"set|listen|advisory|temp|hold|prepare|deallocate|discard|database")
_ADVISORY = re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\(")
_SET_CONFIG = re.compile(r"set_config\s*\(")
_SET_CONFIG_LOCAL = re.compile(r"set_config\s*\([^;]*,\s*true\s*\)")
_WORD_CASED = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$.]*|\S')

REASONS = (
    "set",
    "listen",
    "advisory_lock",
    "temp_table",
    "cursor_with_hold",
    "prepare",
)


@dataclass(frozen=True)
class SessionEvent:
    """What a statement does to the server session: pins it, frees prepared statements..."""

    kind: str  # pin, deallocate, deallocate_all, discard_all, database
    reason: str = ""  # pin: one of REASONS
    # pin: the statement (shortened); deallocate: the name; database: the database that
    # must have no other connections (DROP, ALTER ... RENAME, CREATE ... TEMPLATE)
    statement: str = ""


def split_statements(sql: str) -> list[str]:
    """Statements of a query text, split on `;` outside quotes, comments and dollar quotes."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:
                end = sql.find(c, end + 2)
            i = n if end == -1 else end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c == "$":
            match = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if match:
                tag = match.group(0)
                end = sql.find(tag, i + len(tag))
                i = n if end == -1 else end + len(tag)
            else:
                i += 1
        elif c == ";":
            out.append(sql[start:i])
            i += 1
            start = i
        else:
            i += 1
    out.append(sql[start:])
    return [s for s in (strip_comments(s) for s in out) if s]


def strip_comments(sql: str) -> str:
    """The statement without leading/trailing blanks and leading comments."""
    s = sql.strip()
    while True:
        if s.startswith("--"):
            end = s.find("\n")
            s = "" if end == -1 else s[end + 1 :].lstrip()
        elif s.startswith("/*"):
            end = s.find("*/")
            s = "" if end == -1 else s[end + 2 :].lstrip()
        else:
            return s


def _words(statement: str, count: int = 6) -> list[str]:
    """The first words, folded as PostgreSQL folds identifiers (quoted ones keep case)."""
    words: list[str] = []
    for match in _WORD_CASED.finditer(statement):
        word = match.group(0)
        words.append(word[1:-1].replace('""', '"') if word.startswith('"') else word.lower())
        if len(words) >= count:
            break
    return words


def _database_event(verb: str, rest: list[str], statement: str) -> SessionEvent | None:
    """DROP DATABASE x, ALTER DATABASE x RENAME and CREATE DATABASE ... TEMPLATE x fail
    while any other session is connected to x (PostgreSQL waits 5 s for them to go)."""
    if verb == "drop":
        if rest[:2] == ["if", "exists"]:
            rest = rest[2:]
        return SessionEvent("database", statement=rest[0]) if rest else None
    if verb == "alter":
        return SessionEvent("database", statement=rest[0]) if rest[1:2] == ["rename"] else None
    words = _words(statement, 12)
    if "template" in words:
        index = words.index("template") + 1
        if index < len(words) and words[index] == "=":
            index += 1
        if index < len(words):
            return SessionEvent("database", statement=words[index])
    return None


def _short(statement: str) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= 200 else text[:197] + "..."


def suspect(data: bytes) -> bool:
    """False when `data` (a query text, or a whole Query message: its header bytes can
    only add false hits) holds none of the keywords: nothing in it can matter."""
    return _SUSPECT.search(data.lower()) is not None


def classify(sql: bytes, reported: Container[str] = ()) -> list[SessionEvent]:
    """What the statements of `sql` mean for pooling; `reported`: GUCs the server reports
    (lower case), whose changes reach the pooler as ParameterStatus and can be replayed."""
    if not suspect(sql):
        return []
    text = sql.decode(errors="replace")
    events: list[SessionEvent] = []
    for statement in split_statements(text):
        event = _classify_one(statement, reported)
        if event is not None:
            events.append(event)
    return events


def _classify_one(statement: str, reported: Container[str]) -> SessionEvent | None:
    words = _words(statement)
    if not words:
        return None
    first = words[0]
    lowered = statement.lower()

    def pin(reason: str) -> SessionEvent:
        return SessionEvent("pin", reason, _short(statement))

    if first == "set":
        rest = words[1:]
        if rest and rest[0] == "session":
            rest = rest[1:]
            if rest and rest[0] == "characteristics":
                return pin("set")
        if not rest or rest[0] in ("local", "transaction", "constraints"):
            return None
        if rest[0] in ("role", "authorization") or rest[:1] == ["session"]:
            return pin("set")
        name = rest[0].lower()  # GUC names are case-blind, quoted or not
        if name == "time" and rest[1:2] == ["zone"]:
            name = "timezone"
        if name == "names":
            name = "client_encoding"
        if name in reported:
            return None
        return pin("set")
    if first == "reset":
        return None
    # LISTEN no longer pins: in transaction mode notify.py serves it through the pool
    if first == "prepare" and words[1:2] != ["transaction"]:
        return pin("prepare")
    if first == "deallocate":
        rest = words[1:]
        if rest and rest[0] == "prepare":
            rest = rest[1:]
        if not rest:
            return None
        if rest[0] == "all":
            return SessionEvent("deallocate_all")
        return SessionEvent("deallocate", statement=rest[0])
    if first in ("drop", "alter", "create") and words[1:2] == ["database"]:
        return _database_event(first, words[2:], statement)
    if first == "discard":
        if words[1:2] == ["all"]:
            return SessionEvent("discard_all")
        return None
    if first == "declare" and re.search(r"\bwith\s+hold\b", lowered):
        return pin("cursor_with_hold")
    if first == "create":
        rest = words[1:]
        if rest and rest[0] == "or" and rest[1:2] == ["replace"]:
            rest = rest[2:]
        if rest and rest[0] in ("local", "global"):
            rest = rest[1:]
        if rest and rest[0] in ("temp", "temporary"):
            if re.search(r"\bon\s+commit\s+drop\b", lowered):
                return None
            return pin("temp_table")
        return None
    if _ADVISORY.search(lowered):
        return pin("advisory_lock")
    if _SET_CONFIG.search(lowered) and not _SET_CONFIG_LOCAL.search(lowered):
        return pin("set")
    if re.search(r"\binto\s+(temp|temporary)\b", lowered):
        return pin("temp_table")
    return None
