"""`podkit echo`: the line-echo server itself.

It exists to prove the runtime end to end (settings, readiness, metrics, drain, PID 1)
and as the template a new helper starts from. `--delay` stands for work in flight: a
drain lets every line that was already received get its answer before the exit.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge

from podkit.config import split_host_port
from podkit.echo.settings import EchoSettings
from podkit.listener import Listener, stream_handler
from podkit.runtime import Runtime, listening


class EchoConnection:
    """One client, as the listener sees it (`podkit.listener.Connection`)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.idle = False  # waiting for the client's next line
        self.finishing = False

    def ask_to_finish(self) -> bool:
        # A line in flight gets its answer first; a connection waiting for one ends now.
        self.finishing = True
        if self.idle:
            self.writer.close()
        return True

    def close_now(self) -> None:
        self.writer.close()


class EchoServer:
    def __init__(self, settings: EchoSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.log = runtime.log
        self.runtime = runtime
        self.listener: Listener[EchoConnection] = Listener()
        self.lines = Counter("echo_lines_total", "lines echoed", registry=runtime.registry)
        self.rejected = Counter(
            "echo_rejected_lines_total", "lines over --max-line-bytes", registry=runtime.registry
        )
        self.in_flight = Gauge(
            "echo_lines_in_flight", "lines read and not yet answered", registry=runtime.registry
        )
        self.active = Gauge(
            "echo_connections_active", "open client connections", registry=runtime.registry
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = EchoConnection(writer)
        self.listener.add(conn)
        self.active.inc()
        try:
            while not conn.finishing:
                conn.idle = True
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    self.rejected.inc()
                    self.log.warning("line_too_long", limit=self.settings.max_line_bytes)
                    writer.write(b"ERR line too long\n")
                    return
                finally:
                    conn.idle = False
                with self.in_flight.track_inprogress():
                    if self.settings.delay:
                        await asyncio.sleep(self.settings.delay)
                    writer.write(line)
                    await writer.drain()
                self.lines.inc()
        except ConnectionError:
            pass
        finally:
            self.active.dec()
            writer.close()
            self.listener.discard(conn)

    async def serve(self) -> None:
        host, port = split_host_port(self.settings.listen)
        with listening(self.settings, "listen"):
            addr = await self.listener.start(
                stream_handler(self.handle, limit=self.settings.max_line_bytes), host, port
            )
        self.log.info("listening", addr=addr)
        self.runtime.set_ready(True)
        await self.runtime.wait_drain()
        if self.listener.connections:
            self.log.info("finishing_in_flight", connections=len(self.listener.connections))
        # No timeout of its own: the runtime cancels the helper after --shutdown-timeout,
        # and the connections left are closed on the way out.
        await self.listener.shutdown()
        await self.listener.wait_closed()


async def run(settings: EchoSettings, runtime: Runtime) -> None:
    await EchoServer(settings, runtime).serve()
