"""The loss ledger as metrics (checked by promtool), and the multiline stage on files."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from podkit.follow import CUT_MARKER, Follower, MultilineConfig
from podkit_dev.follow import BatchRecorder, follow_config
from podkit_dev.servers import until
from tests.servers import require_binary


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_ledger_metrics_count_reads_cuts_truncations_and_pass_promtool(tmp_path):
    promtool = require_binary("promtool")
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n" + b"x" * 300 + b"\nb\n")
    registry = CollectorRegistry(auto_describe=True)  # as the runtime makes it
    async with Follower(
        follow_config(tmp_path, "*.log", max_line_bytes=100), registry=registry
    ) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 3, what="lines")
        log.write_bytes(b"c\n")  # truncated below our offset, then written
        await until(lambda: c.lines()[-1:] == [b"c"], what="line after truncation")
        got = samples(registry)
        await c.stop()
    path = (("path", str(log)),)
    assert got[("podkit_follow_lines_total", path)] == 4
    assert got[("podkit_follow_bytes_read_total", path)] == 2 + 301 + 2 + 2
    assert got[("podkit_follow_truncations_total", path)] == 1
    assert got[("podkit_follow_lines_cut_total", path)] == 1
    assert got[("podkit_follow_lost_bytes_total", (*path, ("reason", "line_cut")))] == 200
    assert got[("podkit_follow_files_open", ())] == 1
    assert c.lines()[1] == b"x" * 100 + CUT_MARKER
    check = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    out, _ = await check.communicate(generate_latest(registry))
    assert check.returncode == 0, out.decode()


async def test_multiline_records_on_a_file_with_flush_timeout(tmp_path):
    log = tmp_path / "app.log"
    trace = (
        b"ERROR failed\nTraceback (most recent call last):\n"
        b'  File "a.py", line 1, in <module>\nValueError: x\n'
    )
    log.write_bytes(b"INFO start\n" + trace)
    ml = MultilineConfig(mode="python", flush_timeout=0.3)
    cfg = follow_config(
        tmp_path, "*.log", flush_timeout=30, multiline=ml
    )  # lines end in newlines here
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower, auto_ack=False).start()
        # The trace is the last record: it is handed out by the flush timeout.
        await until(lambda: len(c.lines()) == 2, what="two records")
        assert c.lines() == [b"INFO start", trace.rstrip(b"\n")]
        assert c.batches[-1].end_offset == log.stat().st_size
        # The first batch's checkpoint stopped before the trace that was still being read.
        assert c.batches[0].end_offset == len(b"INFO start\n")
        for b in c.batches:
            follower.ack(b)
        await follower.drain()
        await c.task
