"""Copytruncate recovery (issue 14): the lines only the copy holds are read from the copy.

A copytruncate copies app.log to (say) app.log.1 and truncates app.log. The follower,
found behind (slow consumer, or stopped) when that happens, looks in the directory for a
regular file that starts with the checkpointed first bytes, reaches the checkpointed
offset and holds the checkpointed bytes before it: the copy. It reads the copy from there
to its end, then the live file's new contents. Without a copy, the ledger counts what
the follower knew was there and unacknowledged, and says that this is a lower bound.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import signal
from collections import Counter, defaultdict
from pathlib import Path

from podkit.follow import Follower
from podkit_dev.follow import (
    BatchRecorder,
    ack_first,
    append,
    consumed,
    consumed_count,
    expected,
    follow_config,
    numbered,
    run_follower,
)
from podkit_dev.servers import until


def copytruncate(log: Path, copy: Path) -> None:
    shutil.copy(log, copy)
    os.truncate(log, 0)


def compress(path: Path) -> None:
    """logrotate's `compress` without `delaycompress`: the plain copy is gone."""
    with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


async def test_copytruncate_while_behind_reads_the_rest_from_the_copy(tmp_path):
    log, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(numbered("x", 0, 4000))
    cfg = follow_config(tmp_path, "app.log", buffer_bytes=16384, batch_max_bytes=2048)
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower, auto_ack=False).start()
        await until(lambda: follower.waiting_for_acks, what="the budget spent")
        append(log, numbered("x", 4000, 9000))  # far more than the follower has read
        copytruncate(log, copy)
        append(log, numbered("y", 0, 10))
        c.auto_ack = True
        for b in c.batches:
            follower.ack(b)
        await until(lambda: len(c.lines()) == 9010, what="every line")
        await c.stop()
    assert c.lines() == expected("x", 0, 9000) + expected("y", 0, 10), "once each, in order"
    stats = follower.stats[str(log)]
    assert follower.ledger.lost_total() == 0
    assert stats.truncations == 1
    [recovered] = c.events("recovered")
    assert recovered.path == str(copy) and recovered.reason == "copytruncate_copy"
    from_copy = c.lines(str(copy))
    assert from_copy and from_copy[-1] == b"x 8999", "the ledger says which lines the copy gave"
    assert 0 < stats.recovered_bytes <= copy.stat().st_size
    # The copy is closed once read; batches from it carry the live file's identity.
    assert [e.reason for e in c.events("closed")] == ["copy_read"]
    ids = {(b.file_id.dev, b.file_id.inode) for b in c.batches}
    assert ids == {(log.stat().st_dev, log.stat().st_ino)}


async def test_copytruncate_while_stopped_resumes_in_the_copy(tmp_path):
    log, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(numbered("x", 0, 100))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    await ack_first(cfg, batches=10, acked=3)  # checkpoint after line 30
    append(log, numbered("x", 100, 150))  # the app wrote on while we were down
    copytruncate(log, copy)
    append(log, numbered("y", 0, 5))
    follower, c = await run_follower(cfg, 125, what="the rest of x from the copy, then y")
    assert c.lines() == expected("x", 30, 150) + expected("y", 0, 5)
    assert follower.ledger.lost_total() == 0
    assert follower.stats[str(log)].truncations == 1
    assert follower.stats[str(log)].recovered_bytes == len(numbered("x", 30, 150))
    [recovered] = c.events("recovered")
    assert recovered.path == str(copy)
    # A clean restart after that reads nothing again.
    _, again = await run_follower(cfg, 0, what="nothing")
    assert again.lines() == []


async def test_copytruncate_then_renamed_while_stopped(tmp_path):
    """Both rotations while down: the live file copied and truncated, then renamed away
    (and a new app.log created): the old inode is found by its new name and the copy
    gives what the truncation took."""
    log, copy = tmp_path / "app.log", tmp_path / "app.log.ct"
    log.write_bytes(numbered("x", 0, 60))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    await ack_first(cfg, batches=6, acked=2)  # checkpoint after line 20
    append(log, numbered("x", 60, 80))
    copytruncate(log, copy)
    append(log, numbered("y", 0, 30))
    os.rename(log, tmp_path / "app.log.1")
    log.write_bytes(numbered("z", 0, 7))
    follower, c = await run_follower(cfg, 60 + 30 + 7, what="x from the copy, y, z")
    assert sorted(c.lines()) == sorted(
        expected("x", 20, 80) + expected("y", 0, 30) + expected("z", 0, 7)
    )
    # The copy's lines come before the new lines of the file they were copied from.
    x_and_y = [line for line in c.lines() if not line.startswith(b"z")]
    assert x_and_y == expected("x", 20, 80) + expected("y", 0, 30)
    assert follower.ledger.lost_total() == 0


