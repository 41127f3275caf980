"""LISTEN/NOTIFY in transaction mode: one listener connection per pool, fanned out.

A client's `LISTEN ch` / `UNLISTEN ch|*` still goes to the pooled server it holds, so
PostgreSQL itself checks it, answers it (CommandComplete, errors, ReadyForQuery) and gives
it its transaction semantics. What the pooler adds:

- Before a batch with a `LISTEN ch` goes out, the pool's listener connection (a server
  connection of its own, not counted in --pool-size) LISTENs `ch`, and the batch waits
  for that: once the client's LISTEN has committed, every NOTIFY committed after it
  reaches the listener, as PostgreSQL promises a direct connection.
- At the end of the client's transaction (ReadyForQuery idle, nothing owed) the pooler
  asks the server `SELECT pg_listening_channels(); UNLISTEN *`: the channels the client's
  LISTENs left there are those that committed (the server listened to nothing before:
  every server is UNLISTENed so before another client gets it). The client listens to
  those from then on; its `UNLISTEN`s apply at that point (even in a transaction that
  rolled back: see the README's limits).
- A pooled server's own NotificationResponses are dropped in transaction mode
  (server.py): the listener delivers each notification once.
- Each NotificationResponse of the listener goes to every client listening on its
  channel: written at once when the client is idle, else queued and written right after
  its transaction's ReadyForQuery, as PostgreSQL delivers them. A client that lets more
  than MAX_QUEUED notifications pile up (a long transaction) or MAX_BUFFERED bytes in its
  socket (it does not read) is closed with an error: dropping notifications silently
  would break the promise above.
- The listener reconnects with backoff when its connection is lost and LISTENs every
  channel again; what was notified meanwhile is lost, as for a direct connection that
  reconnects: counted and logged once (`listener_reconnected`, with the gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.protocol import BIND, PARSE, QUERY
from podkit.ambassadors.postgres.session import FOLD, split_statements
from podkit.backoff import Backoff

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.context import Context

# A client's queue of notifications held during its transaction, and the bytes its socket
# may hold unread; past either it is closed (SQLSTATE 53400, configuration_limit_exceeded).
MAX_QUEUED = 10000
MAX_BUFFERED = 16 * 1024 * 1024
# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes
NAME_BYTES = 63
# statements with a LISTEN or UNLISTEN remembered per client (by name, for their Binds)
MAX_STATEMENTS = 100
PROBE_SQL = "SELECT pg_listening_channels(); UNLISTEN *"

LISTEN = "listen"
UNLISTEN = "unlisten"
# ("listen", channel) or ("unlisten", channel), ("unlisten", None) for UNLISTEN *
Op = tuple[str, str | None]

# Any text that could hold a LISTEN or UNLISTEN contains "listen" in some case; a hit only
# means its statements are read. Lowered by session.FOLD and found by bytes.find: a
# case-blind regex took 1 to 3 ms per 256 KiB, which a client's big Bind or Query paid.


def mentions(text: bytes) -> bool:
    """Whether `text` holds "listen" in any case."""
    return text.translate(FOLD).find(b"listen") >= 0


def batch_mentions(messages: list[tuple[int, bytes]]) -> bool:
    """Whether a Query or Parse of the batch holds "listen": only their texts are SQL
    (a Bind's or CopyData's bytes never are, however many)."""
    return any(kind in (QUERY, PARSE) and mentions(msg) for kind, msg in messages)


# --- the wire ---------------------------------------------------------------------------------


def as_client_pid(server_pids: dict[Any, Any], addr: tuple[str, int], msg: bytes) -> bytes | bool:
    """The notifying backend's pid, as the pid its client got in BackendKeyData.

    Clients know only the pids the pooler gave them (their own BackendKeyData and the
    other clients'), so `notify.pid == conn.backend_pid` ("is it mine?") must compare
    those. A backend that no client of this pooler holds keeps its pid. True: unchanged.

    In transaction mode the backend may have served another client since the NOTIFY
    committed: the notification names the client running a batch there now, else the
    one whose transaction ended there last (`owner_pid`). A guess when the backend
    changed hands between the commit and the notification's arrival at the listener
    (a NOTIFY is not told apart in the stream), right in the usual orders.
    """
    server = server_pids.get((addr, pq.unpack_u32(msg, 5)[0]))
    if server is None:
        return True
    pid = server.owner_pid
    holder = server.client
    if holder is not None and server.expect:
        pid = getattr(holder, "process_id", 0) or pid
    if not pid:
        return True
    return pq.with_notification_pid(msg, pid)


# --- LISTEN / UNLISTEN in SQL text ------------------------------------------------------------

# PostgreSQL's lexer: whitespace and comments between tokens; identifiers start with a
# letter, `_` or any non-ASCII character.
_SPACE = re.compile(r"(?:[ \t\n\r\f\v]+|--[^\n\r]*(?:[\n\r]|$)|/\*(?:[^*]|\*(?!/))*\*/)*")
_PLAIN = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_QUOTED = re.compile(r'"((?:[^"]|"")+)"')
_UNICODE = re.compile(r'[Uu]&"((?:[^"]|"")+)"')
_UESCAPE = re.compile(r"[Uu][Ee][Ss][Cc][Aa][Pp][Ee]")
_UESCAPE_CHAR = re.compile(r"'([^'])'")


def truncate_name(name: str) -> str:
    """As PostgreSQL truncates an identifier: to 63 bytes, never inside a character."""
    raw = name.encode()
    if len(raw) <= NAME_BYTES:
        return name
    return raw[:NAME_BYTES].decode(errors="ignore")


def _unicode_escapes(body: str, escape: str) -> str | None:
    """A U&"..." identifier's text with its escapes decoded; None if malformed."""
    out = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != escape:
            out.append(c)
            i += 1
            continue
        if body.startswith(escape, i + 1):
            out.append(escape)
            i += 2
        elif body.startswith("+", i + 1) and re.fullmatch(r"[0-9A-Fa-f]{6}", body[i + 2 : i + 8]):
            code = int(body[i + 2 : i + 8], 16)
            if code > 0x10FFFF or code == 0:
                return None
            out.append(chr(code))
            i += 8
        elif re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 1 : i + 5]):
            code = int(body[i + 1 : i + 5], 16)
            if code == 0:
                return None
            out.append(chr(code))
            i += 5
        else:
            return None
    text = "".join(out)
    # surrogate pairs written as two escapes are valid in PostgreSQL; keep it simple
    return None if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text) else text


