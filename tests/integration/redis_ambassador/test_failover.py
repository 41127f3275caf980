"""redis-ambassador through real failovers: SIGKILL, SIGSTOP and SENTINEL FAILOVER.

Clients write continuously through the ambassador. After each failover the ambassador
must route to the new master, close the connections bound to the old one, and forward
no command to the old node after the switch: MONITOR on the old node (which shows client
commands only, never replicated ones) must see no write sent after the switch.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time

import pytest
import redis

from podkit_dev.servers import HOST, RedisServer, SentinelCluster, wait_for
from tests.integration.redis_ambassador.kit import (
    Monitor,
    RedisWriter,
    current_master,
    sample,
    start_ambassador,
    switched_away_at,
)


def _flush_monitor(node: RedisServer, monitor: Monitor) -> None:
    """Wait until MONITOR has shown everything the node executed before this call."""
    marker = f"flush-{time.monotonic_ns()}"
    node.command("ECHO", marker, timeout=10)
    wait_for(lambda: any(marker.encode() in line for line in monitor.lines), what="MONITOR")


def _watching(node: RedisServer) -> Monitor:
    """MONITOR on the master, once it has shown writes: the check after the failover must
    have something to check (on a loaded machine the failover once came before any)."""
    monitor = Monitor(node)
    wait_for(lambda: monitor.writes(), what="MONITOR to show writes before the failover")
    return monitor


def _connection_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class Scenario:
    """The common part: ambassador, an idle connection, writers, the event, the checks."""

    def __init__(self, run_helper, cluster: SentinelCluster) -> None:
        self.cluster = cluster
        self.helper, self.port = start_ambassador(run_helper, cluster)
        self.old_addr = cluster.master_addr()
        self.old = cluster.node(self.old_addr)
        assert current_master(self.helper) == self.old_addr
        self.idle = socket.create_connection((HOST, self.port), timeout=5)
        self.idle.sendall(b"PING\r\n")
        assert self.idle.recv(100) == b"+PONG\r\n"
        self.writer = RedisWriter(self.port).start()
        wait_for(lambda: self.writer.count() > 50, what="writes through the ambassador")

    def wait_switch(self) -> tuple[str, float]:
        new_addr = wait_for(
            lambda: (m := current_master(self.helper)) not in (None, self.old_addr) and m,
            timeout=30,
            what="the ambassador to switch to a new master",
        )
        switched = switched_away_at(self.helper, self.old_addr)
        assert switched is not None
        # The Sentinel asked first may lag its peers by a hello period; it must catch up.
        wait_for(lambda: self.cluster.master_addr() == new_addr, what="Sentinel to agree")
        return str(new_addr), switched

    def check_after_switch(self, new_addr: str, switched: float) -> None:
        self.check_idle_closed()
        self.finish_writes(switched)
        self.assert_on_new_master(new_addr, switched)

    def check_idle_closed(self) -> None:
        """The connection bound to the old master was closed by the ambassador."""
        self.idle.settimeout(0.2)
        wait_for(lambda: _connection_closed(self.idle), what="the idle connection to close")
        self.idle.close()

    def finish_writes(self, switched: float) -> None:
        """Writes go on after the switch; stop them once there are enough to check."""
        wait_for(lambda: len(self.writer.keys_after(switched)) > 100, timeout=20,
                 what="writes after the switch")  # fmt: skip
        self.writer.stop()

    def assert_on_new_master(self, new_addr: str, switched: float) -> None:
        """Every write acknowledged after the switch is on the new master."""
        after = self.writer.keys_after(switched)
        with redis.Redis(host=HOST, port=self.cluster.node(new_addr).port) as new:
            missing = [key for key, found in zip(after, new.mget(after), strict=True) if not found]
        assert not missing, self._explain_loss(missing, after, switched)
        assert sample(self.helper, "redis_ambassador_failovers_total") == 1.0

    def _explain_loss(self, missing: list[str], after: list[str], switched: float) -> str:
        """What a failure needs to tell an ambassador bug from Sentinel's own doing."""
        sent = {key: at for at, key, _ in self.writer.acked()}
        offsets = sorted(sent[key] - switched for key in missing)
        roles = {}
        for node in self.cluster.nodes:
            with contextlib.suppress(Exception):
                reply = node.command("ROLE").split(b"\r\n")  # RESP: keep the values
                values = b" ".join(v for v in reply if v[:1] not in (b"*", b"$", b""))
                roles[node.port] = values[:60]
        return (
            f"{len(missing)} of {len(after)} writes acknowledged after the switch are not on "
            f"the new master; sent {offsets[0]:.3f}..{offsets[-1]:.3f} s after the switch; "
            f"failovers={sample(self.helper, 'redis_ambassador_failovers_total')}; "
            f"roles={roles}; routes={self.routes()}"
        )

    def routes(self) -> list[tuple[object, ...]]:
        """The ambassador's route changes and the warnings around them, from its log."""
        return [(e.get("event"), e.get("old") or e.get("master") or e.get("candidate"),
                 e.get("new") or e.get("role"), e.get("reason"))
                for e in self.helper.log_events() if e.get("level") == "warning"
                or e.get("event") in ("master_lost", "master_changed")]  # fmt: skip

    def assert_nothing_after(self, monitor: Monitor, switched: float) -> None:
        seen = monitor.writes()
        late = [(source, key, sent) for source, key, sent in seen if sent > switched]
        assert not late, f"{len(late)} writes reached the old master after the switch: {late[:3]}"


