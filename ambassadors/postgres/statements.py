"""A client's prepared statements in transaction mode, and the pool's statement memory.

Each client has its own namespace of named statements (`stmts`, name -> Parse body, as
on a real server); servers hold them under their own names (`pgamb_N`, ServerConn.
prepared). Parse, Bind, Describe and Close are renamed on the way out; a server lacking a
statement gets a Parse first, its answer swallowed. See the README, "Prepared statements".
"""

from __future__ import annotations

import struct

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres import session
from podkit.ambassadors.postgres.client_base import ClientBase
from podkit.ambassadors.postgres.protocol import (
    CLOSE,
    DESCRIBE,
    EXECUTE,
    FLUSH_MSG,
    PARSE,
    SYNC_MSG,
    TARGET_PORTAL,
    TARGET_STATEMENT,
)
from podkit.ambassadors.postgres.server import (
    CLIENT_CLOSE,
    CLIENT_PARSE,
    DESCRIBE_ROWS,
    EMPTY_PARSE,
    FAIL_BIND,
    NOOP_CLOSE,
    OWE_CLOSE,
    OWE_PARSE,
    OWE_POOL_PARSE,
    ClientClose,
    ClientParse,
    DescribeRows,
    Refused,
    Retry,
    ServerConn,
)

_pack_u32 = struct.Struct("!I").pack
# PostgreSQL's error for a statement whose result type changed; drivers (asyncpg) know it
# by its code and the function that raised it, not by its (localised) text.
CACHED_PLAN_REFUSAL = Refused(
    error=pq.error_response(
        "cached plan must not change result type", "0A000", routine="RevalidateCachedQuery"
    )
)


