"""Rotation, truncation, deletion and identity with real writer processes and restarts."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import sys
from pathlib import Path

from podkit.follow import Follower
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


def numbers(lines: list[bytes]) -> list[int]:
    return [int(line.split()[1]) for line in lines]


class Writer:
    """A real process appending `line N` to a path; SIGHUP makes it reopen the path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Writer:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "podkit_dev.follow", "write", str(self.path),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await until(self.path.exists, what="writer created the file")
        return self

    async def reopen(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(signal.SIGHUP)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        assert line.startswith(b"reopened"), line

    async def stop(self) -> int:
        """Stop writing; the number of lines written."""
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(signal.SIGTERM)
        out = await asyncio.wait_for(self.proc.stdout.read(), 10)
        await self.proc.wait()
        return int(out.split()[-1])


async def test_rename_rotation_twice_in_a_row_while_a_writer_appends(tmp_path):
    log = tmp_path / "app.log"
    async with Follower(follow_config(tmp_path, "app.log")) as follower:
        c = BatchRecorder(follower).start()
        writer = await Writer(log).start()
        for _ in range(2):
            await until(lambda: len(c.lines()) > 200, what="some lines before rotating")
            # logrotate's `create`: shift the old names, rename, then the app reopens.
            if (tmp_path / "app.log.1").exists():
                os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")
            os.rename(log, tmp_path / "app.log.1")
            await writer.reopen()
            seen = len(c.lines())
            await until(lambda s=seen: len(c.lines()) > s + 100, what="lines after rotating")
        total = await writer.stop()
        await until(lambda: len(c.lines()) >= total, what="every written line")
        await c.stop()
    got = numbers(c.lines())
    assert sorted(got) == list(range(total)), "every line exactly once"
    for lines in c.by_file().values():
        assert numbers(lines) == sorted(numbers(lines)), "in order within each file"
    assert len(c.by_file()) == 3
    assert follower.stats[str(log)].rotations == 2
    assert follower.ledger.lost_total() == 0


async def test_copytruncate_while_a_writer_appends_loses_only_at_the_truncations(tmp_path):
    log = tmp_path / "app.log"
    async with Follower(follow_config(tmp_path, "app.log")) as follower:
        c = BatchRecorder(follower).start()
        writer = await Writer(log).start()
        for i in range(2):
            want = 300 * (i + 1)
            await until(lambda w=want: len(c.lines()) > w, what="lines before truncating")
            shutil.copy(log, tmp_path / f"app.log.{i + 1}")
            os.truncate(log, 0)
            await until(lambda i=i: follower.stats[str(log)].truncations == i + 1, what="seen")
        # Lines written between the copy and the truncate are lost (copytruncate's race);
        # the truncation is seen at once now, so wait for a line written after it, lest
        # the writer stop with its last line in that gap.
        await until(lambda: log.stat().st_size > 0, what="a line after the last truncation")
        total = await writer.stop()
        await until(lambda: numbers(c.lines())[-1:] == [total - 1], what="the last line")
        await c.stop()
    got = numbers(c.lines())
    assert len(got) == len(set(got)), "no line twice"
    assert got == sorted(got), "in order"
    # Lines written between our last read and a truncation are gone from app.log (that is
    # copytruncate's own race); anything missing must sit at one of the two truncations.
    missing = sorted(set(range(total)) - set(got))
    gaps = sum(1 for a, b in itertools.pairwise(missing) if b != a + 1)
    assert gaps + (1 if missing else 0) <= 2
    assert len(c.events("truncated")) == 2


async def test_deleted_file_is_read_to_its_end_through_the_open_handle(tmp_path):
    log = tmp_path / "app.log"
    async with Follower(follow_config(tmp_path, "app.log")) as follower:
        c = BatchRecorder(follower).start()
        writer = await Writer(log).start()
        await until(lambda: len(c.lines()) > 100, what="some lines")
        log.unlink()
        await until(lambda: c.events("deleted"), what="the deletion noticed")
        total = await writer.stop()  # it kept writing into the deleted file
        await until(lambda: numbers(c.lines())[-1:] == [total - 1], what="lines after delete")
        await until(lambda: c.events("closed") or not follower._tailers, what="handle closed")
        await c.stop()
    assert numbers(c.lines()) == list(range(total))
    assert follower.ledger.lost_total() == 0


async def test_truncated_while_stopped_is_detected_on_restart(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("old", 0, 100))
    cfg = follow_config(tmp_path, "app.log")
    await run_follower(cfg, 100, what="first run")
    log.write_bytes(numbered("new", 0, 10))  # truncated and rewritten while stopped
    follower, c = await run_follower(cfg, 10, what="the new content from its start")
    assert c.lines() == expected("new", 0, 10)
    assert follower.stats[str(log)].truncations == 1
    assert c.events("truncated")


async def test_truncated_while_stopped_to_a_shorter_prefix_counts_unread_bytes(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 100))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=50)
    _, c = await ack_first(cfg, batches=2, acked=1)
    acked = c.batches[0].end_offset
    os.truncate(log, acked // 2)  # same first bytes, shorter than the checkpoint
    follower, _ = await run_follower(cfg, 0, what="nothing")
    assert follower.stats[str(log)].truncations == 1
    unread = len(numbered("x", 0, 100)) - acked  # what was known and not acked
    assert follower.stats[str(log)].lost == {"truncated_unread": unread}


async def test_inode_reuse_is_told_apart_by_the_fingerprint(tmp_path):
    a = tmp_path / "a.log"
    a.write_bytes(numbered("a", 0, 50))
    cfg = follow_config(tmp_path, "*.log")
    await run_follower(cfg, 50, what="a.log read")
    inode = a.stat().st_ino
    # While stopped, a.log goes away and its inode comes back as b.log with other content
    # (what ext4 does after delete+create; done here by renaming and rewriting in place so
    # the inode is certainly the same).
    b = tmp_path / "b.log"
    os.rename(a, b)
    fd = os.open(b, os.O_WRONLY)  # no O_TRUNC: rewrite in place, same inode
    os.write(fd, numbered("b", 0, 80))
    os.close(fd)
    assert b.stat().st_ino == inode
    _, c = await run_follower(cfg, 80, what="b.log from its first line")
    assert c.lines() == expected("b", 0, 80)


async def test_file_renamed_while_stopped_is_found_again_by_inode(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 40))
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    await ack_first(cfg, batches=4, acked=2)
    os.rename(log, tmp_path / "app.log.1")  # rotated while stopped, not matched any more
    append(tmp_path / "app.log.1", numbered("x", 40, 45))  # written before the app reopened
    log.write_bytes(numbered("y", 0, 3))
    follower, c = await run_follower(cfg, 28, what="the rest of the old file and the new")
    files = list(c.by_file().values())
    assert expected("x", 20, 45) in files
    assert expected("y", 0, 3) in files
    assert follower.ledger.lost_total() == 0


