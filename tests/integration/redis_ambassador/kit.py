"""What the redis-ambassador tests share: writers through the proxy, MONITOR on a node.

Writers stamp every value with the wall-clock time the command was sent, so a command
seen at a node (through MONITOR, which never shows replicated commands) can be dated
against the moment the ambassador switched away from that node.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import redis

from podkit_dev.servers import HOST, HelperProcess, RedisServer, SentinelCluster, free_port


def start_ambassador(
    run_helper, cluster: SentinelCluster, *args: str, wait: str | None = "readyz"
) -> tuple[HelperProcess, int]:
    port = free_port()
    helper = run_helper(
        "redis-ambassador",
        "--sentinels", ",".join(cluster.sentinel_addrs),
        "--listen", f"{HOST}:{port}",
        "--log-level", "debug",
        *args,
        wait=wait,
    )  # fmt: skip
    return helper, port


def sample(helper: HelperProcess, name_with_labels: str) -> float:
    for line in helper.metrics().splitlines():
        if line.startswith(name_with_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def current_master(helper: HelperProcess) -> str | None:
    for line in helper.metrics().splitlines():
        match = re.match(r'redis_ambassador_master_info\{address="([^"]+)"\} 1\.0', line)
        if match:
            return match.group(1)
    return None


def event_time(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def switched_away_at(helper: HelperProcess, old: str, after: float = 0.0) -> float | None:
    """When the ambassador stopped routing to `old` (lost or replaced it), from its log:
    the first time after `after` (unix time)."""
    for event in helper.log_events():
        if event.get("event") in ("master_lost", "master_changed") and event.get("old") == old:
            # `at` is the exact unix time the connections were cut (`ts` is in ms).
            at = float(event["at"]) if "at" in event else event_time(event)
            if at > after:
                return at
    return None


@dataclass
class RedisWriter:
    """Threads that SET through the ambassador continuously, reconnecting on errors.

    Every acknowledged write is kept as (time sent, key, time acknowledged)."""

    port: int
    threads: int = 4
    prefix: str = "amb"
    socket_timeout: float = 2.0
    ok: list[tuple[float, str, float]] = field(default_factory=list)
    errors: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RedisWriter:
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, number: int) -> None:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=self.socket_timeout,
                             socket_connect_timeout=2)  # fmt: skip
        seq = 0
        while not self.stop_event.is_set():
            seq += 1
            key = f"{self.prefix}:{number}:{seq}"
            sent = time.time()
            try:
                client.set(key, repr(sent))
            except redis.RedisError:
                with self.lock:
                    self.errors += 1
                time.sleep(0.005)
                continue
            acked = time.time()
            with self.lock:
                self.ok.append((sent, key, acked))
        client.close()

    def count(self) -> int:
        with self.lock:
            return len(self.ok)

    def keys_after(self, when: float) -> list[str]:
        """Keys of acknowledged writes that were *sent* after `when`."""
        with self.lock:
            return [key for at, key, _ in self.ok if at > when]

    def acked(self) -> list[tuple[float, str, float]]:
        with self.lock:
            return list(self.ok)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(10)


class Monitor:
    """MONITOR on one node: the client commands it executes, with their source addresses."""

    LINE = re.compile(rb'^\+(\d+\.\d+) \[\d+ ([^\]]+)\] "(\w+)"(?: "([^"]*)")?(?: "([^"]*)")?')

    def __init__(self, node: RedisServer) -> None:
        self.sock = socket.create_connection((HOST, node.port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        if self.file.readline() != b"+OK\r\n":
            raise RuntimeError("MONITOR was refused")
        self.sock.settimeout(None)
        self.lines: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self.file:
                self.lines.append(line)

    def writes(self, prefix: str = "amb") -> list[tuple[str, str, float]]:
        """(source, key, time the writer sent it) of each SET with our prefix."""
        found = []
        for line in list(self.lines):
            match = self.LINE.match(line)
            if match and match.group(3).upper() == b"SET" and match.group(4):
                key = match.group(4).decode()
                if key.startswith(prefix + ":"):
                    sent = float(match.group(5) or 0)
                    found.append((match.group(2).decode(), key, sent))
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
