"""The follower on real files: start policies, globs, partial and long lines, rotation,
copytruncate, checkpoints with acknowledgement, drain."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson

from podkit.follow import CUT_MARKER, FollowConfig, Follower
from podkit.follow.testing import Collector, until

FAST = {
    "poll_interval": 0.05,
    "refresh_interval": 0.2,
    "rotate_wait": 0.5,
    "flush_timeout": 0.3,
}


def config(tmp_path: Path, *globs: str, **kw) -> FollowConfig:
    values = {**FAST, **kw}
    values.setdefault("state_dir", tmp_path / "state")
    return FollowConfig(include=tuple(str(tmp_path / g) for g in globs), **values)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def numbered(prefix: str, start: int, stop: int) -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(start, stop))


def expected(prefix: str, start: int, stop: int) -> list[bytes]:
    return [f"{prefix} {i}".encode() for i in range(start, stop)]


async def test_reads_from_head_then_follows_appends(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("a", 0, 100))
    async with Follower(config(tmp_path, "*.log")) as follower:
        c = Collector(follower).start()
        await until(lambda: len(c.lines()) == 100, what="existing lines")
        append(log, numbered("a", 100, 150))
        await until(lambda: len(c.lines()) == 150, what="appended lines")
        await c.stop()
    assert c.lines() == expected("a", 0, 150)
    batch = c.batches[0]
    assert batch.offsets[:2] == [0, len(b"a 0\n")]
    assert c.events("opened")[0].path == str(log)


async def test_tail_start_skips_existing_lines_but_new_files_start_at_head(tmp_path):
    old = tmp_path / "old.log"
    old.write_bytes(numbered("old", 0, 10))
    async with Follower(config(tmp_path, "*.log", read_from="tail")) as follower:
        c = Collector(follower).start()
        append(old, b"old new\n")
        new = tmp_path / "new.log"
        new.write_bytes(numbered("new", 0, 3))
        await until(lambda: len(c.lines()) == 4, what="only new lines")
        await c.stop()
    assert c.lines(str(old)) == [b"old new"]
    assert c.lines(str(new)) == expected("new", 0, 3)


async def test_include_and_exclude_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "skip.log").write_bytes(b"skip\n")
    (tmp_path / "sub" / "b.log").write_bytes(b"b\n")
    (tmp_path / "c.txt").write_bytes(b"c\n")
    cfg = config(tmp_path, "*.log", "sub/*.log", exclude=("skip.*",))
    async with Follower(cfg) as follower:
        c = Collector(follower).start()
        await until(lambda: len(c.lines()) == 2, what="two files")
        (tmp_path / "sub" / "late.log").write_bytes(b"late\n")
        await until(lambda: len(c.lines()) == 3, what="file created later")
        await c.stop()
    assert sorted(c.lines()) == [b"a", b"b", b"late"]


async def test_partial_line_waits_for_newline_then_flush_timeout_then_drain(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"first\nhal")
    async with Follower(config(tmp_path, "*.log", flush_timeout=30)) as follower:
        c = Collector(follower).start()
        await until(lambda: c.lines() == [b"first"], what="first line")
        append(log, b"f line\nno newline at the end")
        await until(lambda: len(c.lines()) == 2, what="the completed line")
        assert c.lines()[1] == b"half line"
        await c.stop()  # drain hands out the partial last line
    assert c.lines() == [b"first", b"half line", b"no newline at the end"]
    assert c.batches[-1].end_offset == log.stat().st_size


async def test_partial_line_flushed_after_flush_timeout(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"no newline yet")
    async with Follower(config(tmp_path, "*.log", flush_timeout=0.2)) as follower:
        c = Collector(follower).start()
        await until(lambda: c.lines() == [b"no newline yet"], what="flush timeout")
        await c.stop()


async def test_long_line_is_cut_with_marker_counted_and_the_file_goes_on(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"before\n" + b"L" * 5000 + b"\nafter\n")
    async with Follower(config(tmp_path, "*.log", max_line_bytes=1000)) as follower:
        c = Collector(follower).start()
        await until(lambda: len(c.lines()) == 3, what="three lines")
        await c.stop()
    assert c.lines() == [b"before", b"L" * 1000 + CUT_MARKER, b"after"]
    stats = follower.stats[str(log)]
    assert stats.lost == {"line_cut": 4000}
    assert stats.lines_cut == 1
    assert [e.lost_bytes for e in c.events("line_cut")] == [4000]


async def test_rename_rotation_reads_old_file_to_end_and_new_from_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 10))
    async with Follower(config(tmp_path, "app.log")) as follower:
        c = Collector(follower).start()
        await until(lambda: len(c.lines()) == 10, what="first lines")
        append(log, numbered("x", 10, 20))  # maybe not read before the rename
        os.rename(log, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", numbered("x", 20, 25))  # writer not reopened yet
        log.write_bytes(numbered("y", 0, 5))
        await until(lambda: len(c.lines()) == 30, what="both files")
        await c.stop()
    files = list(c.by_file().values())
    assert expected("x", 0, 25) in files and expected("y", 0, 5) in files
    assert len(c.events("rotated")) == 1
    assert follower.stats[str(log)].rotations == 1


async def test_copytruncate_restarts_at_zero(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 50))
    async with Follower(config(tmp_path, "app.log")) as follower:
        c = Collector(follower).start()
        await until(lambda: len(c.lines()) == 50, what="first lines")
        shutil.copy(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, numbered("y", 0, 3))
        await until(lambda: len(c.lines()) == 53, what="lines after truncation")
        await c.stop()
    assert c.lines() == expected("x", 0, 50) + expected("y", 0, 3)
    assert len(c.events("truncated")) == 1
    assert follower.stats[str(log)].truncations == 1


def saved_offsets(tmp_path: Path) -> dict[str, int]:
    doc = orjson.loads((tmp_path / "state" / "follow-checkpoints.json").read_bytes())
    return {e["path"]: e["offset"] for e in doc["files"] if not e["closed"]}


async def test_checkpoint_moves_only_past_acked_batches_and_restart_resumes_there(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 30))
    cfg = config(tmp_path, "app.log", batch_max_lines=10)
    async with Follower(cfg) as follower:
        c = Collector(follower, auto_ack=False).start()
        await until(lambda: len(c.batches) == 3, what="three batches")
        first, second, third = c.batches
        follower.ack(first)
        follower.ack(third)  # a gap: the checkpoint must wait for `second`
        follower.persist()
        assert saved_offsets(tmp_path)[str(log)] == first.end_offset
        await follower.drain()
        await c.task
    # __aexit__ saved again: still only past `first`.
    assert saved_offsets(tmp_path)[str(log)] == first.end_offset
    async with Follower(cfg) as follower:
        c2 = Collector(follower).start()
        await until(lambda: len(c2.lines()) == 20, what="the unacked lines again")
        follower.ack(second)  # an ack from an earlier run is ignored, not an error
        await c2.stop()
    assert c2.lines() == expected("x", 10, 30)
    assert saved_offsets(tmp_path)[str(log)] == log.stat().st_size
    async with Follower(cfg) as follower:  # everything acked: nothing again
        c3 = Collector(follower).start()
        await c3.stop()
    assert c3.lines() == []


async def test_drain_reads_everything_written_before_it(tmp_path):
    log = tmp_path / "app.log"
    async with Follower(config(tmp_path, "app.log", poll_interval=5.0)) as follower:
        c = Collector(follower).start()
        log.write_bytes(numbered("x", 0, 1000) + b"last")
        await c.stop()
    assert c.lines() == [*expected("x", 0, 1000), b"last"]


async def test_backpressure_pauses_reading_until_acks(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 20_000))  # ~170 KB
    cfg = config(tmp_path, "app.log", buffer_bytes=16384, batch_max_bytes=4096)
    async with Follower(cfg) as follower:
        c = Collector(follower, auto_ack=False).start()
        await until(lambda: c.batches, what="first batches")
        held = len(c.batches)
        # The budget stops reading: it never holds more than 16 KiB unacked.
        assert follower.unacked_bytes <= 16384
        assert sum(b.byte_count for b in c.batches) <= 16384
        for b in list(c.batches):
            follower.ack(b)
        await until(lambda: len(c.batches) > held, what="reading resumed after acks")
        c.auto_ack = True
        for b in c.batches[held:]:
            follower.ack(b)
        await until(lambda: len(c.lines()) == 20_000, what="all lines")
        await c.stop()
    assert c.lines() == expected("x", 0, 20_000)