def test_master_killed(run_helper, sentinel_cluster):
    scenario = Scenario(run_helper, sentinel_cluster)
    scenario.old.stop(signal.SIGKILL)
    new_addr, switched = scenario.wait_switch()
    scenario.check_after_switch(new_addr, switched)


def test_killed_master_restarted_stale_gets_no_traffic(run_helper, sentinel_cluster):
    scenario = Scenario(run_helper, sentinel_cluster)
    scenario.old.stop(signal.SIGKILL)
    new_addr, switched = scenario.wait_switch()
    # The old master comes back empty and as a master, before Sentinel demotes it.
    stale = RedisServer(port=scenario.old.port)
    sentinel_cluster.nodes.append(stale)
    stale.start()
    assert stale.command("ROLE").startswith(b"*3\r\n$6\r\nmaster"), "not a stale master"
    monitor = Monitor(stale)
    # New connections (one client per write) and the running writers: none reach it.
    fresh = [f"amb:fresh:{n}" for n in range(100)]
    for key in fresh:
        with redis.Redis(host=HOST, port=scenario.port, socket_timeout=5) as client:
            client.set(key, repr(time.time()))
    scenario.check_idle_closed()
    scenario.finish_writes(switched)
    # The stale master is checked first: writes there are the ambassador's fault, while
    # writes missing on the new master could also be Sentinel resyncing it.
    _flush_monitor(stale, monitor)
    assert monitor.writes() == [], "the stale master received writes"
    scenario.assert_on_new_master(new_addr, switched)
    with redis.Redis(host=HOST, port=sentinel_cluster.node(new_addr).port) as new:
        assert new.exists(*fresh) == len(fresh)
    # It routes to the new master. Waited for, not a snapshot: the route was found dropped
    # here once in 15 runs with a core kept busy (the ambassador drops it, the safe side,
    # for a round in which it cannot verify the master); a failure lists why it did.
    wait_for(lambda: current_master(scenario.helper) == new_addr, timeout=10,
             what="the ambassador to route to the new master",
             explain=lambda: f"routes={scenario.routes()}")  # fmt: skip
    monitor.close()


def test_master_frozen(run_helper, sentinel_cluster):
    scenario = Scenario(run_helper, sentinel_cluster)
    monitor = _watching(scenario.old)
    scenario.old.process.send_signal(signal.SIGSTOP)
    try:
        new_addr, switched = scenario.wait_switch()
        scenario.check_after_switch(new_addr, switched)
        assert sample(scenario.helper, "redis_ambassador_connections_closed_by_failover_total") > 0
    finally:
        scenario.old.process.send_signal(signal.SIGCONT)
    _flush_monitor(scenario.old, monitor)
    assert monitor.writes(), "MONITOR saw no writes at all: the check would prove nothing"
    scenario.assert_nothing_after(monitor, switched)
    monitor.close()


def test_sentinel_failover_command(run_helper, sentinel_cluster):
    scenario = Scenario(run_helper, sentinel_cluster)
    monitor = _watching(scenario.old)
    reply = sentinel_cluster.sentinels[0].command("SENTINEL", "FAILOVER", "mymaster")
    assert reply.startswith(b"+OK"), reply
    new_addr, switched = scenario.wait_switch()
    scenario.check_after_switch(new_addr, switched)
    assert sample(scenario.helper, "redis_ambassador_connections_closed_by_failover_total") > 0
    _flush_monitor(scenario.old, monitor)
    assert monitor.writes(), "MONITOR saw no writes at all: the check would prove nothing"
    scenario.assert_nothing_after(monitor, switched)
    monitor.close()


@pytest.fixture(autouse=True)
def _cleanup_writers():
    yield
