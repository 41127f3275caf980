"""A stand-in stats server that answers badly on purpose (for the stats-exporter tests).

No real server produces HTML error pages, truncated or huge bodies on demand, so this
small aiohttp app does, on its own thread and loop. `/flap` switches between a good
stub_status page and a 503 so state changes can be tested.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from podkit_dev.servers import HOST, free_port

GOOD_STUB = (
    "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n"
    "Reading: 0 Writing: 1 Waiting: 0 \n"
)


class StandInServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.truncated_port = free_port()
        self.flap_ok = False
        self.hits: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    @property
    def truncated_url(self) -> str:
        return f"http://{HOST}:{self.truncated_port}/stub_status"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/html":
            return web.Response(
                text="<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        if path == "/status500":
            return web.Response(status=500, text=GOOD_STUB)
        if path == "/nonnumeric":
            return web.Response(text=GOOD_STUB.replace(" 5 5 9", " 5 many 9"))
        if path == "/huge-declared":
            return web.Response(body=b"x" * (3 << 20))
        if path == "/huge-chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(48):
                await response.write(b"Active connections: 1\n" * 3000)
            await response.write_eof()
            return response
        if path == "/slow":
            await asyncio.sleep(3600)
        if path == "/flap":
            if self.flap_ok:
                return web.Response(text=GOOD_STUB)
            return web.Response(status=503, text="busy")
        if path == "/kv":
            return web.Response(text="queue: 17\nworkers: 4\nname: app\n")
        if path == "/json":
            return web.Response(text=json.dumps({"sessions": 3, "load": 0.5, "name": "x"}))
        return web.Response(status=404, text="not found")

    async def _truncated(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nActive connections: 1\n")
        await writer.drain()
        writer.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()
        self._raw = await asyncio.start_server(self._truncated, HOST, self.truncated_port)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> StandInServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("stand-in stats server did not start")
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._raw.close()
            await self._runner.cleanup()
            # Handlers still sleeping in /slow: end them here, not at garbage collection.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
