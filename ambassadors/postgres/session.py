"""Session state that transaction pooling cannot carry, found in the SQL a client sends.

`classify(sql, tracked)` looks at each statement of a query text and returns what the
pooler must do about it: note a session setting (`SET`, `RESET`, `set_config(..., false)`
of a GUC the server does not report: the pooler reads it back at the transaction's end and
replays it) or an advisory lock call (the pooler counts the locks held at the transaction's
end), pin the client to its server (a statement it cannot read with certainty, `LISTEN`, a
temp table, a `WITH HOLD` cursor, SQL `PREPARE`), or follow a `DEALLOCATE` / `DISCARD ALL`.
Most queries are cleared by one search of the lowered text that finds none of the
keywords, so the hot path stays cheap (about 0.4 us for a pgbench query, against 2.3 us
for a case-blind regex with word boundaries). A long text is not searched but read: when
it is one statement (a bulk INSERT), by its first words and a few `in` tests (7 ms for a
megabyte).
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

# Any statement that could matter contains one of these (reset and set_config contain
# "set"; DROP/ALTER/CREATE DATABASE "database"), searched in the lowered text, or a schema
# change's verb and a blank (not `created_at`); everything else is free. A hit only means
# the statements are looked at word by word. The verbs are found by bytes.find: in the
# regex, their alternatives tripled its time on a long text (17 to 56 ms per MB).
_SUSPECT = re.compile(rb"set|listen|advisory|temp|hold|prepare|deallocate|discard|database")
_VERBS = (b"create ", b"alter ", b"drop ")
_DIGITS = b"0123456789"
# lower case, and PostgreSQL's blanks as a space (bytes.translate: one pass, with the
# digits' removal here; notify.py finds "listen" in texts folded so)
FOLD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\t\n\r\f\v", b"abcdefghijklmnopqrstuvwxyz     ")
# suspect()'s answers by shape: at most this many, of at most this size
_SHAPES: dict[bytes, bool] = {}
_MAX_SHAPES = 1000
_MAX_SHAPE = 2048
_ADVISORY = re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\(")
_UNLOCK = re.compile(r"pg_advisory_unlock(_shared|_all)?\s*\(")
# `SELECT set_config('name', 'value', false)` alone: a session setting read with certainty
_SET_CONFIG_ALONE = re.compile(
    r"select\s+(?:pg_catalog\s*\.\s*)?set_config\s*\(\s*'((?:[^'\\]|'')*)'\s*,\s*"
    r"(?:'(?:[^'\\]|'')*'|null)\s*,\s*false\s*\)\s*(?:as\s+[a-z_][a-z0-9_]*\s*)?",
    re.I,
)
# A SET statement inside a body (DO, CREATE FUNCTION/PROCEDURE): after the start of a
# statement there, not UPDATE ... SET
_BODY_SET = re.compile(
    r"(?:^|[;'$]|\bbegin|\bthen|\belse|\bloop)\s*(?:set|reset)\s+"
    r"(?!local\b|constraints\b|transaction\b)"
)
_GUC_NAME = re.compile(r"[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)*")
_SET_CONFIG = re.compile(r"set_config\s*\(")
# set_config(..., true) whose arguments are plain: every call of a statement must be one
_SET_CONFIG_LOCAL = re.compile(
    r"set_config\s*\(\s*'(?:[^'\\]|'')*'\s*,\s*(?:'(?:[^'\\]|'')*'|[^,();]*)\s*,\s*true\s*\)"
)
# where split_statements has something to look at: quotes, comments, dollar quotes, `;`
_SPECIAL = re.compile(r"['\";$]|--|/\*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD_CASED = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$.]*|\S')

# PostgreSQL's whitespace between tokens (its lexer's; 16 added \v), not Python's, which
# also strips characters such as U+0085 that PostgreSQL reads as part of an identifier
PG_SPACE = " \t\n\r\f\v"

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

    # pin, deallocate, deallocate_all, discard_all, database; and, noted for the
    # transaction's end (TRACKED): setting, reset_all, advisory (asked of the server
    # then), schema (CREATE, ALTER, DROP: shared statements may be typed otherwise now)
    kind: str
    # pin: one of REASONS; setting: "set" or "reset"; advisory: "lock" or "unlock"
    reason: str = ""
    # pin, advisory: the statement (shortened); deallocate: the name; database: the
    # database that must have no other connections (DROP, ALTER ... RENAME, CREATE ...
    # TEMPLATE); setting: the GUC's name (lower case)
    statement: str = ""


# kinds that the pooler acts on at the transaction's end (each run of a prepared one
# noted again)
TRACKED = frozenset({"setting", "reset_all", "advisory", "schema"})
SCHEMA = SessionEvent("schema")


def split_statements(sql: str) -> list[str]:
    """Statements of a query text, split on `;` outside quotes, comments and dollar quotes."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        found = _SPECIAL.search(sql, i)  # ordinary characters are skipped in C
        if found is None:
            break
        i = found.start()
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
            match = _DOLLAR_TAG.match(sql, i)
            if match:
                tag = match.group(0)
                end = sql.find(tag, i + len(tag))
                i = n if end == -1 else end + len(tag)
            else:
                i += 1
        else:  # ;
            out.append(sql[start:i])
            i += 1
            start = i
    out.append(sql[start:])
    return [s for s in (strip_comments(s) for s in out) if s]


