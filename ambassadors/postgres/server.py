"""One connection to PostgreSQL: login, then an asyncio Protocol that feeds its client.

After login (streams, once) the transport is switched to `ServerConn`, whose
`data_received` walks the message headers of each chunk and forwards runs of bytes to the
client without copying them. Only a few message types are looked at: ReadyForQuery (the
transaction boundary), ParseComplete/CloseComplete (the pooler's own injected Parse and
Close are swallowed), ErrorResponse (what the server skipped until Sync), ParameterStatus
(settings to replay) and CopyInResponse; while the first use of a statement shared from
another client (RETRY) or a statement Describe (DESCRIBE) is answered, also BindComplete,
ParameterDescription, RowDescription and NoData. A message that is not looked at may be
forwarded in pieces as it arrives, so a 100 MB DataRow is never buffered.

`expect` is the queue of what the server owes: one entry per Parse or Close sent (was it
the client's, or the pooler's to swallow?) and one per Sync or Query (each owes a
ReadyForQuery). An ErrorResponse in the extended protocol makes the server skip every
message until the next Sync, so the entries up to that Sync are dropped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from podkit.ambassadors.postgres import protocol as pq
from podkit.ambassadors.postgres.auth import AuthError, ServerAuth
from podkit.ambassadors.postgres.notify import as_client_pid
from podkit.ambassadors.postgres.protocol import (
    BIND_COMPLETE_MSG,
    CLOSE_COMPLETE_MSG,
    COPY_IN_RESPONSE,
    DATA_ROW,
    ERROR_RESPONSE,
    FLUSH_MSG,
    NO_DATA,
    NOTIFICATION_RESPONSE,
    PARAMETER_DESCRIPTION,
    PARAMETER_STATUS,
    PARSE_COMPLETE_MSG,
    READY_FOR_QUERY,
    ROW_DESCRIPTION,
)
from podkit.ambassadors.postgres.tls import SSL_REQUEST, ServerTls, TlsError, after_ssl_answer
from podkit.ambassadors.postgres.tls import describe as describe_tls

if TYPE_CHECKING:
    from podkit.ambassadors.postgres.context import Context, Stats
    from podkit.ambassadors.postgres.routing import PoolTarget
    from podkit.ambassadors.postgres.settings import PgAmbassadorSettings


class ServerPool(Protocol):
    """What a server connection needs of its pool (pool.Pool)."""

    ctx: Context
    stats: Stats
    settings: PgAmbassadorSettings
    target: PoolTarget
    bytes_sent: int
    query_time: float
    queries: int
    xacts: int

    def parsed(self, key: bytes) -> None: ...
    def check_row_type(
        self, key: bytes, row_type: bytes, client: ServedClient | None, name: bytes
    ) -> None: ...
    def statements_changed(self, keys: set[bytes]) -> None: ...
    def release(self, server: ServerConn) -> None: ...
    def server_lost(self, server: ServerConn) -> None: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def writelines(self, data: list[bytes]) -> None: ...


class ServedClient(Protocol):
    """What a server connection needs of the client it serves: client.ClientConn, or the
    pool's Orphan that stands in for one that left."""

    @property
    def transport(self) -> Writer: ...

    closed: bool
    unsynced: bool
    pinned: str | None
    params: dict[str, str]
    params_version: int
    # name -> generation of its text's result type when prepared (Pool.changed)
    stmt_gen: dict[bytes, int]

    def server_done(self, server: ServerConn) -> None: ...
    def server_lost(self, server: ServerConn) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def forget_statement(self, name: bytes) -> None: ...
    def restore_statement(self, name: bytes, key: bytes | None) -> None: ...
    def retry(self, messages: list[tuple[int, bytes]], name: bytes) -> None: ...
    def resume_held(self, check: bool = True) -> None: ...