def _identifier(statement: str, pos: int) -> tuple[str, int] | None:
    """The identifier at `pos` as PostgreSQL folds it, and where it ends; None if none."""
    match = _UNICODE.match(statement, pos)
    if match:
        body = match.group(1).replace('""', '"')
        end = match.end()
        escape = "\\"
        after = _SPACE.match(statement, end).end()  # type: ignore[union-attr]
        uescape = _UESCAPE.match(statement, after)
        if uescape:
            char = _UESCAPE_CHAR.match(statement, _SPACE.match(statement, uescape.end()).end())  # type: ignore[union-attr]
            if char is None or char.group(1) in "0123456789abcdefABCDEF+'\" \t\n\r\f":
                return None
            escape = char.group(1)
            end = char.end()
        text = _unicode_escapes(body, escape)
        return None if text is None else (truncate_name(text), end)
    match = _QUOTED.match(statement, pos)
    if match:
        return truncate_name(match.group(1).replace('""', '"')), match.end()
    match = _PLAIN.match(statement, pos)
    if match:
        word = match.group(0)
        # unquoted: ASCII letters are folded to lower case, nothing else (UTF-8 databases)
        folded = word.translate(_ASCII_LOWER)
        return truncate_name(folded), match.end()
    return None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _op(statement: str) -> Op | None:
    """The LISTEN/UNLISTEN of one statement (comments stripped in front), or None: not
    one, or not one PostgreSQL would run (it answers a syntax error; nothing to track)."""
    match = _PLAIN.match(statement)
    if match is None:
        return None
    verb = match.group(0).lower()
    if verb not in (LISTEN, UNLISTEN):
        return None
    pos = _SPACE.match(statement, match.end()).end()  # type: ignore[union-attr]
    if pos == match.end() and pos < len(statement) and statement[pos] != '"':
        return None  # "listenx": another word
    channel: str | None
    if verb == UNLISTEN and statement.startswith("*", pos):
        channel, pos = None, pos + 1
    else:
        found = _identifier(statement, pos)
        if found is None:
            return None
        channel, pos = found
    pos = _SPACE.match(statement, pos).end()  # type: ignore[union-attr]
    if pos != len(statement):
        return None
    return verb, channel