def strip_comments(sql: str) -> str:
    """The statement without leading/trailing blanks and leading comments."""
    s = sql.strip(PG_SPACE)
    while True:
        if s.startswith("--"):
            end = s.find("\n")
            s = "" if end == -1 else s[end + 1 :].lstrip(PG_SPACE)
        elif s.startswith("/*"):
            end = s.find("*/")
            s = "" if end == -1 else s[end + 2 :].lstrip(PG_SPACE)
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
    only add false hits) holds none of the keywords: nothing in it can matter.

    Searched once per shape: the text without its digits (no keyword has one, so a text
    that holds a keyword keeps it; a removed digit can only join letters into a false
    hit). Queries that differ only in numbers (`... WHERE aid = 123`) cost a digit strip
    and a dict lookup instead of the search (callgrind: about 4,000 instructions a
    pgbench query, against 10,500)."""
    if len(data) > _MAX_SHAPE:
        return True  # classify reads one long statement faster than this search would
    shape = data.translate(FOLD, _DIGITS)
    hit = _SHAPES.get(shape)
    if hit is None:
        hit = _SUSPECT.search(shape) is not None or any(verb in shape for verb in _VERBS)
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()  # forgetting only costs searching again
        _SHAPES[shape] = hit
    return hit


def classify(sql: bytes, tracked: Container[str] = ()) -> list[SessionEvent]:
    """What the statements of `sql` mean for pooling; `tracked`: GUCs the server reports
    and the pooler replays (lower case), whose changes reach it as ParameterStatus."""
    if not suspect(sql):
        return []
    text = sql.decode(errors="replace")
    semi = text.find(";")
    if semi < 0 or not text[semi + 1 :].strip(PG_SPACE):
        # one statement (a bulk INSERT, say): no splitting, which walks every quote
        statement = strip_comments(text if semi < 0 else text[:semi])
        event = _classify_one(statement, tracked) if statement else None
        return [] if event is None else [event]
    events: list[SessionEvent] = []
    for statement in split_statements(text):
        event = _classify_one(statement, tracked)
        if event is not None:
            events.append(event)
    return events


def _setting_name(rest: list[str]) -> tuple[str, list[str]] | None:
    """The GUC a SET/RESET names (lower case: GUC names are case-blind, quoted or not),
    and the words after it; None for the forms that are not one plain setting."""
    if not rest:
        return None
    name = rest[0].lower()
    if name == "time" and rest[1:2] == ["zone"]:
        return "timezone", rest[2:]
    if name == "xml" and rest[1:2] == ["option"]:
        return "xmloption", rest[2:]
    alias = {"names": "client_encoding", "schema": "search_path"}.get(name)
    if alias is not None:
        return alias, rest[1:]
    if name in ("role", "authorization", "session", "seed", "transaction", "all"):
        return None
    if not _GUC_NAME.fullmatch(name):
        return None
    return name, rest[1:]


def _classify_set(
    first: str, words: list[str], tracked: Container[str], pin: SessionEvent
) -> SessionEvent | None:
    """SET / RESET: a setting to note, nothing (SET LOCAL, a reported GUC), or a pin."""
    rest = words[1:]
    if first == "reset":
        if rest == ["all"]:
            return SessionEvent("reset_all")
        if rest[:1] == ["role"]:
            return None  # back to what SET ROLE left (a SET ROLE pinned already)
        found = _setting_name(rest)
        if found is None or found[1]:
            return pin
        name = found[0]
        return None if name in tracked else SessionEvent("setting", "reset", name)
    if rest and rest[0] == "session":
        rest = rest[1:]
        if rest and rest[0] == "characteristics":
            return pin
    if not rest or rest[0] in ("local", "transaction", "constraints"):
        return None
    found = _setting_name(rest)
    if found is None:
        return pin
    name, after = found
    if name in tracked:
        return None  # its changes come as ParameterStatus
    # name TO|= value; `FROM CURRENT` and anything else: not read with certainty
    special = name in ("timezone", "client_encoding", "search_path", "xmloption")
    if not special and (after[:1] not in (["to"], ["="]) or len(after) < 2):
        return pin
    return SessionEvent("setting", "set", name)


def _classify_one(statement: str, tracked: Container[str]) -> SessionEvent | None:
    words = _words(statement)
    if not words:
        return None
    first = words[0]
    lowered = statement.lower()

    def pin(reason: str) -> SessionEvent:
        return SessionEvent("pin", reason, _short(statement))

    if first == "set" or first == "reset":
        return _classify_set(first, words, tracked, pin("set"))
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
    if first in ("drop", "alter") and words[1:2] != ["system"]:
        return SCHEMA
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
                return None  # gone at the end of the transaction that made it
            return pin("temp_table")
        if rest[:1] in (["function"], ["procedure"]) and _BODY_SET.search(lowered):
            # Its body sets a setting when it runs: this client likely calls it (one
            # made elsewhere and called here cannot be seen; see the README)
            return pin("set")
        return SCHEMA
    if first == "do" and _BODY_SET.search(lowered):
        return pin("set")
    # Anywhere in a statement: advisory lock calls, set_config, SELECT ... INTO TEMP. Each
    # regex only where its word is (`in` costs a fraction of a search on a long text).
    if "advisory" in lowered and (_ADVISORY.search(lowered) or _UNLOCK.search(lowered)):
        # whether a lock is held is asked of the server at the transaction's end
        kind = "lock" if _ADVISORY.search(lowered) else "unlock"
        return SessionEvent("advisory", kind, _short(statement))
    calls = len(_SET_CONFIG.findall(lowered)) if "set_config" in lowered else 0
    if calls and calls != len(_SET_CONFIG_LOCAL.findall(lowered)):
        match = _SET_CONFIG_ALONE.fullmatch(statement)
        if match is not None:
            name = match.group(1).replace("''", "'").lower()
            if _GUC_NAME.fullmatch(name):
                return None if name in tracked else SessionEvent("setting", "set", name)
        return pin("set")
    if "temp" in lowered and re.search(r"\binto\s+(temp|temporary)\b", lowered):
        return pin("temp_table")
    return None