class Rerun(NamedTuple):
    """A batch to run again at ReadyForQuery (a first use that proved stale)."""

    client: ServedClient
    rest: list[tuple[int, bytes]]
    name: bytes
    error: bytes  # PostgreSQL's error, held back
    pooler_sync: bool  # the pooler sent the Sync that ends the failed batch


# What the server owes (ServerConn.expect, in order): one entry per request whose answer
# the pooler must see, each a NamedTuple whose `kind` (first) says which. The kinds' order
# matters: kind <= POOL_PARSE is a Parse, kind >= RETRY is watched (LOOK_WATCH).
CLIENT_PARSE, POOL_PARSE, CLIENT_CLOSE, POOL_CLOSE, READY, REFUSED, RETRY, DESCRIBE_ROWS = range(8)


class ClientParse(NamedTuple):
    """A client's Parse: its ParseComplete goes to the client. If the server skips it,
    `client` forgets `name`, and the server the statement `key` it was sent under."""

    kind: int = CLIENT_PARSE
    client: ServedClient | None = None  # None: nothing to undo (the unnamed statement)
    name: bytes = b""
    key: bytes | None = None  # None: answered by a no-op Parse (the server had it)


class PoolParse(NamedTuple):
    """The pooler's re-Parse of a statement the server lacked: its answer is swallowed;
    `key` (the statement) is forgotten if it fails."""

    kind: int = POOL_PARSE
    key: bytes | None = None


class ClientClose(NamedTuple):
    """A client's Close: its CloseComplete goes to the client; if the server skips it,
    `client` gets statement `name` (`key`) back."""

    kind: int = CLIENT_CLOSE
    client: ServedClient | None = None  # None: a portal or the unnamed statement
    name: bytes = b""
    key: bytes | None = None


class PoolClose(NamedTuple):
    """The pooler's Close of an evicted or stale statement: its answer is swallowed."""

    kind: int = POOL_CLOSE


class Ready(NamedTuple):
    """A Sync, Query or FunctionCall: owes a ReadyForQuery."""

    kind: int = READY


class Refused(NamedTuple):
    """A Bind made to fail (FAIL_BIND) whose error is replaced by `error`."""

    kind: int = REFUSED
    error: bytes = b""


class Retry(NamedTuple):
    """The first use of a just-Parsed shared statement: if it proves stale, `rest` (the
    part of the batch from it) runs again for `client` on a fresh statement `name`."""

    kind: int = RETRY
    client: ServedClient | None = None
    rest: list[tuple[int, bytes]] = []
    name: bytes = b""


class DescribeRows(NamedTuple):
    """A statement Describe whose row type the pool compares with what its clients were
    told; `verify`: the pooler's own, the client's batch held meanwhile."""

    kind: int = DESCRIBE_ROWS
    client: ServedClient | None = None
    key: bytes = b""
    name: bytes = b""
    verify: bool = False


Owed = ClientParse | PoolParse | ClientClose | PoolClose | Ready | Refused | Retry | DescribeRows
# The entries that carry nothing, made once (the hot path appends these).
OWE_READY = Ready()
OWE_PARSE = ClientParse()
OWE_POOL_PARSE = PoolParse()
OWE_CLOSE = ClientClose()
OWE_POOL_CLOSE = PoolClose()


# Types looked at in the server's stream; everything else passes untouched.
_LOOK = bytearray(256)
for _t in (
    READY_FOR_QUERY, ERROR_RESPONSE, PARSE_COMPLETE_MSG, CLOSE_COMPLETE_MSG,
    PARAMETER_STATUS, COPY_IN_RESPONSE, NOTIFICATION_RESPONSE,
):  # fmt: skip
    _LOOK[_t] = 1
# ... and while a statement's first use (RETRY) or a statement Describe (DESCRIBE) is
# answered: BindComplete, ParameterDescription, RowDescription, NoData.
LOOK_WATCH = bytearray(_LOOK)
for _t in (BIND_COMPLETE_MSG, PARAMETER_DESCRIPTION, ROW_DESCRIPTION, NO_DATA):
    LOOK_WATCH[_t] = 1