def listen_ops(sql: str) -> list[Op]:
    """The LISTEN and UNLISTEN statements of a query text, in order."""
    ops = []
    for statement in split_statements(sql):
        op = _op(statement)
        if op is not None:
            ops.append(op)
    return ops


def ops_in(
    messages: list[tuple[int, bytes]], statements: dict[bytes, list[Op]] | None = None
) -> list[Op]:
    """The LISTEN/UNLISTEN statements of a client's batch: in Query texts, Parse texts,
    and Binds of statements whose Parse had one (`statements`, name -> ops, kept up to
    date here: a statement may be parsed in one batch and run in later ones)."""
    ops: list[Op] = []
    for kind, msg in messages:
        if kind == QUERY:
            text = msg[5:-1]
        elif kind == PARSE:
            stop = msg.index(b"\x00", 5)
            start = stop + 1
            text = msg[start : msg.index(b"\x00", start)]
            if statements is not None:
                found = listen_ops(text.decode(errors="replace")) if mentions(text) else []
                if found:
                    statements[msg[5:stop]] = found
                    if len(statements) > MAX_STATEMENTS:
                        del statements[next(iter(statements))]
                else:
                    statements.pop(msg[5:stop], None)
                ops.extend(found)
                continue
        elif kind == BIND and statements:
            portal_end = msg.index(b"\x00", 5)
            bound = statements.get(msg[portal_end + 1 : msg.index(b"\x00", portal_end + 1)])
            if bound:
                ops.extend(bound)
            continue
        else:
            continue
        if mentions(text):
            ops.extend(listen_ops(text.decode(errors="replace")))
    return ops


def listened_in(ops: list[Op]) -> list[str]:
    """The channels `ops` LISTEN to."""
    return [channel for verb, channel in ops if verb == LISTEN and channel is not None]


def apply_ops(channels: set[str], ops: list[Op], committed: set[str]) -> set[str]:
    """A client's channels after its transaction's `ops`, of which the LISTENs of
    `committed` channels took effect (in order: `UNLISTEN *; LISTEN b` leaves b)."""
    out = set(channels)
    for verb, channel in ops:
        if verb == LISTEN:
            if channel in committed:
                out.add(channel)
        elif channel is None:
            out.clear()
        else:
            out.discard(channel)
    return out


# --- the pooler's side --------------------------------------------------------------------


class PooledServer(Protocol):
    """What notify.py uses of a pooled server connection (server.ServerConn)."""

    addr: tuple[str, int]
    process_id: int
    transport: asyncio.Transport
    writer: Any
    status: bytes
    expect: Any
    client: Any
    closed: bool

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def run_internal(
        self,
        sql: str,
        done: Callable[[bool, bytes, str], None],
        rows: list[list[str | None]] | None = None,
    ) -> None: ...


class NotifyPool(Protocol):
    """What notify.py uses of its pool (pool.Pool)."""

    ctx: Context
    database: str
    user: str
    notifier: Notifier

    @property
    def label(self) -> str: ...

    @property
    def settings(self) -> Any: ...

    async def _login(self) -> Any: ...
    def release(self, server: Any) -> None: ...


class ListeningClient(Protocol):
    """What the notifier needs of a client (client.ClientConn)."""

    closed: bool
    unsynced: bool
    checking: bool  # the session check (client.py) runs on its server
    listens: ClientListens | None

    @property
    def server(self) -> PooledServer | None: ...

    @property
    def transport(self) -> asyncio.Transport: ...

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def route(self, messages: list[tuple[int, bytes]]) -> None: ...
    def fatal(self, sqlstate: str, text: str) -> None: ...