class Statements(ClientBase):
    def answer_locally(self, messages: list[tuple[int, bytes]]) -> bool:
        """Parse/Close of statements and Sync with no server held: answer without one.

        A Parse of a statement some server of the pool already parsed is only recorded
        (the server that runs it gets it on Bind). Without this, a client that prepares
        with a blocking call (pgbench -M prepared, libpq's PQprepare) while its other
        connections hold every server would wait forever.
        """
        pool = self.pool
        assert pool is not None
        if self.passthrough:
            return False
        known = pool.known
        stmts = self.stmts
        for kind, msg in messages:
            if kind == PARSE:
                stop = msg.index(b"\x00", 5)
                name, pos = msg[5:stop], stop + 1
                if not name or name in stmts or msg[pos:] not in known:
                    return False
                if pool.classify_parse(msg[pos:]):  # session state: the server path's
                    return False
            elif kind == CLOSE:
                if msg[5] != TARGET_STATEMENT or msg[6] == 0:
                    return False
            elif kind != SYNC_MSG and kind != FLUSH_MSG:
                return False
        if messages[-1][0] != SYNC_MSG:
            return False
        out: list[bytes] = []
        for kind, msg in messages:
            if kind == PARSE:
                name, pos = pq.cstr(msg, 5)
                if name in stmts:  # twice in this batch: let the server path refuse it
                    return False
                stmts[name] = msg[pos:]
                if pool.changed:
                    self.stmt_gen[name] = pool.changed.get(msg[pos:], 0)
                self.fresh.add(name)
                self.stats.prepared_hits += 1
                out.append(pq.PARSE_COMPLETE)
            elif kind == CLOSE:
                name, _ = pq.cstr(msg, 6)
                stmts.pop(name, None)
                out.append(pq.CLOSE_COMPLETE)
            elif kind == SYNC_MSG:
                out.append(pq.READY_IDLE)
        self.transport.writelines(out)
        return True

    def _first_use(
        self, server: ServerConn, messages: list[tuple[int, bytes]], msg: bytes, batch_start: bool
    ) -> None:
        """`msg` (a Bind or Describe) is the first use of a statement whose Parse was
        answered from a shared one, which may have gone stale (a schema change altered its
        result type since another client prepared it). On its own server the client's
        Parse would have planned afresh and never failed so; drivers do not retry that
        error at prepare (asyncpg) or first run (psycopg). If it fails so, the server runs
        the rest of the batch again on a fresh statement (ServerConn._error), when the
        client has seen nothing of the batch but ParseComplete."""
        name, self.first_use = self.first_use, None
        if not batch_start or name is None:
            return
        i = _position(messages, msg)
        end = _rest_of_batch(messages, i)
        if end >= 0:
            server.watch(Retry(client=self, rest=messages[i:end], name=name))

    def _verify(
        self,
        server: ServerConn,
        key: bytes,
        messages: list[tuple[int, bytes]],
        msg: bytes,
        out: list[bytes],
    ) -> None:
        """Bind of a statement this server lacks, that clients were described before:
        Parse it here and Describe it (answers swallowed) before the Bind goes out. A
        schema change since may have changed its result type, and a client that cached the
        old row description (asyncpg) would read rows of another shape; the pool then
        treats it as PostgreSQL's `cached plan must not change result type` (Pool.
        check_row_type), so this Bind gets that error, as on the client's own server.
        The batch from this Bind on waits for the answer (ServerConn.resume_client)."""
        self.held = messages[_position(messages, msg) :]
        name = server.statement(key, out)  # a re-Parse: the server lacks it
        out.append(pq.message(b"D", b"S" + name + b"\x00"))
        out.append(pq.FLUSH)
        server.watch(DescribeRows(client=self, key=key, verify=True))
        self.stats.prepared_verifications += 1
        server.transport.writelines(out)

    def resume_held(self, check: bool = True) -> None:
        """Send the batch held for a row-type check. If the check failed, the server
        skips the batch up to its Sync: it goes out as it is, with no check of its own
        (one would wait for an answer the skipping server never gives)."""
        held, self.held = self.held, None
        if held and self.server is not None and not self.closed:
            self.unchecked = not check
            try:
                self.process(held)
            finally:
                self.unchecked = False

    def retry(self, messages: list[tuple[int, bytes]], name: bytes) -> None:
        """Run again the part of a batch the server skipped when statement `name` proved
        stale; the pool has dropped it everywhere, so its use re-Parses it."""
        key = self.stmts.get(name)
        pool = self.pool
        if key is not None and pool is not None:
            self.stmt_gen[name] = pool.changed.get(key, 0)
        self.stats.prepared_retries += 1
        self.process(messages)

    def _parse(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        stop = msg.index(b"\x00", 5)
        name, pos = msg[5:stop], stop + 1
        key = msg[pos:]
        pool = self.pool
        assert pool is not None
        events = pool.classify_parse(key)
        for event in events:
            if event.kind in session.TRACKED:
                self.tracked_stmts[key] = events  # noted again at each Bind
                tracked = self.track(event)
                if tracked is None:
                    continue
                event = tracked
            if event.kind == "pin":
                if self.settings.on_session_state == "error":
                    self.stats.refused_statements += 1
                    self._fail(server, out, "0A000", _refusal(event))
                    return
                self.pin(event)
            elif event.kind in ("deallocate_all", "discard_all"):
                self._forget_statements(server)
                if event.kind == "discard_all":
                    server.extra.clear()
                    server.settings_key = None
                    self.discarded()
            elif event.kind == "database":
                self.amb.free_database(event.statement)
        if not name:
            self.unnamed = key
            server.unnamed = (self, key)
            server.expect.append(OWE_PARSE)
            out.append(msg)
            return
        if name in self.stmts:
            self._fail(
                server, out, "42P05", f'prepared statement "{name.decode(errors="replace")}" '
                "already exists",
            )  # fmt: skip
            return
        self.stmts[name] = key
        if pool.changed:
            self.stmt_gen[name] = pool.changed.get(key, 0)
        entry = server.prepared.get(key)
        if entry is not None and (server.status != b"I" or server.expect):
            # Inside a transaction (or behind other messages of its batch) the error of a
            # stale shared statement could not be rerun unseen: parse afresh, as the
            # client's own server would.
            server.retire_statement(key)
            entry = None
        if entry is not None:
            # The server has it already: a no-op Parse answers in order.
            self.stats.prepared_hits += 1
            self.fresh.add(name)
            server.prepared.move_to_end(key)
            server.unnamed = None
            server.expect.append(ClientParse(CLIENT_PARSE, self, name, None))
            out.append(EMPTY_PARSE)
            return
        self.stats.prepared_misses += 1
        server_name = server.add_statement(key, out)
        # If this Parse fails or is skipped, the client and the server both forget it.
        server.expect.append(ClientParse(CLIENT_PARSE, self, name, key))
        out.append(pq.parse_message(server_name, key))

    def _forget_statements(self, server: ServerConn) -> None:
        """DEALLOCATE ALL or DISCARD ALL: the client's statements, and the server's."""
        self.invalidate_statements()
        self.stmts.clear()
        self.fresh.clear()
        self.unnamed = None
        server.forget_prepared()

    def _ensure_unnamed(self, server: ServerConn, out: list[bytes]) -> None:
        """Re-Parse this client's unnamed statement on a server that holds another one."""
        unnamed = self.unnamed
        if unnamed is not None and server.unnamed != (self, unnamed):
            out.append(pq.parse_message(b"", unnamed))
            server.expect.append(OWE_POOL_PARSE)
            server.unnamed = (self, unnamed)

    def _bind(self, server: ServerConn, msg: bytes, out: list[bytes]) -> bytes | None:
        """Rename a Bind's statement; the statement's key if its row type must be checked
        on this server first (see _verify), then nothing was added to `out`."""
        pos = msg.index(b"\x00", 5) + 1  # after the portal name
        stop = msg.index(b"\x00", pos)
        name = msg[pos:stop]
        end = stop + 1
        if not name:
            if self.tracked_stmts and self.unnamed in self.tracked_stmts:
                self._track_again(self.tracked_stmts[self.unnamed])
            self._ensure_unnamed(server, out)
            out.append(msg)
            return None
        key = self.stmts.get(name)
        if key is None:
            out.append(msg)  # PostgreSQL answers: prepared statement "name" does not exist
            return None
        if self.tracked_stmts and key in self.tracked_stmts:
            self._track_again(self.tracked_stmts[key])
        pool = self.pool
        assert pool is not None  # (its server came from its pool)
        changed = pool.changed
        if changed and changed.get(key, 0) != self.stmt_gen.get(name, 0):
            if pool.shape_back(key, self.stmt_gen.get(name, 0)):
                self.stmt_gen[name] = changed[key]  # as prepared: valid again
            else:
                # Its result type changed since this client prepared it: PostgreSQL's
                # own answer, so the client prepares it again (and gets the new shape).
                server.expect.append(CACHED_PLAN_REFUSAL)
                out.append(FAIL_BIND)
                return None
        if key not in server.prepared and key in pool.row_types and not self.unchecked:
            return key
        self._mark_first_use(name)
        server.bound.append(key)
        server_name = server.statement(key, out)
        body = msg[5:pos] + server_name + b"\x00" + msg[end:]
        out.append(b"B" + _pack_u32(len(body) + 4) + body)
        return None

    def _track_again(self, events: list[session.SessionEvent]) -> None:
        """Another run of a statement that sets a setting or calls an advisory lock
        function (its pins were made at its Parse)."""
        for event in events:
            if event.kind in session.TRACKED:
                self.track(event)

    def _mark_first_use(self, name: bytes) -> None:
        """A use of `name`: its first since a Parse answered from a shared statement?"""
        if self.fresh and name in self.fresh:
            self.fresh.discard(name)
            self.first_use = name

    def _describe(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        if msg[5] != TARGET_STATEMENT:  # a portal's Describe passes
            out.append(msg)
            return
        name, _ = pq.cstr(msg, 6)
        if not name:
            self._ensure_unnamed(server, out)
            out.append(msg)
            return
        key = self.stmts.get(name)
        if key is None:
            out.append(msg)
            return
        self._mark_first_use(name)
        server.bound.append(key)  # PostgreSQL revalidates the plan here too
        server_name = server.statement(key, out)
        # the row type the client is told: the pool compares it with earlier ones
        server.watch(DescribeRows(DESCRIBE_ROWS, self, key, name, False))
        out.append(pq.message(b"D", b"S" + server_name + b"\x00"))

    def _close(self, server: ServerConn, msg: bytes, out: list[bytes]) -> None:
        if msg[5] != TARGET_STATEMENT:  # a portal: the server's business
            server.expect.append(OWE_CLOSE)
            out.append(msg)
            return
        name, _ = pq.cstr(msg, 6)
        if not name:
            self.unnamed = None
            if server.unnamed is not None and server.unnamed[0] is self:
                server.unnamed = None
            server.expect.append(OWE_CLOSE)
            out.append(msg)
            return
        key = self.stmts.pop(name, None)
        self.fresh.discard(name)
        # The server's copy stays for whoever needs it next; the client gets its answer.
        server.expect.append(ClientClose(CLIENT_CLOSE, self, name, key))
        out.append(NOOP_CLOSE)

    def _fail(self, server: ServerConn, out: list[bytes], sqlstate: str, text: str) -> None:
        """Make the server fail here (so it skips to Sync as PostgreSQL would), with our error."""
        server.expect.append(Refused(error=pq.error_response(text, sqlstate)))
        out.append(FAIL_BIND)

    def invalidate_statements(self) -> None:
        """No server of the pool hands out this client's statements again.

        Servers share a statement by its text, but what the text means can change: a
        client whose transaction rolled back, or that says DEALLOCATE ALL (psycopg does
        after a ROLLBACK or a DROP, "because the same object may get recreated and
        postgres would fail internal lookups"), may leave statements that name a type
        that no longer exists (`cache lookup failed for type`). The next use re-Parses.
        """
        pool = self.pool
        keys = set(self.stmts.values())
        if pool is None or not keys:
            return
        for server in (*pool.idle, *pool.active):
            server.drop_statements(keys)

    def forget_statement(self, name: bytes) -> None:
        self.stmts.pop(name, None)  # (a Parse of a known name is refused, never sent)

    def restore_statement(self, name: bytes, key: bytes | None) -> None:
        if key is not None:
            self.stmts.setdefault(name, key)


def _position(messages: list[tuple[int, bytes]], msg: bytes) -> int:
    """Index of the message `msg` (that very object) in a batch."""
    return next(k for k, (_, m) in enumerate(messages) if m is msg)


def _rest_of_batch(messages: list[tuple[int, bytes]], i: int) -> int:
    """Where the part of a batch that can run again after a stale statement at
    `messages[i]` ends (exclusive), or -1. Before i only Parses (their answers are
    ParseComplete, already seen); after it only portal Describe, Execute and Flush,
    up to the Sync (included) or ending in a Flush (asyncpg's Parse, Describe, Flush)."""
    if any(kind != PARSE for kind, _ in messages[:i]):
        return -1
    for k in range(i + 1, len(messages)):
        kind, msg = messages[k]
        if kind == SYNC_MSG:
            return k + 1
        if not (kind in (EXECUTE, FLUSH_MSG) or (kind == DESCRIBE and msg[5] == TARGET_PORTAL)):
            return -1
    return len(messages) if messages[-1][0] == FLUSH_MSG else -1


def _refusal(event: session.SessionEvent) -> str:
    return (
        f"pg-ambassador: {event.reason.replace('_', ' ')} is session state that transaction "
        f"pooling cannot carry (--on-session-state error): {event.statement}"
    )