async def test_copytruncate_and_delete_while_stopped_still_reads_the_copy(tmp_path):
    log, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(numbered("x", 0, 40))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    await ack_first(cfg, batches=4, acked=1)
    copytruncate(log, copy)
    log.unlink()  # the app's file is gone altogether; a new one appears
    log.write_bytes(numbered("y", 0, 3))
    follower, c = await run_follower(cfg, 33, what="x from the copy and y")
    assert c.lines(str(copy)) == expected("x", 10, 40)
    assert c.lines(str(log)) == expected("y", 0, 3)
    assert follower.ledger.lost_total() == 0


async def test_no_copy_the_ledger_counts_exactly_what_was_unacknowledged(tmp_path):
    """Copytruncate with `compress` while stopped: the plain copy is gone. The follower
    had seen the file's whole size (drain), so the ledger's figure is exact: every byte
    from the checkpoint to the end, which is what the writer knows was never acked."""
    log, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(numbered("x", 0, 100))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    _, first = await ack_first(cfg, batches=10, acked=4)
    acked_lines = sum(len(b.lines) for b in first.batches[:4])
    copytruncate(log, copy)
    compress(copy)
    append(log, numbered("y", 0, 5))
    follower, c = await run_follower(cfg, 5, what="the new lines")
    lost_by_writer = len(numbered("x", acked_lines, 100))  # written, never acknowledged
    assert follower.ledger.lost_total() == lost_by_writer
    assert follower.stats[str(log)].lost == {"truncated_unread": lost_by_writer}
    [event] = [e for e in c.events() if e.lost_bytes]
    assert event.lost_bytes == lost_by_writer and event.lower_bound
    assert c.lines() == expected("y", 0, 5)


async def test_no_copy_after_unseen_writes_the_ledger_is_a_lower_bound(tmp_path):
    log, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(numbered("x", 0, 100))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    _, first = await ack_first(cfg, batches=10, acked=4)
    acked_lines = sum(len(b.lines) for b in first.batches[:4])
    append(log, numbered("x", 100, 200))  # written while stopped: the follower never saw it
    copytruncate(log, copy)
    compress(copy)
    follower, c = await run_follower(cfg, 0, what="nothing")
    known = len(numbered("x", acked_lines, 100))
    really = len(numbered("x", acked_lines, 200))
    [event] = [e for e in c.events() if e.lost_bytes]
    assert event.lost_bytes == known < really and event.lower_bound
    assert follower.ledger.lost_total() == known


async def test_a_copy_of_another_generation_is_not_taken(tmp_path):
    """An older copy with the same header but other bytes before the checkpoint is not the
    copy: the hash of the bytes before the checkpoint tells them apart."""
    log = tmp_path / "app.log"
    header = b"# app log v1 " + b"=" * 300 + b"\n"  # longer than the fingerprint
    log.write_bytes(header + numbered("x", 0, 50))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=11)
    await ack_first(cfg, batches=5, acked=2)  # header + 21 lines acked
    (tmp_path / "app.log.2").write_bytes(header + numbered("old", 0, 90))  # same header
    os.truncate(log, 0)  # no copy of this generation
    log.write_bytes(header + numbered("new", 0, 3))
    follower, c = await run_follower(cfg, 4, what="the new generation")
    assert c.lines() == [header.rstrip(b"\n"), *expected("new", 0, 3)]
    assert follower.ledger.lost_total() > 0
    assert not c.events("recovered")


# --- the torture of issue 14, with real processes -----------------------------------------

BUFFER = 32768