async def test_file_gone_while_stopped_reports_its_unread_bytes(tmp_path):
    log = tmp_path / "app.log"
    data = numbered("x", 0, 40)
    log.write_bytes(data)
    cfg = follow_config(tmp_path, "app.log", batch_max_lines=10)
    _, c = await ack_first(cfg, batches=4, acked=1)
    acked = c.batches[0].end_offset
    log.unlink()
    follower, c = await run_follower(cfg, 0, what="nothing")
    assert follower.stats[str(log)].lost == {"rotated_away_unread": len(data) - acked}
    [event] = [e for e in c.events() if e.lost_bytes]
    assert event.lost_bytes == len(data) - acked and event.reason == "rotated_away_unread"


async def test_invalid_utf8_and_nul_bytes_pass_through(tmp_path):
    log = tmp_path / "app.log"
    raw = [b"\xff\xfe bad utf8", b"nul\x00inside\x00", b"\xc3\x28", b"\x00" * 10, b"ok"]
    log.write_bytes(b"\n".join(raw) + b"\n")
    _, c = await run_follower(follow_config(tmp_path, "app.log"), len(raw), what="every line")
    assert c.lines() == raw


async def test_two_hundred_files_at_once(tmp_path):
    for i in range(200):
        (tmp_path / f"f{i:03d}.log").write_bytes(numbered(f"f{i}", 0, 50))
    async with Follower(follow_config(tmp_path, "*.log")) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 200 * 50, what="all files read")
        for i in range(0, 200, 7):
            append(tmp_path / f"f{i:03d}.log", numbered(f"f{i}", 50, 60))
        await until(lambda: len(c.lines()) == 200 * 50 + 29 * 10, what="appends to many")
        await c.stop()
    for i in range(200):
        n = 60 if i % 7 == 0 else 50
        assert c.lines(str(tmp_path / f"f{i:03d}.log")) == expected(f"f{i}", 0, n)