class ClientListens:
    """One client's channels, its LISTEN/UNLISTEN of the transaction under way, and the
    notifications waiting for its ReadyForQuery."""

    __slots__ = (
        "channels", "early", "hold", "ops", "probing", "queue", "release_after", "statements",
    )  # fmt: skip

    def __init__(self) -> None:
        self.channels: set[str] = set()
        # prepared statements (name; b"" the unnamed one) that LISTEN or UNLISTEN
        self.statements: dict[bytes, list[Op]] = {}
        self.ops: list[Op] = []  # sent in the transaction under way
        self.queue: deque[bytes] = deque()
        # messages held until the listener LISTENs their channels (None: nothing held)
        self.hold: list[tuple[int, bytes]] | None = None
        self.probing = False  # the end-of-transaction question runs on its server
        self.release_after = False  # the hold may go once that question is answered
        # meanwhile: the notifications for it, in order, kept until the answer says which
        # LISTENs committed (its ReadyForQuery is out already); (channel, message) for one
        # of a channel it LISTENed in that transaction, (None, message) for the others
        self.early: list[tuple[str | None, bytes]] = []


class Notifier:
    """The listener connection of one pool, and who listens on which channel."""

    def __init__(self, pool: NotifyPool) -> None:
        self.pool = pool
        self.ctx = pool.ctx
        self.log = pool.ctx.log
        # channel -> clients listening (committed); channel -> clients whose LISTEN of it
        # runs in an open transaction (the listener must listen already)
        self.clients: dict[str, set[ListeningClient]] = {}
        self.pending: dict[str, set[ListeningClient]] = {}
        # channel -> clients whose transaction LISTENing to it ended, asked which committed
        self.tentative: dict[str, set[ListeningClient]] = {}
        # the listener's channels: True once its LISTEN was answered, else the callbacks
        # waiting for that answer
        self.on: dict[str, bool | list[Callable[[], None]]] = {}
        self.conn: ListenerConn | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.backoff = Backoff(0.25, 5.0)
        self.down_since = 0.0  # when a connection was lost (0: never lost, or back)
        self.closed = False
        # counters (metrics)
        self.reconnects = 0
        self.down_seconds = 0.0
        self.delivered = 0
        self.slow_closed = 0

    # --- the client side ------------------------------------------------------------------

    def gate(self, client: ListeningClient, messages: list[tuple[int, bytes]]) -> bool:
        """A batch a client sent: True if it is held (or joined held ones) until the
        listener LISTENs a channel in it; False: route it now."""
        listens = client.listens
        if listens is not None and listens.hold is not None:
            listens.hold.extend(messages)
            return True
        return self._admit(client, messages, may_hold=True)

    def _admit(
        self, client: ListeningClient, messages: list[tuple[int, bytes]], may_hold: bool
    ) -> bool:
        listens = client.listens
        if listens is None:
            ops = ops_in(messages)
            if not ops:
                return False
            listens = client.listens = ClientListens()
            ops = ops_in(messages, listens.statements)
        else:
            ops = ops_in(messages, listens.statements)
            if not ops:
                return False
        new = []
        for verb, channel in ops:
            if verb == LISTEN:
                assert channel is not None
                self.pending.setdefault(channel, set()).add(client)
                if self.on.get(channel) is not True:
                    new.append(channel)
        if not new or not may_hold:
            listens.ops.extend(ops)
            if new:
                self._sync()
            return False
        listens.hold = list(messages)
        client.pause()
        self._sync(waiting=(new, lambda: self.release_held(client)))
        return True

    def release_held(self, client: ListeningClient) -> None:
        """The listener LISTENs the held batch's channels (or cannot now): send it."""
        listens = client.listens
        if listens is None or listens.hold is None:
            return
        if listens.probing or client.checking:
            # its server is busy with one of the pooler's questions: sent after the answer
            # (end_transaction's, or ClientConn._checked's)
            listens.release_after = True
            return
        held, listens.hold = listens.hold, None
        if client.closed:
            return
        self._admit(client, held, may_hold=False)
        client.resume()
        client.route(held)

    def end_transaction(
        self, client: ListeningClient, server: PooledServer, then: Callable[[], None]
    ) -> None:
        """The client's transaction ended (its ReadyForQuery is out): find which of its
        LISTENs committed, UNLISTEN the server, then `then()` (park or release it)."""
        listens = client.listens
        assert listens is not None
        ops, listens.ops = listens.ops, []
        listened = set(listened_in(ops))
        if not listened:
            self._apply(client, ops, set())
            then()
            self.flush(client)
            return
        listens.probing = True
        client.pause()
        # Its LISTENs may have committed: what arrives from now on may be its own.
        for channel in listened:
            self.tentative.setdefault(channel, set()).add(client)

        rows: list[list[str | None]] = []

        def answered(ok: bool, status: bytes, error: str) -> None:
            listens.probing = False
            for name in listened:
                self._drop(self.tentative, name, client)
            committed = {row[0] or "" for row in rows} & listened
            self._apply(client, ops, committed if ok and status == b"I" else set())
            early, listens.early = listens.early, []
            for channel, msg in early:
                if channel is None or channel in listens.channels:
                    self.deliver(client, msg)
            if client.closed:
                # it left meanwhile (ClientConn.connection_lost left the server to us)
                if not server.closed:
                    self.pool.release(server)
                return
            if listens.hold is None:
                client.resume()
            then()
            self.flush(client)
            if listens.release_after:
                listens.release_after = False
                self.release_held(client)

        server.run_internal(PROBE_SQL, answered, rows)

    def _apply(self, client: ListeningClient, ops: list[Op], committed: set[str]) -> None:
        listens = client.listens
        assert listens is not None
        before = listens.channels
        after = apply_ops(before, ops, committed) if not client.closed else set()
        for channel in before - after:
            self._drop(self.clients, channel, client)
        for channel in after - before:
            self.clients.setdefault(channel, set()).add(client)
        listens.channels = after
        for name in listened_in(ops):
            self._drop(self.pending, name, client)
        self._sync()

    @staticmethod
    def _drop(table: dict[str, set[ListeningClient]], channel: str, client: Any) -> None:
        clients = table.get(channel)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del table[channel]

    def forget(self, client: ListeningClient) -> None:
        """The client left: it leaves its channels (the last one out UNLISTENs)."""
        listens = client.listens
        if listens is None:
            return
        for channel in listens.channels:
            self._drop(self.clients, channel, client)
        held = ops_in(listens.hold, listens.statements) if listens.hold is not None else []
        for name in listened_in(listens.ops + held):
            self._drop(self.pending, name, client)
        listens.hold = None
        listens.channels = set()
        listens.ops = []
        listens.queue.clear()
        self._sync()

    # --- delivery ---------------------------------------------------------------------------

    def notification(self, msg: bytes, addr: tuple[str, int]) -> None:
        """A NotificationResponse of the listener: to every client on its channel."""
        channel = pq.notification_channel(msg).decode(errors="replace")
        clients = self.clients.get(channel)
        tentative = self.tentative.get(channel)
        if not clients and not tentative:
            return
        rewritten = as_client_pid(self.ctx.server_pids, addr, msg)
        if rewritten is not True:
            msg = rewritten  # type: ignore[assignment]
        if clients:
            for client in list(clients):
                self.deliver(client, msg)
        if tentative:
            for client in tentative:
                listens = client.listens
                if listens is not None and (not clients or client not in clients):
                    listens.early.append((channel, msg))

    def deliver(self, client: ListeningClient, msg: bytes) -> None:
        listens = client.listens
        if client.closed or listens is None:
            return
        if listens.probing:  # in order with those of channels it may have just LISTENed
            listens.early.append((None, msg))
            return
        if listens.queue or not idle(client):
            listens.queue.append(msg)
            if len(listens.queue) > MAX_QUEUED:
                self._too_slow(client, f"{MAX_QUEUED} notifications waited for its transaction")
            return
        self._write(client, [msg])

    def flush(self, client: ListeningClient) -> None:
        """Write what waited for the client's ReadyForQuery (it is idle now)."""
        listens = client.listens
        if listens is None or not listens.queue or client.closed or not idle(client):
            return
        queued = list(listens.queue)
        listens.queue.clear()
        self._write(client, queued)

    def _write(self, client: ListeningClient, msgs: list[bytes]) -> None:
        transport = client.transport
        transport.writelines(msgs)
        self.delivered += len(msgs)
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            self._too_slow(client, f"over {MAX_BUFFERED} bytes of notifications unread")

    def _too_slow(self, client: ListeningClient, why: str) -> None:
        self.slow_closed += 1
        self.ctx.warn("notify_client_too_slow", pool=self.pool.label, why=why)
        client.fatal("53400", f"pg-ambassador: client closed: {why}")

    # --- the listener connection --------------------------------------------------------------

    def wanted(self) -> set[str]:
        return self.clients.keys() | self.pending.keys()

    def _sync(self, waiting: tuple[list[str], Callable[[], None]] | None = None) -> None:
        """LISTEN what clients need and the listener lacks, UNLISTEN what nobody needs;
        `waiting`: (channels, callback once the listener listens on them all)."""
        if self.closed:
            if waiting is not None:
                waiting[1]()
            return
        conn = self.conn
        if conn is None:
            if waiting is not None:
                self._wait(waiting[0], waiting[1])
            if self.wanted() and self.connecting is None:
                self.connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        wanted = self.wanted()
        listen = [channel for channel in wanted if channel not in self.on]
        unlisten = [channel for channel in self.on if channel not in wanted]
        for channel in unlisten:
            # (one whose LISTEN is in flight has no waiters, or somebody would want it)
            del self.on[channel]
        for channel in listen:
            self.on[channel] = []
        if waiting is not None:
            self._wait(waiting[0], waiting[1])
        sql = ";".join(
            [f"UNLISTEN {quote_channel(c)}" for c in unlisten]
            + [f"LISTEN {quote_channel(c)}" for c in listen]
        )
        if sql:
            conn.send(sql, lambda ok: self._listened(listen))

    def _wait(self, channels: list[str], callback: Callable[[], None]) -> None:
        """`callback()` once the listener listens on every one of `channels` (or gave up)."""
        left = {c for c in channels if self.on.get(c) is not True}
        if not left:
            callback()
            return

        def waiter(channel: str) -> Callable[[], None]:
            def done() -> None:
                left.discard(channel)
                if not left:
                    callback()

            return done

        for channel in list(left):
            entry = self.on.setdefault(channel, [])
            assert isinstance(entry, list)
            entry.append(waiter(channel))

    def _listened(self, channels: list[str]) -> None:
        """The listener's LISTEN of `channels` was answered (or failed: the clients' own
        LISTENs go ahead all the same)."""
        for channel in channels:
            entry = self.on.get(channel)
            if isinstance(entry, list):
                self.on[channel] = True
                for callback in entry:
                    callback()

    def _give_up_waiters(self) -> None:
        """No listener now: let held clients go on (their server answers them; delivery
        starts once the listener is back)."""
        for channel, entry in list(self.on.items()):
            if isinstance(entry, list):
                del self.on[channel]
                for callback in entry:
                    callback()

    async def _connect(self) -> None:
        pool = self.pool
        try:
            while not self.closed and self.wanted():
                try:
                    server = await asyncio.wait_for(
                        pool._login(), pool.settings.server_connect_timeout
                    )
                except Exception as exc:  # OSError, timeout, login refused
                    self.ctx.warn("listener_connect_failed", pool=pool.label, error=str(exc))
                    self._give_up_waiters()
                    await asyncio.sleep(self.backoff.next())
                    continue
                self.backoff.reset()
                self._connected(server)
                return
        finally:
            self.connecting = None

    def _connected(self, server: PooledServer) -> None:
        # the listener is no pooled server: not in the notifying-pid map, not counted
        self.ctx.server_pids.pop((server.addr, server.process_id), None)
        conn = ListenerConn(self, server)
        self.conn = conn
        waiting = {c: e for c, e in self.on.items() if isinstance(e, list)}
        self.on = dict(waiting)  # only callbacks: every channel is LISTENed anew
        listen = sorted(self.wanted() | waiting.keys())
        for channel in listen:
            self.on.setdefault(channel, [])
        down_since = self.down_since
        channels = len(listen)

        def listened(ok: bool) -> None:
            self._listened(listen)
            if down_since:
                self.down_since = 0.0
                gap = time.monotonic() - down_since
                self.reconnects += 1
                self.down_seconds += gap
                # notifications committed meanwhile are lost, as for a direct
                # connection that reconnects
                self.log.warning(
                    "listener_reconnected", pool=self.pool.label,
                    down_seconds=round(gap, 3), channels=channels, ok=ok,
                )  # fmt: skip
            else:
                self.log.info("listener_connected", pool=self.pool.label, channels=channels)

        sql = ";".join(f"LISTEN {quote_channel(c)}" for c in listen)
        if sql:
            conn.send(sql, listened)
        else:
            listened(True)

    def lost(self, conn: ListenerConn) -> None:
        if self.conn is not conn:
            return
        self.conn = None
        if self.closed:
            return
        if not self.down_since:
            self.down_since = time.monotonic()
        self._give_up_waiters()
        self.on = {}
        if self.wanted() and self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._connect())

    def close(self) -> None:
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        self._give_up_waiters()
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()


