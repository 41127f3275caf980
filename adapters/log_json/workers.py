"""Parse and encode batches in worker processes, so the adapter uses more than one core.

The adapter's own process follows the files and writes the output; it sends each batch of
lines to a worker, which parses and encodes it and sends the records back. The workers are
forked from the adapter once it has started: the parser's modules are loaded and their
pages shared, so a worker adds a few MiB, not a second interpreter; each builds its own
parser by name (`make_builder`), plugins included.

Nothing is lost or reordered when a process dies:
- the adapter writes records in the order the follower read the batches, and acknowledges a
  batch (its checkpoint may advance) only once its records are written;
- a worker that dies (killed, crashed) is replaced at once and the batches it had not
  answered are sent to its replacement: each line is written exactly once. A batch that
  kills MAX_TRIES workers in a row is encoded in the adapter's own process instead;
- if the adapter dies, each worker sees its pipe close and exits; the follower re-reads
  from the last checkpoint, as without workers (at-least-once: the batch being written
  when the adapter died may be written again).

Messages are pickles behind an 8-byte length, over a pipe each way (1 MiB pipe buffers,
so a batch usually goes in one write). A thread per worker and direction does the blocking
I/O; results are handed to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import itertools
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import traceback
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podkit.backoff import Backoff

from .encoders import Encoded, Encoders, collect_auto

if TYPE_CHECKING:
    from podkit.follow import Batch

    from .settings import LogAdapterSettings

MAX_TRIES = 3
"""Workers a batch may take down before the adapter encodes it itself."""
PIPE_BYTES = 1 << 20
RESTART_FIRST, RESTART_MAX = 0.5, 30.0
"""Pause before replacing a worker that died without answering a batch, doubling."""
QUEUED = 2
"""Batches in flight per worker: one it encodes, one waiting in its pipe."""
CLOSE_WAIT = 5.0
"""Seconds a worker has to exit once its pipe is closed, before it is killed."""
_HEADER = struct.Struct("<Q")


def cpu_count() -> int:
    """CPUs this process may use: its affinity, and the cgroup's quota (a pod's limit)."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    return cores


def worker_count(setting: str) -> int:
    """Worker processes for `--workers` (0: parse in the adapter's own process).

    auto: one less than the CPUs, so with the adapter's own process (which follows, writes,
    and encodes a batch itself while the workers are busy) every CPU is used; on one CPU
    none, as a worker there measured 12% slower than parsing in process (bench/).
    """
    if setting == "auto":
        cores = cpu_count()
        return cores - 1 if cores > 1 else 0
    return int(setting)


def worker_settings(settings: LogAdapterSettings) -> LogAdapterSettings:
    """The settings a worker builds its parser from: an entry-point name is resolved to its
    module:attr here, so each worker imports the parser by name without scanning every
    installed package's metadata again (about a MiB each)."""
    from podkit import plugins

    spec = settings.parser.strip()
    if ":" in spec or "/" in spec or spec.endswith(".py"):
        return settings
    entry_point = plugins.available("parser").get(spec)
    if entry_point is None:
        return settings
    return settings.model_copy(update={"parser": entry_point.value})


# --- framing ----------------------------------------------------------------------------


def _send(fd: int, *parts: bytes | bytearray) -> None:
    """Each part as one message (written as they are: no copy of a large part)."""
    for part in parts:
        for view in (memoryview(_HEADER.pack(len(part))), memoryview(part)):
            while view:
                view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = os.readv(fd, [view[done:]])
        if got == 0:
            return None
        done += got
    return buffer