async def test_rename_to_another_matched_name_goes_on_under_the_new_name(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(numbered("x", 0, 10))
    async with Follower(follow_config(tmp_path, "app.log*")) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 10, what="first lines")
        os.rename(log, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", numbered("x", 10, 15))
        log.write_bytes(numbered("y", 0, 2))
        await until(lambda: len(c.lines()) == 17, what="renamed file and new file")
        await c.stop()
    assert c.lines(str(tmp_path / "app.log.1")) == expected("x", 10, 15)
    assert sorted(c.lines()) == sorted(expected("x", 0, 15) + expected("y", 0, 2)), (
        "nothing read twice: the renamed file is known by its inode"
    )


async def test_symlinked_logs_follow_the_link_through_rotation(tmp_path):
    # The kubelet layout: /var/log/containers/x.log -> /var/log/pods/.../0.log, rotated
    # by renaming 0.log and creating a new one; the link keeps pointing at 0.log.
    pods, links = tmp_path / "pods", tmp_path / "containers"
    pods.mkdir()
    links.mkdir()
    target = pods / "0.log"
    target.write_bytes(numbered("x", 0, 5))
    (links / "app.log").symlink_to(target)
    cfg = follow_config(links, "*.log", state_dir=tmp_path / "state")
    async with Follower(cfg) as follower:
        c = BatchRecorder(follower).start()
        await until(lambda: len(c.lines()) == 5, what="lines through the link")
        os.rename(target, pods / "0.log.20261125")
        append(pods / "0.log.20261125", numbered("x", 5, 8))
        target.write_bytes(numbered("y", 0, 2))
        await until(lambda: len(c.lines()) == 10, what="rotated and new file")
        await c.stop()
    assert sorted(c.lines()) == sorted(expected("x", 0, 8) + expected("y", 0, 2))
    assert follower.stats[str(links / "app.log")].rotations == 1


async def test_rewritten_while_stopped_with_the_same_first_bytes_is_still_detected(tmp_path):
    log = tmp_path / "app.log"
    header = b"# app log, format v1, " + b"=" * 400 + b"\n"  # longer than the fingerprint
    log.write_bytes(header + numbered("old", 0, 20))
    cfg = follow_config(tmp_path, "app.log")
    await run_follower(cfg, 21, what="first run")
    fd = os.open(log, os.O_WRONLY | os.O_TRUNC)  # same inode, same header, longer now
    os.write(fd, header + numbered("new", 0, 40))
    os.close(fd)
    follower, c = await run_follower(cfg, 41, what="the new content from its start")
    assert c.lines()[1:] == expected("new", 0, 40)
    assert follower.stats[str(log)].truncations == 1


async def test_stats_of_paths_long_gone_are_bounded(tmp_path, monkeypatch):
    import podkit.follow.follower as follower_module

    monkeypatch.setattr(follower_module, "MAX_IDLE_STATS", 3)
    # Each file has the same content, and ext4 usually hands the next one the inode of the
    # one just deleted: a deleted file's inode must not make its successor look read.
    async with Follower(follow_config(tmp_path, "*.log", rotate_wait=0.1)) as follower:
        c = BatchRecorder(follower).start()
        for i in range(8):
            path = tmp_path / f"pod-{i}.log"
            path.write_bytes(b"hello\n")
            await until(lambda p=path: c.lines(str(p)), what=f"pod {i} read")
            path.unlink()
            await until(lambda p=path: [e for e in c.events("closed") if e.path == str(p)],
                        what=f"pod {i} closed")  # fmt: skip
        await c.stop()
    assert len(follower.stats) <= 3
    assert str(tmp_path / "pod-7.log") in follower.stats  # the newest are kept
