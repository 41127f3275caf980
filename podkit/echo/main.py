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
from podkit.runtime import Runtime, listening


class EchoServer:
    def __init__(self, settings: EchoSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.log = runtime.log
        self.runtime = runtime
        self.handlers: set[asyncio.Task[None]] = set()
        self.idle: set[asyncio.StreamWriter] = set()
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
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.active.inc()
        try:
            while not self.runtime.draining:
                self.idle.add(writer)
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
                    self.idle.discard(writer)
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
            self.handlers.discard(task)

    async def serve(self) -> None:
        host, port = split_host_port(self.settings.listen)
        with listening(self.settings, "listen"):
            server = await asyncio.start_server(
                self.handle, host, port, limit=self.settings.max_line_bytes
            )
        bound = server.sockets[0].getsockname()
        self.log.info("listening", addr=f"{bound[0]}:{bound[1]}")
        self.runtime.set_ready(True)
        await self.runtime.wait_drain()
        # Drain: stop accepting, close connections waiting for a line, finish the rest.
        server.close()
        for writer in list(self.idle):
            writer.close()
        if self.handlers:
            self.log.info("finishing_in_flight", connections=len(self.handlers))
            await asyncio.wait(set(self.handlers))
        await server.wait_closed()


async def run(settings: EchoSettings, runtime: Runtime) -> None:
    await EchoServer(settings, runtime).serve()