del _t

FAIL_STATEMENT = b"pgamb_refused"
FAIL_BIND = pq.message(b"B", b"\x00" + FAIL_STATEMENT + b"\x00\x00\x00\x00\x00\x00\x00")
# Parse of the unnamed statement with an empty query: a real, in-order ParseComplete for a
# client Parse whose statement this server already has.
EMPTY_PARSE = pq.message(b"P", b"\x00\x00\x00\x00")
# in ServerConn.stale: a statement to Close only outside a transaction (not a batch number)
AFTER_TRANSACTION = -1
# Close of a statement that never exists: a real, in-order CloseComplete.
NOOP_CLOSE = pq.close_statement(b"pgamb_none")

_unpack_u32 = struct.Struct("!I").unpack_from


# "cached plan must not change result type", known by what raised it (the text is
# localised)
CACHED_PLAN_CHANGED = b"RRevalidateCachedQuery\x00"


class ServerLoginError(Exception):
    """PostgreSQL refused the login (its ErrorResponse fields) or could not be reached."""

    def __init__(
        self, message: str, sqlstate: str = "08006", fatal_fields: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.fields = fatal_fields or {}


class ServerConn(asyncio.Protocol):
    """A logged-in server connection, idle in its pool or attached to one client."""

    def __init__(self, pool: ServerPool, addr: tuple[str, int]) -> None:
        self.pool = pool
        self.stats = pool.stats
        self.addr = addr
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: ServedClient | None = None
        # idle, but kept by the client that last held it (Pool.park); None otherwise
        self.parked_by: ServedClient | None = None
        self.params: dict[str, str] = {}
        self.process_id = 0
        self.secret_key = 0
        self.created = time.monotonic()
        self.last_used = self.created
        self.attached_at = 0.0
        self.expect: deque[Owed] = deque()
        self.status = b"I"
        self.copy_in = False
        self.skip = 0  # bytes of a message being passed through in pieces
        self.tail = b""
        # prepared statements: Parse body after the name -> (server name, batch generation)
        self.prepared: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()
        self.next_name = 0
        self.batch = 0
        self.unnamed: tuple[object, bytes] | None = None  # whose unnamed statement it holds
        # non-reported settings set on it for its client (replayed, or read back)
        self.extra: dict[str, str] = {}
        self.dirty = False  # session state left by a pinned or session-mode client
        self.closed = False
        self.said_fatal = False  # forwarded a FATAL or PANIC: PostgreSQL closes right after
        self.internal: Callable[[bool, bytes, str], None] | None = None
        self.internal_rows: list[list[str | None]] | None = None  # its rows, if asked
        self.internal_error = ""
        self.release_pending = False
        self.query_started = 0.0
        self.request_time = 0.0  # when its latest request started (0: none yet)
        self.cancel_sent = False
        self.writer: asyncio.StreamWriter | None = None
        self.tls = False
        self.tls_info = ""  # protocol/cipher, for SHOW SERVERS
        self.read_paused = False
        self.synced: tuple[object, int] | None = None  # (client, its settings version) set
        # The replay key of the client whose settings it holds (None: unknown; any change
        # to params or extra clears it).
        self.settings_key: tuple[object, ...] | None = None
        self.owner_pid = 0  # BackendKeyData pid of the client that last held it
        self.cancelling = 0  # forwarded cancels PostgreSQL has not taken yet
        self.release_deferred = False  # released meanwhile: the pool gets it once they landed
        # statements dropped from `prepared` as possibly stale: (server name, batch), to Close
        self.stale: list[tuple[bytes, int]] = []
        self.bound: list[bytes] = []  # statements bound or described since ReadyForQuery
        self.look = _LOOK
        # whose held batch goes on (DESCRIBE), and whether the check failed (the server
        # then skips that batch up to its Sync, so it must go out whole, unchecked)
        self.resume_client: tuple[ServedClient, bool] | None = None
        self.retry: Rerun | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.pool.bytes_sent += len(data)
        if self.internal is not None:
            self._internal_data(data)
            return
        client = self.client
        if client is None:
            # Nothing is owed to anyone (an orphan being cleaned runs as internal):
            # a NoticeResponse or ParameterStatus out of band; keep params current.
            self._idle_data(data)
            return
        if self.tail:
            data = self.tail + data
            self.tail = b""
        n = len(data)
        pos = 0
        skip = self.skip
        if skip:
            if skip >= n:
                self.skip = skip - n
                client.transport.write(data)
                return
            pos = skip
            self.skip = 0
        start = 0  # start of the run not yet written
        pieces: list[bytes] | None = None
        look = self.look
        release = False
        retry = None
        while pos + 5 <= n:
            kind = data[pos]
            end = pos + 1 + _unpack_u32(data, pos + 1)[0]
            if not look[kind]:
                if end > n:
                    self.skip = end - n
                    pos = n
                    break
                pos = end
                continue
            if end > n:
                break
            forward: bytes | bool | None = True
            if kind == READY_FOR_QUERY:
                expect = self.expect
                while expect:
                    if expect.popleft()[0] == READY:
                        break
                status = data[pos + 5 : pos + 6]
                self.status = status
                self.copy_in = False
                self.batch += 1
                if self.bound:
                    self.bound.clear()
                if look is not _LOOK:
                    self.look = look = self._look()
                if self.retry is not None:
                    retry, self.retry = self.retry, None
                    if status == b"I" and not expect and retry.client is client:
                        forward = False  # the client sees the batch's end after the rerun
                    else:  # not transparent after all: what PostgreSQL said
                        forward = retry.error if retry.pooler_sync else retry.error + data[pos:end]
                        retry = None
                if retry is None and not expect:
                    if self.query_started:
                        self.pool.query_time += time.monotonic() - self.query_started
                    self.query_started = 0.0
                    if (status == b"I" and not client.unsynced) or client.closed:
                        release = True
            elif kind == PARSE_COMPLETE_MSG:
                expect = self.expect
                if expect and expect[0][0] <= POOL_PARSE:
                    parsed: ClientParse | PoolParse = expect.popleft()  # type: ignore[assignment]
                    if parsed[0] == POOL_PARSE:
                        forward = False
                    if parsed.key is not None:
                        self.pool.parsed(parsed.key)
            elif kind in (BIND_COMPLETE_MSG, ROW_DESCRIPTION, NO_DATA, PARAMETER_DESCRIPTION):
                expect = self.expect
                if expect and expect[0][0] == DESCRIBE_ROWS:
                    described: DescribeRows = expect[0]  # type: ignore[assignment]
                    forward = not described.verify  # the pooler's own: swallowed
                    if kind != PARAMETER_DESCRIPTION:  # RowDescription or NoData
                        expect.popleft()
                        self._described(described, data[pos:end])
                if kind != PARAMETER_DESCRIPTION and expect and expect[0][0] == RETRY:
                    expect.popleft()  # a first use went well: nothing to run again
                self.look = look = self._look()
            elif kind == CLOSE_COMPLETE_MSG:
                expect = self.expect
                if expect and (expect[0][0] == CLIENT_CLOSE or expect[0][0] == POOL_CLOSE):
                    forward = expect.popleft()[0] != POOL_CLOSE
            elif kind == ERROR_RESPONSE:
                forward = self._error(data[pos:end])
            elif kind == PARAMETER_STATUS:
                name, value = pq.parse_parameter_status(data[pos:end])
                self.params[name] = value
                self.settings_key = None
                client.params[name] = value
                client.params_version += 1
            elif kind == COPY_IN_RESPONSE:
                self.copy_in = True
            elif kind == NOTIFICATION_RESPONSE:
                forward = self._notification(data[pos:end])
            if forward is not True:
                if pieces is None:
                    pieces = []
                if pos > start:
                    pieces.append(data[start:pos])
                if forward:
                    pieces.append(forward)
                start = end
            pos = end
        if pos < n:
            # an incomplete message that is looked at: keep it
            self.tail = data[pos:]
            n = pos
        if pieces is None:
            if start == 0 and n == len(data):
                client.transport.write(data)
            elif n > start:
                client.transport.write(data[start:n])
        else:
            if n > start:
                pieces.append(data[start:n])
            if pieces:
                client.transport.writelines(pieces)
        if release:
            client.server_done(self)
        elif retry is not None and not client.closed:
            client.retry(retry.rest, retry.name)
        if self.resume_client is not None:
            (held, failed), self.resume_client = self.resume_client, None
            if held is client and not held.closed:
                held.resume_held(check=not failed)

    def _error(self, msg: bytes) -> bytes | bool | None:
        """An ErrorResponse: drop what the server will skip; maybe replace the message."""
        self.copy_in = False
        if b"\x00VFATAL\x00" in msg or b"\x00VPANIC\x00" in msg:  # V: never translated
            self.said_fatal = True
        stale = b"C0A000\x00" in msg and CACHED_PLAN_CHANGED in msg
        if stale and self.bound:
            # A schema change altered the result type of a statement bound here: no server
            # of the pool may hand it out again, and the clients that prepared it get
            # PostgreSQL's error on their next use, as each would have on its own server.
            self.pool.statements_changed(set(self.bound))
        expect = self.expect
        while expect and expect[0][0] == DESCRIBE_ROWS:  # a statement Describe that failed
            self._describe_failed(expect.popleft())  # type: ignore[arg-type]
        if not expect or expect[0][0] == READY:
            self.look = self._look()
            return True
        if expect[0][0] == RETRY:
            retry: Retry = expect.popleft()  # type: ignore[assignment]
            self.look = self._look()
            if stale and retry.client is not None:
                # decided at ReadyForQuery: transparent only if nothing else was lost
                if expect and expect[0][0] == READY:
                    self.retry = Rerun(retry.client, retry.rest, retry.name, msg, False)
                    return False
                if not expect and retry.rest[-1][0] == FLUSH_MSG:
                    # Parse, Describe, Flush (asyncpg's prepare): the client sent no Sync
                    # yet, so the pooler ends the failed batch itself
                    self.transport.write(pq.SYNC)
                    expect.append(OWE_READY)
                    self.retry = Rerun(retry.client, retry.rest, retry.name, msg, True)
                    return False
            if not expect or expect[0][0] == READY:
                return True
        replaced: bytes | bool = True
        first = True
        while expect and expect[0][0] != READY:
            entry = expect.popleft()
            if entry[0] == REFUSED:
                if first and FAIL_STATEMENT in msg:
                    replaced = entry.error  # type: ignore[union-attr]
            elif entry[0] == CLIENT_PARSE:
                parse: ClientParse = entry  # type: ignore[assignment]
                if parse.client is not None:  # the client's Parse did not happen
                    parse.client.forget_statement(parse.name)
                    if parse.key is not None:
                        self.prepared.pop(parse.key, None)
            elif entry[0] == POOL_PARSE:
                if entry.key is not None:  # type: ignore[union-attr]
                    self.prepared.pop(entry.key, None)  # type: ignore[union-attr]
            elif entry[0] == CLIENT_CLOSE:
                close: ClientClose = entry  # type: ignore[assignment]
                if close.client is not None:
                    close.client.restore_statement(close.name, close.key)
            elif entry[0] == DESCRIBE_ROWS:
                self._describe_failed(entry)  # type: ignore[arg-type]
            first = False
        self.look = self._look()
        return replaced

    def _described(self, entry: DescribeRows, msg: bytes) -> None:
        """The row type of a statement Describe: the pool compares it with what clients
        were told; the batch held for the pooler's own Describe goes on after."""
        client = None if entry.verify else entry.client
        self.pool.check_row_type(entry.key, pq.row_type(msg), client, entry.name)
        if entry.verify and entry.client is not None:
            self.resume_client = (entry.client, False)

    def _describe_failed(self, entry: DescribeRows) -> None:
        if entry.verify and entry.client is not None:
            # the pooler's own: the client's batch goes on (and is skipped)
            self.resume_client = (entry.client, True)

    def watch(self, entry: Retry | DescribeRows) -> None:
        """Owe a Retry or DescribeRows entry: look at the answers they wait for."""
        self.expect.append(entry)
        self.look = LOOK_WATCH

    def _look(self) -> bytearray:
        for entry in self.expect:
            if entry[0] >= RETRY:
                return LOOK_WATCH
        return _LOOK

    def _notification(self, msg: bytes) -> bytes | bool:
        """Session mode: forwarded, its pid as the client knows it (notify.as_client_pid).
        Transaction mode: dropped; the pool's listener delivers it once (notify.py)."""
        if self.pool.target.pool_mode != "session":
            return False
        return as_client_pid(self.pool.ctx.server_pids, self.addr, msg)

    def _idle_data(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            for kind, msg in pq.iter_messages(self.tail + data):
                if kind == PARAMETER_STATUS:
                    name, value = pq.parse_parameter_status(msg)
                    self.params[name] = value
                    self.settings_key = None
            self.tail = b""
            return
        self.tail += data  # an incomplete message: wait for the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pids = self.pool.ctx.server_pids
        if pids.get((self.addr, self.process_id)) is self:
            del pids[(self.addr, self.process_id)]
        self.pool.server_lost(self)
        if self.internal is not None:
            callback, self.internal = self.internal, None
            callback(False, b"", "server connection lost")
        client = self.client
        if client is not None:
            client.server_lost(self)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume()

    # --- the pooler's own queries ----------------------------------------------------------

    def run_internal(
        self,
        sql: str,
        done: Callable[[bool, bytes, str], None],
        rows: list[list[str | None]] | None = None,
    ) -> None:
        """Send a simple query whose whole answer is swallowed; done(ok, status, error).
        Its rows are appended to `rows` when given."""
        self.internal = done
        self.internal_rows = rows
        self.internal_error = ""
        self.tail = b""
        self.skip = 0
        self.transport.write(pq.query(sql))

    def _internal_data(self, data: bytes) -> None:
        buf = self.tail + data
        pos = 0
        n = len(buf)
        while pos + 5 <= n:
            end = pos + 1 + _unpack_u32(buf, pos + 1)[0]
            if end > n:
                break
            kind = buf[pos]
            if kind == PARAMETER_STATUS:
                name, value = pq.parse_parameter_status(buf[pos:end])
                self.params[name] = value
                self.settings_key = None
            elif kind == DATA_ROW:
                if self.internal_rows is not None:
                    self.internal_rows.append(pq.parse_data_row(buf[pos:end]))
            elif kind == ERROR_RESPONSE:
                if not self.internal_error:
                    self.internal_error = pq.parse_error_fields(buf[pos:end]).get("M", "error")
            elif kind == READY_FOR_QUERY:
                self.status = buf[pos + 5 : pos + 6]
                callback, self.internal = self.internal, None
                self.tail = buf[end:]
                if callback is not None:
                    callback(not self.internal_error, self.status, self.internal_error)
                if self.tail and self.internal is None:
                    rest, self.tail = self.tail, b""
                    self.data_received(rest)
                return
            pos = end
        self.tail = buf[pos:]

    # --- prepared statements -----------------------------------------------------------------

    def statement(self, key: bytes, out: list[bytes]) -> bytes:
        """The server name of statement `key`, re-Parsed (answer swallowed) if missing."""
        entry = self.prepared.get(key)
        if entry is not None:
            self.prepared.move_to_end(key)
            if entry[1] != self.batch:
                self.prepared[key] = (entry[0], self.batch)
            self.stats.prepared_hits += 1
            return entry[0]
        name = self.add_statement(key, out)
        self.stats.prepared_reparses += 1
        out.append(pq.parse_message(name, key))
        self.expect.append(PoolParse(key=key))
        return name

    def add_statement(self, key: bytes, out: list[bytes]) -> bytes:
        """Register a new statement (the caller sends its Parse); evict the LRU if full."""
        prepared = self.prepared
        if self.stale:
            self._close_stale(out)
        limit = self.pool.settings.max_prepared_statements
        while len(prepared) >= limit:
            old_key, (old_name, used) = next(iter(prepared.items()))
            if used == self.batch:
                break  # used in the batch in flight: closing it would close its portals
            del prepared[old_key]
            out.append(pq.close_statement(old_name))
            self.expect.append(OWE_POOL_CLOSE)
            self.stats.prepared_evictions += 1
        self.next_name += 1
        name = b"pgamb_%d" % self.next_name
        prepared[key] = (name, self.batch)
        return name

    def forget_prepared(self) -> None:
        self.prepared.clear()
        self.stale.clear()
        self.unnamed = None

    def drop_statements(self, keys: set[bytes]) -> None:
        """Hand out none of `keys` again (they may be stale); each is Closed later."""
        prepared = self.prepared
        for key in keys:
            entry = prepared.pop(key, None)
            if entry is not None:
                self.stale.append(entry)

    def drop_inferred_statements(self) -> None:
        """Hand out no statement whose parameter types PostgreSQL inferred (a schema
        change may type them otherwise now); each is Closed later."""
        stale = [key for key in self.prepared if pq.infers_param_types(key)]
        if stale:
            self.drop_statements(set(stale))
            self.stats.prepared_schema_drops += len(stale)

    def retire_statement(self, key: bytes) -> None:
        """Hand out `key`'s statement no more (a fresh one replaces it); Close it later,
        outside the batch in flight and the open transaction, whose portals may still
        read from it."""
        entry = self.prepared.pop(key, None)
        if entry is not None:
            self.stale.append((entry[0], entry[1] if self.status == b"I" else AFTER_TRANSACTION))

    def _close_stale(self, out: list[bytes]) -> None:
        keep = []
        for name, used in self.stale:
            # in the batch in flight, or retired in an open transaction: closing it would
            # close its portals
            if used == self.batch or (used == AFTER_TRANSACTION and self.status != b"I"):
                keep.append((name, used))
                continue
            out.append(pq.close_statement(name))
            self.expect.append(OWE_POOL_CLOSE)
        self.stale = keep

    # --- cancel ----------------------------------------------------------------------------

    def cancel(self, done: Callable[[], None] | None = None) -> None:
        """Cancel what runs here. Until PostgreSQL has taken the request the pool gives
        this server to nobody (a late cancel would hit the next user's query); `done()`
        once it has (or the attempt failed)."""
        self.cancelling += 1

        def delivered() -> None:
            self.cancelling -= 1
            if not self.cancelling and self.release_deferred:
                self.release_deferred = False
                self.pool.release(self)
            if done is not None:
                done()

        send_cancel(self.addr, self.process_id, self.secret_key, delivered)

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(pq.TERMINATE)
            self.transport.close()


# --- login -------------------------------------------------------------------------------------


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One message of a login: (type byte, body)."""
    header = await reader.readexactly(5)
    length = _unpack_u32(header, 1)[0]
    if length < 4 or length > 1024 * 1024:
        raise ServerLoginError(f"server sent a message of invalid length {length}")
    return header[:1], await reader.readexactly(length - 4)


async def login(
    pool: ServerPool,
    *,
    host: str,
    port: int,
    addrs: list[tuple[str, int]],
    user: str,
    database: str,
    password: str | None,
    tls: ServerTls,
    scram_keys: Any = None,
) -> ServerConn:
    """Connect to the first of `addrs` (what `host` resolves to now) that answers, log in
    and return the logged-in connection (its transport switched over)."""
    error: Exception | None = None
    for addr in addrs:
        try:
            reader, writer = await asyncio.open_connection(addr[0], addr[1])
        except OSError as exc:
            error = exc
            continue
        try:
            if tls.request:
                writer.write(SSL_REQUEST)
                answer = await reader.read(1)
                if after_ssl_answer(tls, answer + bytes(reader._buffer)):  # type: ignore[attr-defined]
                    await writer.start_tls(
                        tls.context,  # type: ignore[arg-type]
                        server_hostname=tls.server_hostname(host),
                    )
            return await _login_on(pool, addr, reader, writer, user, database, password, scram_keys)
        except TlsError as exc:
            writer.transport.abort()
            raise ServerLoginError(f"TLS with {host}:{port}: {exc}") from None
        except BaseException:
            writer.transport.abort()
            raise
    raise ServerLoginError(f"cannot connect to {host}:{port}: {error}")


async def _login_on(
    pool: ServerPool,
    addr: tuple[str, int],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    user: str,
    database: str,
    password: str | None,
    scram_keys: Any,
) -> ServerConn:
    conn = ServerConn(pool, addr)
    authenticator = ServerAuth(user, password, scram_keys=scram_keys)
    writer.write(pq.startup_message({"user": user, "database": database}))
    while True:
        kind, body = await read_message(reader)
        if kind == b"R":
            try:
                reply = authenticator.handle(kind, body)
            except AuthError as exc:
                raise ServerLoginError(str(exc), exc.sqlstate) from None
            if reply is not None:
                writer.write(reply)
        elif kind == b"E":
            fields = pq.parse_error_fields(kind + b"\x00\x00\x00\x00" + body)
            raise ServerLoginError(
                fields.get("M", "login failed"), fields.get("C", "08006"), fields
            )
        elif kind == b"S":
            name, value = pq.parse_parameter_status(kind + b"\x00\x00\x00\x00" + body)
            conn.params[name] = value
        elif kind == b"K":
            conn.process_id, conn.secret_key = struct.unpack("!ii", body[:8])
        elif kind == b"Z":
            conn.status = body[:1]
            break
        # NoticeResponse, NegotiateProtocolVersion: nothing to do
    transport = writer.transport
    leftover = bytes(reader._buffer)  # type: ignore[attr-defined]
    conn.transport = transport  # type: ignore[assignment]
    conn.writer = writer  # a StreamWriter closes its transport when garbage-collected
    conn.tls = transport.get_extra_info("sslcontext") is not None
    conn.tls_info = describe_tls(transport)
    transport.set_protocol(conn)
    pool.ctx.server_pids[(addr, conn.process_id)] = conn
    if leftover:
        conn.data_received(leftover)
    return conn


def send_cancel(
    addr: tuple[str, int],
    process_id: int,
    secret_key: int,
    done: Callable[[], None] | None = None,
) -> None:
    """Send a CancelRequest to the server on a new connection; `done()` once PostgreSQL
    closed it (it has signalled the backend then), or the attempt failed."""

    async def cancel() -> None:
        try:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), 5)
                writer.write(pq.cancel_request(process_id, secret_key))
                await writer.drain()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_reader.read(), 5)
                writer.close()
        finally:
            if done is not None:
                done()

    task = asyncio.get_running_loop().create_task(cancel())
    _CANCELS.add(task)
    task.add_done_callback(_CANCELS.discard)


_CANCELS: set[asyncio.Task[None]] = set()
