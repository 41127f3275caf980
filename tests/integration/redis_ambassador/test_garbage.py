"""Discovery against a 'Sentinel' that answers arbitrary bytes (hypothesis).

The Sentinel here is a real TCP server on loopback whose answer each example chooses;
discovery runs in-process so that hundreds of answers take seconds. Whatever comes back,
a round ends without raising, routes nowhere, and the failure is counted.
"""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from podkit.ambassadors.redis_sentinel.discovery import Discovery
from podkit.ambassadors.redis_sentinel.metrics import AmbassadorMetrics
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings

RESP_PIECES = st.sampled_from(
    [b"*2\r\n", b"*-1\r\n", b"$9\r\n127.0.0.1\r\n", b"$4\r\n6379\r\n", b"$-1\r\n", b":12\r\n",
     b"+OK\r\n", b"-ERR no\r\n", b"*1\r\n", b"$100\r\n", b"%1\r\n", b"\r\n", b"_\r\n"]
)  # fmt: skip
ANSWERS = st.one_of(
    st.binary(max_size=200),
    st.lists(RESP_PIECES, max_size=8).map(b"".join),
)


async def one_round(answer: bytes) -> tuple[str | None, float]:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read(4096)
            writer.write(answer)
            await writer.drain()
            await reader.read(4096)  # keep the connection until the client gives up
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    registry = CollectorRegistry()
    settings_ = AmbassadorSettings(
        sentinels=[f"127.0.0.1:{port}"], sentinel_timeout=0.05, admin_addr="127.0.0.1:9704"
    )
    changes: list[str | None] = []
    discovery = Discovery(settings_, AmbassadorMetrics(registry), lambda a, r: changes.append(a))
    try:
        found = await discovery.ask_all()
        candidate, _ = found.candidate(None)
    finally:
        for client in discovery.clients.values():
            await client.aclose()
        server.close()
        await server.wait_closed()
    errors = sum(
        s.value
        for metric in registry.collect()
        if metric.name == "redis_ambassador_discovery_errors"
        for s in metric.samples
        if s.name.endswith("_total")
    )
    return candidate if found.votes else "error", errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANSWERS)
def test_garbage_from_a_sentinel_never_crashes_a_round(answer):
    outcome, errors = asyncio.run(one_round(answer))
    if outcome == "error":
        assert errors == 1  # counted, with a reason label
    else:
        # Parsed as a real answer: then it must name a proper address (or none).
        assert outcome is None or outcome.rsplit(":", 1)[1].isdigit()