def _recv(fd: int) -> bytearray | None:
    """The next message, or None when the other end closed the pipe."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    return _read_exact(fd, _HEADER.unpack(header)[0])


def _pipe() -> tuple[int, int]:
    read, write = os.pipe()
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return read, write


# --- the worker (a forked child) --------------------------------------------------------


def _worker_main(
    requests: int, results: int, settings: LogAdapterSettings, parser_name: str
) -> None:
    from .build import make_builder

    builder = make_builder(settings)  # the parser loaded by name, here
    builder.name = parser_name  # as the adapter calls it (its entry-point name, say)
    encoders = Encoders(builder)
    take_auto = collect_auto(encoders.auto)
    while (message := _recv(requests)) is not None:
        kind, seq, *args = pickle.loads(message)
        del message
        if kind == "batch":
            records, count = encoders.encode(*args)
        else:  # "flush": the end of input
            records, count = encoders.flush()
        # The records go as they are, after a small pickle of what was counted.
        encoded = Encoded(b"", count, builder.stats.take(), take_auto())
        _send(results, pickle.dumps((seq, encoded), protocol=pickle.HIGHEST_PROTOCOL), records)
        del records, encoded


def _become_worker(
    requests: int, results: int, settings: LogAdapterSettings, parser_name: str
) -> None:
    """In the child just forked: drop the adapter's fds and signals, serve, never return."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)  # the adapter's event loop is not ours
        for sig in (signal.SIGINT, signal.SIGTERM):
            # A terminal's Ctrl-C reaches the whole group: the adapter drains, and the
            # worker stops when the adapter closes its pipe.
            signal.signal(sig, signal.SIG_IGN)
        keep = sorted((requests, results))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 20)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # stdout may be the adapter's output: never ours to write
        os.close(null)
        gc.freeze()  # the adapter's objects: shared pages, not for this collector to walk
        _worker_main(requests, results, settings, parser_name)
    except BaseException:
        code = 1
        with contextlib.suppress(BaseException):
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
    finally:
        os._exit(code)


# --- the adapter's side -----------------------------------------------------------------


@dataclass
class _Job:
    seq: int
    future: asyncio.Future[Encoded]
    batch: Batch | None  # None: a flush
    tries: int = 0

    def payload(self) -> bytes:
        """The message, made at each send: not kept beside the batch's lines meanwhile."""
        if self.batch is None:
            message: tuple[Any, ...] = ("flush", self.seq)
        else:
            batch = self.batch
            message = ("batch", self.seq, batch.file_id.key(), batch.path, batch.lines)
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class _Worker:
    index: int
    pid: int
    to_worker: int
    from_worker: int
    jobs: dict[int, _Job] = field(default_factory=dict)
    """Sent and not answered yet, in the order sent."""
    outbox: queue.SimpleQueue[bytes | None] = field(default_factory=queue.SimpleQueue)
    reader: threading.Thread | None = None
    batches: int = 0