async def test_torture_renames_copytruncate_and_kills_while_writing_lose_nothing(tmp_path, spawn):
    """Issue 14's torture: a writer appends 100,000 numbered lines while app.log is
    renamed twice and copytruncated once (while the follower is down, the case that lost
    25,000 lines), and the follower is SIGKILLed twice. Every line must arrive.

    The writer pauses (SIGSTOP) around the copy and the truncation: lines written between
    those two steps are in neither file, which no follower can help."""
    total = int(os.environ.get("FOLLOW_TORTURE_LINES", "100000"))
    log, out, state = tmp_path / "app.log", tmp_path / "out.txt", tmp_path / "state"
    # 5 lines a millisecond at most: the writer outlives every step below, even on a slow day.
    writer = await spawn("write", str(log), "--count", str(total), "--burst", "5")
    await until(log.exists, what="the writer's file")
    consume = ("consume", "--out", str(out), "--state-dir", str(state))
    consume += ("--buffer-bytes", str(BUFFER), str(log))

    async def start_follower() -> asyncio.subprocess.Process:
        proc = await spawn(*consume)
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        return proc

    async def progress(n: int) -> None:
        target = consumed_count(out) + n
        await until(lambda: consumed_count(out) >= target, timeout=60, what=f"{n} more lines")

    async def rename(name: str) -> None:
        os.rename(log, tmp_path / name)  # not matched by the glob: found by its open handle
        writer.send_signal(signal.SIGHUP)
        assert (await writer.stdout.readline()).startswith(b"reopened")

    async def kill(proc: asyncio.subprocess.Process) -> None:
        proc.kill()  # SIGKILL: no drain, no checkpoint save
        await proc.wait()

    follower = await start_follower()
    await progress(5000)
    await rename("app.log.1")
    await progress(5000)
    await kill(follower)  # kill 1
    size = log.stat().st_size
    await until(lambda: log.stat().st_size > size + 200_000, what="the writer writes on")
    writer.send_signal(signal.SIGSTOP)
    copytruncate(log, tmp_path / "app.log.ct")  # while the follower is down
    writer.send_signal(signal.SIGCONT)
    await until(lambda: log.stat().st_size > 50_000, what="new lines in the live file")
    follower = await start_follower()
    await progress(5000)
    await rename("app.log.2")
    await progress(3000)
    await kill(follower)  # kill 2
    follower = await start_follower()
    assert int((await asyncio.wait_for(writer.stdout.read(), 120)).split()[-1]) == total
    await writer.wait()

    def every_line() -> bool:
        return {n for run in consumed(out) for _, n in run} >= set(range(total))

    await until(every_line, timeout=120, what="every written line delivered")
    follower.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(follower.wait(), 20) == 0

    runs = consumed(out)
    seen = Counter(n for run in runs for _, n in run)
    assert set(seen) == set(range(total)), "0 lines lost, nothing invented"
    for run in runs:
        per_file: dict[str, list[int]] = defaultdict(list)
        for path, n in run:
            per_file[path].append(n)
        for numbers in per_file.values():
            assert numbers == sorted(numbers), "in order within a file during a run"
        assert len({n for _, n in run}) == len(run), "within one run no line comes twice"
    again = sum(len(f"line {n}\n") * (k - 1) for n, k in seen.items())
    assert again <= 2 * BUFFER, "again only after the two kills, at most a budget each"
    from_copy = {n for run in runs for path, n in run if "app.log.ct#" in path}
    assert from_copy, "the copy gave the lines only it held"
    print(f"{total} lines, 0 lost, {again} bytes again, {len(from_copy)} lines from the copy")


async def test_truncation_while_waiting_for_acks_counts_what_was_seen_not_what_was_read(
    tmp_path,
):
    """A slow consumer holds the follower at its budget; the file grows, then is truncated
    with no copy left. The ledger counts every byte the follower saw and never delivered,
    not only those up to where its reading had stopped (found by the dashboard test)."""
    log = tmp_path / "app.log"
    first = numbered("a", 0, 200)
    log.write_bytes(first)
    cfg = follow_config(tmp_path, "app.log", buffer_bytes=2048, batch_max_lines=10)
    async with Follower(cfg) as follower:
        recorder = BatchRecorder(follower, auto_ack=False).start()
        await until(lambda: follower.waiting_for_acks, what="the budget spent")
        more = numbered("a", 200, 400)
        append(log, more)
        size = len(first) + len(more)
        read_before = max(b.end_offset for b in recorder.batches)  # reading stopped here
        await until(
            lambda: follower.stats[str(log)].lag_bytes == size - read_before,
            what="the follower to see the file grow while it waits",
        )
        os.truncate(log, 0)  # nothing kept: no copytruncate copy to recover from
        for batch in list(recorder.batches):
            follower.ack(batch)
        recorder.auto_ack = True
        await until(lambda: follower.stats[str(log)].truncations == 1, what="the truncation")
        await recorder.stop()
    assert follower.stats[str(log)].lost == {"truncated_unread": size - read_before}