def idle(client: ListeningClient) -> bool:
    """Nothing of the client's runs: a notification written now lands between two of
    its message streams (it holds no server, or holds one idle and owing nothing)."""
    server = client.server
    if server is None or server.client is not client:
        return True
    return server.status == b"I" and not server.expect and not client.unsynced


def quote_channel(channel: str) -> str:
    return '"' + channel.replace('"', '""') + '"'


class ListenerConn(asyncio.Protocol):
    """The listener's server connection (logged in as the pool's server connections):
    simple queries of its own, and the NotificationResponses it is sent."""

    def __init__(self, notifier: Notifier, server: PooledServer) -> None:
        self.notifier = notifier
        self.addr = server.addr
        self.transport = server.transport
        self.writer = server.writer  # a StreamWriter closes its transport when collected
        self.framer = pq.Framer(1 << 30)
        self.answers: deque[Callable[[bool], None]] = deque()
        self.failed = False
        self.closed = False
        self.transport.set_protocol(self)

    def send(self, sql: str, answered: Callable[[bool], None]) -> None:
        self.answers.append(answered)
        self.transport.write(pq.query(sql))

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except pq.ProtocolError:
            self.transport.abort()
            return
        for kind, msg in messages:
            if kind == pq.NOTIFICATION_RESPONSE:
                self.notifier.notification(msg, self.addr)
            elif kind == pq.ERROR_RESPONSE:
                self.failed = True
                self.notifier.ctx.warn(
                    "listener_error", pool=self.notifier.pool.label,
                    error=pq.parse_error_fields(msg).get("M", ""),
                )  # fmt: skip
            elif kind == pq.READY_FOR_QUERY and self.answers:
                ok, self.failed = not self.failed, False
                self.answers.popleft()(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.notifier.lost(self)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.transport.write(pq.TERMINATE)
            self.transport.close()


# --- metrics ----------------------------------------------------------------------------------

P = "pg_ambassador_"


def metric_families(pools: Sequence[NotifyPool]) -> Iterator[Metric]:
    labels = ["database", "user"]
    channels = GaugeMetricFamily(
        P + "listen_channels", "channels the pool's listener connection LISTENs to",
        labels=labels,
    )  # fmt: skip
    listening = GaugeMetricFamily(
        P + "listening_clients", "clients listening on at least one channel", labels=labels
    )
    reconnects = CounterMetricFamily(
        P + "listener_reconnects",
        "listener connections opened again after one was lost (what was notified "
        "meanwhile is lost, as for a direct connection)",
        labels=labels,
    )
    down = CounterMetricFamily(
        P + "listener_down_seconds",
        "seconds the listener connection was lost while clients listened",
        labels=labels,
    )
    delivered = CounterMetricFamily(
        P + "notifications_delivered", "NotificationResponses written to clients",
        labels=labels,
    )  # fmt: skip
    slow = CounterMetricFamily(
        P + "notify_clients_closed",
        "clients closed for letting notifications pile up (a long transaction, or not reading)",
        labels=labels,
    )
    for pool in pools:
        notifier = pool.notifier
        key = [pool.database, pool.user]
        channels.add_metric(key, sum(1 for entry in notifier.on.values() if entry is True))
        clients: set[Any] = set()
        for members in notifier.clients.values():
            clients |= members
        listening.add_metric(key, len(clients))
        reconnects.add_metric(key, notifier.reconnects)
        down.add_metric(key, notifier.down_seconds)
        delivered.add_metric(key, notifier.delivered)
        slow.add_metric(key, notifier.slow_closed)
    yield channels
    yield listening
    yield reconnects
    yield down
    yield delivered
    yield slow
