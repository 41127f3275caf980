"""The follower on real files: start policies, globs, partial and long lines, rotation,
copytruncate, checkpoints with acknowledgement, drain."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from podkit.follow import CUT_MARKER, Follower
from podkit.runtime import StartupError
from podkit_dev.follow import (
    BatchRecorder,
    ack_first,
    append,
    expected,
    follow_config,
    numbered,
    run_follower,
)
from podkit_dev.servers import until


async def test_reads_from_head_then_follows_appends(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("a", 0, 100))
    async with Follower(follow_config(tmp_path, "*.log")) as follower:
        c = BatchRecorder(follower).start()
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
    async with Follower(follow_config(tmp_path, "*.log", read_from="tail")) as follower:
        c = BatchRecorder(follower).start()
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
    cfg = follow_config(tmp_path, "*.log", "sub/*.log", exclude=("skip.*",))
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 2, what="two files")
        (tmp_path / "sub" / "late.log").write_bytes(b"late\n")
        await until(lambda: len(c.lines()) == 3, what="file created later")
        await c.stop()
    assert sorted(c.lines()) == [b"a", b"b", b"late"]


async def test_partial_line_waits_for_newline_then_flush_timeout_then_drain(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"first\nhal")
    async with Follower(follow_config(tmp_path, "*.log", flush_timeout=30)) as follower:
        c = BatchRecorder(follower).start()
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
    async with Follower(follow_config(tmp_path, "*.log", flush_timeout=0.2)) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: c.lines() == [b"no newline yet"], what="flush timeout")
        await c.stop()


async def test_long_line_is_cut_with_marker_counted_and_the_file_goes_on(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"before\n" + b"L" * 5000 + b"\nafter\n")
    cfg = follow_config(tmp_path, "*.log", max_line_bytes=1000)
    follower, c = await run_follower(cfg, 3, what="three lines")
    assert c.lines() == [b"before", b"L" * 1000 + CUT_MARKER, b"after"]
    stats = follower.stats[str(log)]
    assert stats.lost == {"line_cut": 4000}
    assert stats.lines_cut == 1
    assert [e.lost_bytes for e in c.events("line_cut")] == [4000]


async def test_rename_rotation_reads_old_file_to_end_and_new_from_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 10))
    async with Follower(follow_config(tmp_path, "app.log")) as follower:
        c = BatchRecorder(follower).start()
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
    async with Follower(follow_config(tmp_path, "app.log")) as follower:
        c = BatchRecorder(follower).start()
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
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower, auto_ack=False).start()
        await until(lambda: len(c.batches) == 3, what="three batches")
        first, second, third = c.batches
        follower.ack(first)
        follower.ack(third)  # a gap: the checkpoint must wait for `second`
        follower.persist()
        assert saved_offsets(tmp_path)[str(log)] == first.end_offset
        await c.stop()
    # __aexit__ saved again: still only past `first`.
    assert saved_offsets(tmp_path)[str(log)] == first.end_offset
    async with Follower(cfg) as follower:
        c2 = BatchRecorder(follower).start()
        await until(lambda: len(c2.lines()) == 20, what="the unacked lines again")
        follower.ack(second)  # an ack from an earlier run is ignored, not an error
        await c2.stop()
    assert c2.lines() == expected("x", 10, 30)
    assert saved_offsets(tmp_path)[str(log)] == log.stat().st_size
    _, c3 = await run_follower(cfg, 0, what="nothing")  # everything acked: nothing again
    assert c3.lines() == []


async def test_drain_reads_everything_written_before_it(tmp_path):
    log = tmp_path / "app.log"
    async with Follower(follow_config(tmp_path, "app.log", poll_interval=5.0)) as follower:
        c = BatchRecorder(follower).start()
        log.write_bytes(numbered("x", 0, 1000) + b"last")
        await c.stop()
    assert c.lines() == [*expected("x", 0, 1000), b"last"]


async def test_backpressure_pauses_reading_until_acks(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 20_000))  # ~170 KB
    cfg = follow_config(tmp_path, "app.log", buffer_bytes=16384, batch_max_bytes=4096)
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower, auto_ack=False).start()
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


async def test_watchfiles_events_find_new_files_and_appends_without_polling(tmp_path):
    cfg = follow_config(tmp_path, "*.log", poll_interval=60.0, refresh_interval=60.0)
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower).start()
        # The watcher thread starts in the background: poke until it reports (polling and
        # rescans are a minute away, so only an inotify event can make this line arrive).
        probe = tmp_path / "probe.log"
        await until(lambda: probe.write_bytes(b"x\n") and c.lines(), what="watcher running")
        new = tmp_path / "new.log"
        new.write_bytes(b"created\n")
        await until(lambda: c.lines(str(new)) == [b"created"], what="a new file via an event")
        append(new, b"appended\n")
        await until(lambda: c.lines(str(new))[-1:] == [b"appended"], what="append via an event")
        await c.stop()


async def test_directory_created_later_is_watched_and_followed(tmp_path):
    cfg = follow_config(tmp_path, "later/*.log", poll_interval=60.0, refresh_interval=0.2)
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower).start()
        (tmp_path / "later").mkdir()
        log = tmp_path / "later" / "a.log"
        log.write_bytes(b"one\n")
        await until(lambda: c.lines() == [b"one"], what="file in a new directory (rescan)")

        def poke() -> bool:  # appends are seen only through the watcher on the new dir
            append(log, b"tick\n")
            return len(c.lines()) > 1

        await until(poke, what="an append seen by the restarted watcher")
        await c.stop()
    assert set(c.lines()) == {b"one", b"tick"}


async def test_corrupt_checkpoint_file_is_set_aside_and_reading_starts_over(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "follow-checkpoints.json").write_bytes(b"{not json\x00")
    _, c = await run_follower(follow_config(tmp_path, "app.log"), 2, what="lines from the head")
    assert c.lines() == [b"a", b"b"]
    assert (state / "follow-checkpoints.corrupt").read_bytes() == b"{not json\x00"
    assert saved_offsets(tmp_path) == {str(log): 4}


async def test_state_dir_unwritable_later_does_not_stop_reading(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 5000))
    cfg = follow_config(tmp_path, "app.log", buffer_bytes=8192, batch_max_bytes=2048)
    troubles: list[str | None] = []
    async with Follower(cfg) as follower:
        follower._book.on_save_trouble = troubles.append
        # Usable at start, then a file takes the directory's place: saves fail from now on.
        (tmp_path / "state").rename(tmp_path / "state.old")
        (tmp_path / "state").write_bytes(b"a file where the state dir should be")
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 5000, what="every line despite failed saves")
        await until(lambda: troubles != [], what="the failure reported")
        (tmp_path / "state").unlink()
        (tmp_path / "state.old").rename(tmp_path / "state")
        append(log, numbered("x", 5000, 5010))
        await until(lambda: troubles[-1] is None, what="the recovery reported")
        await c.stop()
    assert troubles[0] is not None and "--state-dir" in troubles[0]
    assert saved_offsets(tmp_path) == {str(log): log.stat().st_size}


async def test_state_dir_unusable_at_start_is_a_startup_error(tmp_path):
    (tmp_path / "app.log").write_bytes(b"a\n")
    (tmp_path / "state").write_bytes(b"a file where the state dir should be")
    with pytest.raises(StartupError) as caught:
        async with Follower(follow_config(tmp_path, "app.log")):
            pass
    assert caught.value.fields["setting"] == "--state-dir"
    assert caught.value.fields["error"] == "not a directory"


async def test_ack_after_exit_changes_nothing_saved(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 20))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    follower, c = await ack_first(cfg, batches=2, acked=1)
    follower.ack(c.batches[1])  # too late: the follower is closed
    assert saved_offsets(tmp_path) == {str(log): c.batches[0].end_offset}
