"""Stand-in receivers for the log-shipper tests: NOT the real Loki or Elasticsearch.

No Loki or Elasticsearch server can run on this machine, so this aiohttp app implements
the documented parts of their APIs that the outputs use, failures included:

- Loki push (`POST /loki/api/v1/push`, JSON streams; 204 on success),
- Elasticsearch/OpenSearch bulk (`POST /_bulk`, NDJSON action+document pairs; per-item
  statuses, `create` of an existing `_id` answers 409, `errors: true` on any failure),
- a plain NDJSON receiver (`POST /ingest`) for the `http` output.

Faults are scripted by the test: whole-request statuses (429 with Retry-After, 5xx, 400
with a body), failing bulk items, slow answers, and being down (connections refused).
It runs in a thread with its own event loop, so tests drive it from plain code.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from podkit_dev.servers import HOST, free_port


@dataclass
class Fault:
    status: int
    count: int
    body: str = ""
    retry_after: str | None = None


@dataclass
class Received:
    ndjson: list[dict[str, Any]] = field(default_factory=list)
    loki: list[tuple[dict[str, str], str, str]] = field(default_factory=list)
    """(stream labels, timestamp ns, line)"""
    es_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    es_attempts: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    """method, path, headers of every request"""


class StandInReceiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.data = Received()
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.item_faults: list[tuple[int, int]] = []
        """(status, how many items) for the next bulk requests: the first items fail."""
        self.reject_ids: dict[str, int] = {}
        """_id -> status: these items always fail (e.g. 400 mapping error)."""
        self.delay = 0.0
        self.refusing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._thread: threading.Thread | None = None

    # --- control from the test --------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> StandInReceiver:
        ready = threading.Event()

        def main() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._start())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True, name="standin")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stand-in receiver did not start")
        return self

    def _call(self, coro: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def down(self) -> None:
        """Stop listening: new connections are refused and kept-alive ones are cut."""
        self.refusing = True
        self._call(self._stop_site())

    def up(self) -> None:
        self.refusing = False
        self._call(self._start_site())

    def fail(self, status: int, count: int = 1, body: str = "", retry_after: str | None = None):
        with self.lock:
            self.faults.append(Fault(status, count, body, retry_after))

    def fail_items(self, status: int, items: int) -> None:
        with self.lock:
            self.item_faults.append((status, items))

    def stop(self) -> None:
        if self.loop is not None:
            self._call(self._stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            assert self._thread is not None
            self._thread.join(5)

    def snapshot(self) -> Received:
        with self.lock:
            return Received(
                list(self.data.ndjson),
                list(self.data.loki),
                dict(self.data.es_docs),
                Counter(self.data.es_attempts),
                list(self.data.requests),
            )

    # --- the server -----------------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_post("/ingest", self._ingest)
        app.router.add_post("/loki/api/v1/push", self._loki)
        app.router.add_post("/_bulk", self._bulk)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._start_site()

    async def _start_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await self._site.start()

    async def _stop_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _common(self, request: web.Request) -> tuple[bytes, web.Response | None]:
        if self.refusing:
            # A kept-alive connection to a server that is "down": cut it, keep nothing.
            if request.transport is not None:
                request.transport.abort()
            return b"", web.Response(status=503)
        body = await request.read()  # aiohttp has already undone Content-Encoding: gzip
        with self.lock:
            self.data.requests.append(
                {"method": request.method, "path": request.path, "headers": dict(request.headers)}
            )
            fault = self.faults[0] if self.faults else None
            if fault is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.pop(0)
        if self.delay:
            await asyncio.sleep(self.delay)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return body, web.Response(status=fault.status, text=fault.body, headers=headers)
        return body, None

    async def _ingest(self, request: web.Request) -> web.Response:
        body, failed = await self._common(request)
        if failed is not None:
            return failed
        records = [json.loads(line) for line in body.splitlines() if line]
        with self.lock:
            self.data.ndjson.extend(records)
        return web.Response(status=200)

    async def _loki(self, request: web.Request) -> web.Response:
        body, failed = await self._common(request)
        if failed is not None:
            return failed
        try:
            payload = json.loads(body)
            entries = [
                (stream["stream"], ts, line)
                for stream in payload["streams"]
                for ts, line in stream["values"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"error parsing push request: {exc}")
        with self.lock:
            self.data.loki.extend(entries)
        return web.Response(status=204)

    async def _bulk(self, request: web.Request) -> web.Response:
        body, failed = await self._common(request)
        if failed is not None:
            return failed
        lines = body.splitlines()
        if len(lines) % 2:
            return web.json_response({"error": "malformed bulk body"}, status=400)
        items = []
        errors = False
        with self.lock:
            item_fault = self.item_faults.pop(0) if self.item_faults else None
            for position in range(0, len(lines), 2):
                action = json.loads(lines[position])
                ((op, meta),) = action.items()
                doc_id = meta["_id"]
                self.data.es_attempts[doc_id] += 1
                status = 201
                if item_fault is not None and position // 2 < item_fault[1]:
                    status = item_fault[0]
                elif doc_id in self.reject_ids:
                    status = self.reject_ids[doc_id]
                elif op == "create" and doc_id in self.data.es_docs:
                    status = 409
                if status == 201:
                    self.data.es_docs[doc_id] = json.loads(lines[position + 1])
                    items.append({op: {"_index": meta["_index"], "_id": doc_id, "status": 201}})
                else:
                    errors = True
                    reason = {
                        409: "version_conflict_engine_exception",
                        429: "es_rejected_execution_exception",
                        400: "mapper_parsing_exception",
                    }.get(status, "internal_error")
                    items.append(
                        {op: {"_index": meta["_index"], "_id": doc_id, "status": status,
                              "error": {"type": reason, "reason": f"stand-in {reason}"}}}
                    )  # fmt: skip
        return web.json_response({"took": 1, "errors": errors, "items": items})