class WorkerPool:
    """`count` worker processes encoding batches; results come back as futures."""

    def __init__(
        self,
        settings: LogAdapterSettings,
        count: int,
        fallback: Encoders,
        log: Any,
        by_file: bool,
    ) -> None:
        self.settings = worker_settings(settings)
        self.count = count
        self.fallback = fallback
        """Encodes in the adapter's process a batch that kept killing workers."""
        self.log = log
        self.by_file = by_file
        """Route each file's batches to one worker (parsers with per-file state)."""
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.closing = False
        self._seq = itertools.count()
        self._backoff = Backoff(RESTART_FIRST, RESTART_MAX)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.workers = [self._spawn(index) for index in range(self.count)]

    def _spawn(self, index: int) -> _Worker:
        to_worker_r, to_worker_w = _pipe()
        from_worker_r, from_worker_w = _pipe()
        pid = os.fork()
        if pid == 0:
            _become_worker(to_worker_r, from_worker_w, self.settings, self.fallback.builder.name)
        os.close(to_worker_r)
        os.close(from_worker_w)
        for fd in (to_worker_w, from_worker_r):
            os.set_inheritable(fd, False)
        worker = _Worker(index, pid, to_worker_w, from_worker_r)
        threading.Thread(target=self._send_loop, args=(worker,), daemon=True).start()
        worker.reader = threading.Thread(target=self._read_loop, args=(worker,), daemon=True)
        worker.reader.start()
        return worker

    # The two threads of each worker: blocking pipe I/O, off the event loop.

    def _send_loop(self, worker: _Worker) -> None:
        try:
            while (payload := worker.outbox.get()) is not None:
                _send(worker.to_worker, payload)
                del payload  # sent: not kept until the next one comes
        except OSError:
            pass  # the worker died: its reader sees the pipe close and restarts it
        finally:
            os.close(worker.to_worker)

    def _read_loop(self, worker: _Worker) -> None:
        assert self._loop is not None
        try:
            while (message := _recv(worker.from_worker)) is not None:
                records = _recv(worker.from_worker)
                if records is None:
                    break
                self._loop.call_soon_threadsafe(self._answered, worker, message, records)
        except OSError:
            pass
        os.close(worker.from_worker)
        status = 0
        with contextlib.suppress(ChildProcessError):
            status = os.waitpid(worker.pid, 0)[1]
        with contextlib.suppress(RuntimeError):  # the loop is closed: the adapter has ended
            self._loop.call_soon_threadsafe(self._died, worker, status)

    # In the event loop.

    def busy(self) -> bool:
        """Every worker has a batch queued behind the one it encodes: the adapter may
        encode the next batch itself (stateless parsers only) instead of queueing it."""
        return not self.by_file and all(len(w.jobs) >= QUEUED for w in self.workers)

    def submit(self, batch: Batch) -> asyncio.Future[Encoded]:
        if self.by_file:
            worker = self.workers[zlib.crc32(batch.file_id.key().encode()) % self.count]
        else:
            worker = min(self.workers, key=lambda w: len(w.jobs))
        return self._send_job(worker, batch)

    def flush(self) -> list[asyncio.Future[Encoded]]:
        """Ask every worker for what its parsers still hold (the end of input)."""
        return [self._send_job(worker, None) for worker in self.workers]

    def _send_job(self, worker: _Worker, batch: Batch | None) -> asyncio.Future[Encoded]:
        assert self._loop is not None
        job = _Job(next(self._seq), self._loop.create_future(), batch)
        worker.jobs[job.seq] = job
        worker.outbox.put(job.payload())
        return job.future

    def _answered(self, worker: _Worker, message: bytearray, records: bytearray) -> None:
        seq, encoded = pickle.loads(message)
        encoded.records = records
        job = worker.jobs.pop(seq, None)
        worker.batches += 1
        if job is not None and not job.future.done():
            job.future.set_result(encoded)

    def _died(self, worker: _Worker, status: int) -> None:
        worker.outbox.put(None)
        if self.closing or self.workers[worker.index] is not worker:
            return
        self.restarts += 1
        how = (
            {"signal": signal.Signals(os.WTERMSIG(status)).name}
            if os.WIFSIGNALED(status)
            else {"exit_code": os.waitstatus_to_exitcode(status)}
        )
        # A worker that died before answering anything (its parser cannot load there, say)
        # is replaced after a growing pause, not in a loop of forks.
        if worker.batches:
            self._backoff.reset()
            delay = 0.0
        else:
            delay = self._backoff.next()
        self.log.error(
            "worker_died", pid=worker.pid, **how, batches_redone=len(worker.jobs),
            restarts=self.restarts, restart_in=round(delay, 2),
            metric="log_adapter_worker_restarts_total",
        )  # fmt: skip
        assert self._loop is not None
        if delay:
            self._loop.call_later(delay, self._replace, worker)
        else:
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        if self.closing:
            return
        replacement = self.workers[worker.index] = self._spawn(worker.index)
        self.log.info("worker_restarted", pid=replacement.pid, replaced=worker.pid)
        for job in worker.jobs.values():
            job.tries += 1
            if job.tries < MAX_TRIES:
                replacement.jobs[job.seq] = job
                replacement.outbox.put(job.payload())
            elif not job.future.done():
                self._encode_here(job)

    def _encode_here(self, job: _Job) -> None:
        if job.batch is None:
            records, count = self.fallback.flush()
        else:
            batch = job.batch
            self.log.error(
                "batch_encoded_in_process", path=batch.path, lines=len(batch.lines),
                workers_lost=job.tries,
            )  # fmt: skip
            records, count = self.fallback.encode(batch.file_id.key(), batch.path, batch.lines)
        job.future.set_result(Encoded(records, count))

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self.workers)

    async def close(self) -> None:
        """Close the pipes (each worker exits when its own closes) and wait for them."""
        self.closing = True
        for worker in self.workers:
            worker.outbox.put(None)
        for worker in self.workers:
            if worker.reader is not None:
                await asyncio.to_thread(worker.reader.join, CLOSE_WAIT)
                if worker.reader.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)

    def kill_now(self) -> None:
        """Cancelled: the workers go at once (their batches are not acknowledged)."""
        self.closing = True
        for worker in self.workers:
            worker.outbox.put(None)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
