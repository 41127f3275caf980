"""One shape for every TCP listener: the bind, the open connections, `shutdown()`.

Shaped like uvicorn's `Server`, whose `ServerState.connections` is the one set of open
connections and whose `shutdown()` stops accepting, asks each connection to finish,
waits, then closes the rest. Here each connection is whatever the helper serves it with
(an asyncio Protocol, a stream handler's object) implementing `Connection`; it joins the
set with `add()` when it opens and leaves it with `discard()` when it ends, which is all
the listener costs a connection: nothing runs per message.

A helper drains a listener in one of two ways:

- `await listener.shutdown(grace)`: stop accepting, `finish()`, close the rest;
- `await listener.finish(grace)`, then `listener.close()`: the same steps, but the
  listener keeps accepting until the end, for a server that answers newcomers itself
  while it drains (pg-ambassador tells them "shutting down", as PostgreSQL does).

`grace=None` waits until the helper is cancelled (the runtime does so after
`--shutdown-timeout`); `shutdown()` closes the connections left on the way out either
way. `close()` closes everything at once, also while a `shutdown()` waits (a second
request to stop: uvicorn's force_exit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar


class Connection(Protocol):
    """What the listener needs of one open connection."""

    def ask_to_finish(self) -> bool:
        """Finish what is in flight, then close (an idle connection closes now).

        Returns whether the drain waits for it: False for one that holds nothing worth
        waiting for (it sent nothing yet, say); it is closed with the rest at the end."""
        ...

    def close_now(self) -> None:
        """Close now: the drain is over, or it was forced."""
        ...


C = TypeVar("C", bound=Connection)


def stream_handler(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    limit: int,
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for `start()` that serves each connection with
    `handler(reader, writer)`, as `asyncio.start_server` does."""

    def factory() -> asyncio.Protocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=limit), handler)

    return factory


class Listener(Generic[C]):
    """A listening socket and the set of connections it accepted that are still open."""

    def __init__(self) -> None:
        self.connections: set[C] = set()
        self.server: asyncio.AbstractServer | None = None
        self.addr = ""
        """host:port actually bound (the port differs from the setting when it was 0)."""
        self._waiting: set[C] | None = None  # while finishing: the ones the drain waits for
        self._finished = asyncio.Event()

    # --- the bind --------------------------------------------------------------------------

    async def start(
        self, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, **kwargs: Any
    ) -> str:
        """Listen on host:port; returns the address bound. `kwargs` go to
        `loop.create_server` (backlog...).

        Call it inside `with podkit.runtime.listening(settings, field):`, which turns a
        failure to bind into the one "cannot listen on ADDR: set --FLAG" error. (It is not
        called here: podkit.runtime imports the admin server, which is built on this
        module, so this module cannot import podkit.runtime back.)"""
        kwargs.setdefault("reuse_address", True)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, host, port, **kwargs)
        bound = self.server.sockets[0].getsockname()
        self.addr = f"{bound[0]}:{bound[1]}"
        return self.addr

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2]) if self.addr else 0

    # --- the set of open connections -------------------------------------------------------

    def add(self, conn: C) -> None:
        """A connection opened (call it from connection_made or the stream handler)."""
        self.connections.add(conn)

    def discard(self, conn: C) -> None:
        """A connection ended (call it from connection_lost or the handler's finally)."""
        self.connections.discard(conn)
        waiting = self._waiting
        if waiting is not None:
            waiting.discard(conn)
            if not waiting:
                self._finished.set()

    # --- draining ----------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, ask each connection to finish, wait up to `grace` seconds (None:
        until cancelled), then close the rest."""
        self.stop_accepting()
        try:
            await self.finish(grace)
        finally:
            self.close()

    async def finish(self, grace: float | None = None) -> None:
        """Ask each open connection to finish and wait up to `grace` seconds (None:
        until cancelled) for those that said to wait for them.

        The steps of `shutdown()` a helper takes itself when it keeps accepting while it
        drains: newcomers still arrive (it answers them as it sees fit), and it calls
        `close()` when it is done."""
        if self._waiting is None:
            self._waiting = {conn for conn in list(self.connections) if conn.ask_to_finish()}
            # (asking may close some at once; those left the set already)
            self._waiting &= self.connections
            if not self._waiting:
                self._finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), grace)

    def close(self) -> None:
        """Stop accepting and close every open connection now."""
        self.stop_accepting()
        for conn in list(self.connections):
            conn.close_now()
        self._finished.set()  # a finish() still waiting returns

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()
