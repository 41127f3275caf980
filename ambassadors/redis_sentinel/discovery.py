"""Finding the master, and following Sentinel's failovers as they happen.

**Rounds.** One round asks every Sentinel `SENTINEL MASTERS` at once and reads our
master's entry: its address, its flags (`failover_in_progress`, `o_down`) and the
failover-timeout. An address is a candidate when at least `need` of the Sentinels that
answered name it (`need` is a majority of the reachable Sentinels, or `--quorum`); the
candidate becomes the master only if no failover of it is in progress and it answers
`ROLE` with `master`. Rounds run every `--poll-interval`, and every FAST_POLL while no
master is known after a failover event.

**Failovers.** Every Sentinel is subscribed to the failover events of our master
(`+try-failover`, `+elected-leader`, `+failover-state-*`, `+selected-slave`,
`+promoted-slave`, `+failover-end`, `-failover-abort-*`, `+switch-master`,
`+odown`/`-odown`, `+sdown`). The first sign that a failover of the current master has
started (any Sentinel, any of these events, or a round that finds `failover_in_progress`
or `o_down` on it) takes the master out of service at once: its connections are closed
and new ones wait. The hold ends when:

- the promoted node is known (`+promoted-slave` from the Sentinel that announced
  `+elected-leader`, or `+switch-master` from any) and answers `ROLE` master: it is used;
- or a majority names another address that answers `ROLE` master: it is used;
- or every Sentinel that started an attempt aborted it (`-failover-abort-*`, or a later
  round finds it no longer failing over and still naming the old master) and no reachable
  Sentinel says a failover or `o_down` is in progress: the old master is verified again;
- or nothing was heard of the failover for the failover-timeout (the Sentinels' own, or
  `--failover-hold-timeout`): a lost event cannot hold traffic forever. The rounds still
  refuse a master that a reachable Sentinel says is being failed over.

A node switched away from (`+switch-master`) is not taken back for SUSPECT_HOLD even if
the majority still names it: the announcing Sentinel's peers are catching up.

When no Sentinel answers, the current master is kept as long as it still says ROLE
master (metric `redis_ambassador_master_kept_without_sentinels`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from podkit.ambassadors.redis_sentinel.metrics import AmbassadorMetrics
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings
from podkit.backoff import Backoff
from podkit.config import split_host_port
from podkit.logs import get_logger

try:  # redis-py >= 8 asks every new connection for maintenance notifications: not needed
    from redis.maint_notifications import MaintNotificationsConfig

    NO_MAINT_NOTIFICATIONS: dict[str, Any] = {
        "maint_notifications_config": MaintNotificationsConfig(enabled=False)
    }
except ImportError:  # older redis-py: nothing to turn off
    NO_MAINT_NOTIFICATIONS = {}

FAST_POLL = 0.02
FAST_POLL_FOR = 10.0
# After a +switch-master away from a master, it is not taken back for this long even if
# the majority still names it: the announcing Sentinel's peers are catching up.
SUSPECT_HOLD = 5.0
RESUBSCRIBE_MAX_BACKOFF = 5.0
# Sentinel's own default failover-timeout, used until a Sentinel tells us its value.
DEFAULT_FAILOVER_TIMEOUT = 180.0

# Events that say a failover of the master they name has started or is running.
FAILOVER_EVENTS = (
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+slave-reconf-sent",
    "+slave-reconf-inprog",
    "+slave-reconf-done",
    "+failover-end-for-timeout",
    "+failover-end",
)
OTHER_EVENTS = ("+switch-master", "+odown", "-odown", "+sdown")
ABORT_PATTERN = "-failover-abort-*"
# The aborts Redis 7 publishes (a metric label; others are counted as "-failover-abort-other").
ABORTS = (
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
)


def _reason(exc: BaseException) -> str:
    """A short, stable label for a failure (metric label values must stay few)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    name = type(exc).__name__
    return {
        "ConnectionError": "connect",
        "TimeoutError": "timeout",
        "AuthenticationError": "auth",
        "AuthenticationWrongNumberOfArgsError": "auth",
        "InvalidResponse": "protocol",
        "ResponseError": "error_reply",
        "NoPermissionError": "auth",
    }.get(name, "other")


def _addr(host: Any, port: Any) -> str:
    if not str(port).isdigit():
        raise ValueError(f"unexpected port {port!r:.40}")
    host = str(host)
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"unexpected host {host!r:.40}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_addr(reply: Any) -> str | None:
    """A `SENTINEL GET-MASTER-ADDR-BY-NAME` reply: [host, port] or nil."""
    if reply is None:
        return None
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise ValueError(f"unexpected reply {reply!r:.80}")
    return _addr(*reply)


@dataclass(frozen=True)
class View:
    """One Sentinel's view of our master."""

    addr: str | None
    failing_over: bool = False  # flags: failover_in_progress
    odown: bool = False  # flags: o_down
    failover_timeout: float | None = None  # seconds

    @property
    def busy(self) -> bool:
        return self.failing_over or self.odown


def _fields(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return {str(k): v for k, v in entry.items()}
    if isinstance(entry, list | tuple) and len(entry) % 2 == 0:
        keys = entry[::2]
        if all(isinstance(k, str) for k in keys):
            return dict(zip(keys, entry[1::2], strict=True))
    raise ValueError(f"unexpected master entry {entry!r:.80}")


def _parse_masters(reply: Any, name: str) -> View:
    """Our master's entry in a `SENTINEL MASTERS` reply (View(None) if not monitored)."""
    if reply is None:
        return View(None)
    if not isinstance(reply, list | tuple):
        raise ValueError(f"unexpected reply {reply!r:.80}")
    for entry in reply:
        fields = _fields(entry)
        if fields.get("name") != name:
            continue
        flags = str(fields.get("flags", "")).split(",")
        timeout = fields.get("failover-timeout")
        return View(
            _addr(fields.get("ip"), fields.get("port")),
            failing_over="failover_in_progress" in flags,
            odown="o_down" in flags,
            failover_timeout=int(str(timeout)) / 1000 if str(timeout).isdigit() else None,
        )
    return View(None)


@dataclass(frozen=True)
class SentinelEvent:
    """A Sentinel event about one master: `<type> <name> <ip> <port> [@ <master> <ip> <port>]`."""

    channel: str
    master_name: str
    master: str  # the address of the master the event is about
    instance: str | None  # the replica it names (selected, promoted...), if any


def parse_event(channel: str, data: str) -> SentinelEvent | None:
    """The event, or None if it is not one about a master (or is malformed)."""
    parts = data.split()
    try:
        if channel == "+switch-master":
            if len(parts) != 5:
                return None
            name, old_host, old_port, new_host, new_port = parts
            return SentinelEvent(
                channel, name, _addr(old_host, old_port), _addr(new_host, new_port)
            )
        if len(parts) >= 8 and parts[4] == "@":
            return SentinelEvent(
                channel, parts[5], _addr(parts[6], parts[7]), _addr(parts[2], parts[3])
            )
        if len(parts) >= 4 and parts[0] == "master":
            return SentinelEvent(channel, parts[1], _addr(parts[2], parts[3]), None)
    except ValueError:
        return None
    return None


@dataclass
class Round:
    """What one round of questions found."""

    votes: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    started: float = 0.0  # monotonic time the questions were sent

    @property
    def reachable(self) -> int:
        return len(self.votes)

    def candidate(self, quorum: int | None) -> tuple[str | None, int]:
        """The address enough Sentinels name, and how many name it."""
        counts = Counter(addr for addr in self.votes.values() if addr)
        if not counts:
            return None, 0
        need = quorum or self.reachable // 2 + 1
        (best, votes), *rest = counts.most_common()
        if votes < need or (rest and rest[0][1] == votes):
            return None, votes
        return best, votes

    def busy_with(self, addr: str) -> list[str]:
        """Sentinels that say a failover of `addr` is in progress (or that it is o_down)."""
        return [s for s, view in self.views.items() if view.addr == addr and view.busy]


@dataclass
class Failover:
    """A failover of `old` that some Sentinel said has started."""

    old: str
    started: float  # monotonic
    started_at: float  # unix time
    deadline: float  # monotonic; pushed back by every piece of news
    attempts: dict[str, float] = field(default_factory=dict)  # Sentinel -> since (monotonic)
    leader: str | None = None
    promoted: str | None = None  # named by the leader's +promoted-slave or a +switch-master
    switched: bool = False
    trigger: str = ""


class Discovery:
    def __init__(
        self,
        settings: AmbassadorSettings,
        metrics: AmbassadorMetrics,
        apply: Callable[[str | None, str], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.apply = apply
        self.log = get_logger("redis_ambassador.discovery")
        self.master: str | None = None
        self.suspect: dict[str, float] = {}
        self.failovers: dict[str, Failover] = {}
        self.failover_timeout = DEFAULT_FAILOVER_TIMEOUT
        self.wake = asyncio.Event()
        self.fast_until = 0.0
        self.first_round = asyncio.Event()
        self.clients = {addr: self._client(addr, sentinel=True) for addr in settings.sentinels}
        self.last_disagreement: tuple[Any, ...] | None = None
        self.kept_without_sentinels = False
        self.last_rejected: tuple[str, str] | None = None
        self.sentinel_errors: dict[str, str] = {}

    # --- connections -----------------------------------------------------------------------

    def _client(self, addr: str, *, sentinel: bool) -> Redis:
        s = self.settings
        host, port = split_host_port(addr)
        tls = s.sentinel_tls if sentinel else s.redis_tls
        password = s.sentinel_password_file if sentinel else s.redis_password_file
        options: dict[str, Any] = {}
        if tls:
            options = {
                "ssl": True,
                "ssl_ca_certs": s.tls_ca_file,
                "ssl_certfile": s.tls_cert_file,
                "ssl_keyfile": s.tls_key_file,
                "ssl_check_hostname": s.tls_verify_hostname,
            }
        return Redis(
            host=host,
            port=port,
            username=s.sentinel_username if sentinel else s.redis_username,
            password=password.get_secret_value() if password else None,
            socket_timeout=s.sentinel_timeout,
            socket_connect_timeout=s.sentinel_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            client_name="podkit-redis-ambassador",
            **NO_MAINT_NOTIFICATIONS,
            **options,
        )

    # --- one round -------------------------------------------------------------------------

    async def _ask(self, addr: str, client: Redis) -> View:
        reply = await asyncio.wait_for(
            client.execute_command("SENTINEL", "MASTERS"),  # type: ignore[no-untyped-call]
            self.settings.sentinel_timeout * 2,
        )
        return _parse_masters(reply, self.settings.master_name)

    async def ask_all(self) -> Round:
        result = Round(started=time.monotonic())
        names = list(self.clients)
        replies = await asyncio.gather(
            *(self._ask(addr, self.clients[addr]) for addr in names), return_exceptions=True
        )
        for addr, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                if isinstance(reply, asyncio.CancelledError):
                    raise reply
                reason = "protocol" if isinstance(reply, ValueError) else _reason(reply)
                result.errors[addr] = reason
                self.metrics.discovery_errors.labels(addr, reason).inc()
                if self.sentinel_errors.get(addr) != reason:  # log changes, count every one
                    self.sentinel_errors[addr] = reason
                    self.log.warning("sentinel_query_failed", sentinel=addr, reason=reason,
                                     error=str(reply)[:200] or type(reply).__name__)  # fmt: skip
                # A broken connection must not poison the next round.
                with contextlib.suppress(Exception):
                    await self.clients[addr].connection_pool.disconnect()
            else:
                result.votes[addr] = reply.addr
                result.views[addr] = reply
                if self.sentinel_errors.pop(addr, None) is not None:
                    self.log.info("sentinel_recovered", sentinel=addr)
        timeouts = [v.failover_timeout for v in result.views.values() if v.failover_timeout]
        if timeouts:
            self.failover_timeout = max(timeouts)
        return result

    async def role(self, addr: str) -> str:
        """The node's ROLE ("master", "slave", ...) or a failure reason prefixed with "!"."""
        client = self._client(addr, sentinel=False)
        try:
            reply = await asyncio.wait_for(
                client.execute_command("ROLE"),  # type: ignore[no-untyped-call]
                self.settings.sentinel_timeout * 2,
            )
            if isinstance(reply, list | tuple) and reply and isinstance(reply[0], str):
                return reply[0]
            return "!protocol"
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            return "!" + _reason(exc)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def round(self) -> None:
        found = await self.ask_all()
        m = self.metrics
        m.sentinels_reachable.set(found.reachable)
        self._follow_polled(found)
        if await self._adopt_promoted():
            return
        candidate, votes = found.candidate(self.settings.quorum)
        m.sentinels_agreeing.set(votes if candidate else 0)
        now = time.monotonic()
        if found.reachable == 0:
            await self._without_sentinels()
            return
        self._keeping_without_sentinels(False)
        if candidate is None:
            state = (tuple(sorted(found.votes.items(), key=str)),)
            if state != self.last_disagreement:
                self.last_disagreement = state
                self.log.warning(
                    "sentinels_disagree",
                    votes={k: v for k, v in found.votes.items()},
                    need=self.settings.quorum or found.reachable // 2 + 1,
                )
            self._set(None, "sentinels_disagree")
            return
        self.last_disagreement = None
        replacing = candidate in self.failovers or bool(found.busy_with(candidate))
        switched_away = self.suspect.get(candidate, 0.0) > now
        if (replacing or switched_away) and self.master not in (None, candidate):
            # The majority still names the node being replaced while we already use the
            # promoted one (the leader's word): keep it while it says ROLE master.
            await self._keep_promoted()
            return
        if replacing:
            self._set(None, "failover_in_progress")
            return
        if switched_away:
            self._set(None, "switch_announced")
            return
        role = await self.role(candidate)
        if role != "master":
            m.role_check_failures.labels(role.lstrip("!")).inc()
            if (candidate, role) != self.last_rejected:  # log each new situation once
                self.last_rejected = (candidate, role)
                self.log.warning("candidate_not_master", candidate=candidate, role=role)
            self._set(None, "candidate_not_master")
            return
        if candidate in self.failovers:  # an event came while ROLE was asked
            return
        self.last_rejected = None
        self.suspect.pop(candidate, None)
        self._end_failovers_other_than(candidate, "majority")
        self._set(candidate, "sentinel_majority")

    async def _keep_promoted(self) -> None:
        master = self.master
        if master is None:
            return
        role = await self.role(master)
        if role != "master" and self.master == master:
            self.metrics.role_check_failures.labels(role.lstrip("!")).inc()
            self.log.warning("promoted_master_lost", master=master, role=role)
            self._set(None, "candidate_not_master")

    def _keeping_without_sentinels(self, keeping: bool) -> None:
        if keeping and not self.kept_without_sentinels:
            self.log.warning("keeping_master_without_sentinels", master=self.master)
        self.kept_without_sentinels = keeping
        self.metrics.without_sentinels.set(1 if keeping else 0)

    async def _without_sentinels(self) -> None:
        if self.master is None:
            self._keeping_without_sentinels(False)
            self._set(None, "no_sentinel_reachable")
            return
        role = await self.role(self.master)
        if role == "master":
            self._keeping_without_sentinels(True)
            return
        self._keeping_without_sentinels(False)
        self.metrics.role_check_failures.labels(role.lstrip("!")).inc()
        self.log.warning("master_lost_without_sentinels", master=self.master, role=role)
        self._set(None, "no_sentinel_reachable")

    def _set(self, addr: str | None, reason: str) -> None:
        if addr != self.master:
            self.master = addr
            self.apply(addr, reason)

    # --- failovers -------------------------------------------------------------------------

    def _hold_limit(self) -> float:
        return self.settings.failover_hold_timeout or self.failover_timeout

    def _failover(self, old: str, trigger: str) -> Failover:
        """The failover of `old` (started now if it is news); the current master is cut."""
        now = time.monotonic()
        fo = self.failovers.get(old)
        if fo is None:
            fo = Failover(old, now, time.time(), now + self._hold_limit(), trigger=trigger)
            self.failovers[old] = fo
            current = self.master == old
            self.metrics.failover_holds.labels(trigger).inc()
            self.log.warning("failover_started", master=old, trigger=trigger, current=current)
        else:
            fo.deadline = now + self._hold_limit()
        self.metrics.failover_in_progress.set(1)
        if self.master == old:
            self._set(None, "failover_started")
        self.hurry()
        return fo

    @staticmethod
    def _abandoned(fo: Failover) -> bool:
        """Every attempt aborted and nothing was promoted: the old master stays."""
        return not fo.attempts and not fo.switched and fo.promoted is None

    def _end(self, old: str, outcome: str) -> None:
        fo = self.failovers.pop(old, None)
        if fo is None:
            return
        self.metrics.failover_holds_ended.labels(outcome).inc()
        self.log.info("failover_ended", master=old, outcome=outcome, promoted=fo.promoted,
                      seconds=round(time.monotonic() - fo.started, 3))  # fmt: skip
        if not self.failovers:
            self.metrics.failover_in_progress.set(0)

    def _end_failovers_other_than(self, addr: str, outcome: str) -> None:
        """`addr` is verified as the master: failovers away from other nodes are over."""
        for old, fo in list(self.failovers.items()):
            if old != addr and (fo.promoted in (None, addr)):
                if fo.promoted is not None or fo.switched:
                    self.suspect[old] = time.monotonic() + SUSPECT_HOLD
                self._end(old, outcome)

    def _follow_polled(self, found: Round) -> None:
        """What the rounds see of failovers: a fallback for lost or late events."""
        now = time.monotonic()
        for old, fo in list(self.failovers.items()):
            for sentinel, since in list(fo.attempts.items()):
                view = found.views.get(sentinel)
                if view is None or found.started <= since:
                    continue  # unreachable, or asked before its attempt was heard of
                if view.addr not in (None, old):
                    # It has switched to another master: the failover is done there.
                    fo.promoted = fo.promoted or view.addr
                    fo.switched = True
                elif not view.failing_over:
                    del fo.attempts[sentinel]  # it gave up without us hearing the abort
            if now > fo.deadline:
                self.log.warning("failover_hold_expired", master=old, attempts=list(fo.attempts),
                                 promoted=fo.promoted, limit=self._hold_limit())  # fmt: skip
                self._end(old, "expired")
            elif self._abandoned(fo) and not found.busy_with(old) and found.started > fo.started:
                self._end(old, "aborted")
        if self.master is not None and self.master not in self.failovers:
            busy = found.busy_with(self.master)
            if busy:
                fo = self._failover(self.master, "poll")
                for sentinel in busy:
                    if found.views[sentinel].failing_over:
                        fo.attempts.setdefault(sentinel, found.started)

    async def _adopt_promoted(self) -> bool:
        """Use a promoted node as soon as it is known and answers ROLE master."""
        for old, fo in list(self.failovers.items()):
            new = fo.promoted
            if new is None or new == old or new in self.failovers:
                continue
            role = await self.role(new)
            if role != "master":
                self.metrics.role_check_failures.labels(role.lstrip("!")).inc()
                continue
            if self.failovers.get(old) is not fo or new in self.failovers:
                continue  # an event changed things while ROLE was asked
            self.suspect[old] = time.monotonic() + SUSPECT_HOLD
            self._end(old, "switched" if fo.switched else "promoted")
            self.suspect.pop(new, None)
            self._set(new, "failover_promoted")
            return True
        return False

    # --- events ----------------------------------------------------------------------------

    def on_event(self, sentinel: str, channel: str, data: str) -> None:
        event = parse_event(channel, data)
        if event is None or event.master_name != self.settings.master_name:
            return
        known = channel in FAILOVER_EVENTS or channel in OTHER_EVENTS or channel in ABORTS
        self.metrics.sentinel_events.labels(channel if known else "-failover-abort-other").inc()
        if channel == "+switch-master":
            self.metrics.switch_announcements.labels(sentinel).inc()
        self.log.info("sentinel_event", sentinel=sentinel, channel=channel, master=event.master,
                      instance=event.instance)  # fmt: skip
        now = time.monotonic()
        old = event.master
        if self.master is not None and old != self.master:
            # About a node we do not route to (a late or stale Sentinel): it only must not
            # be taken back soon if it was switched away from.
            if channel == "+switch-master" and event.instance != old:
                self.suspect[old] = now + SUSPECT_HOLD
            return
        if channel == "+switch-master":
            new = event.instance
            if new is None or new == old:
                self.hurry()
                return
            fo = self._failover(old, "event")
            fo.promoted, fo.switched = new, True
            fo.attempts.clear()
            self.suspect[old] = now + SUSPECT_HOLD
        elif channel.startswith("-failover-abort"):
            aborted = self.failovers.get(old)
            if aborted is not None:
                aborted.attempts.pop(sentinel, None)
                if self._abandoned(aborted):
                    self._end(old, "aborted")
            self.hurry()
        elif channel == "-odown":
            recovered = self.failovers.get(old)
            if recovered is not None and self._abandoned(recovered):
                self._end(old, "aborted")
            self.hurry()
        elif channel == "+sdown":
            if old == self.master:
                self.hurry()
        elif channel == "+odown" or channel in FAILOVER_EVENTS:
            fo = self._failover(old, "event")
            if channel != "+odown":
                fo.attempts.setdefault(sentinel, now)
            if channel == "+elected-leader":
                fo.leader = sentinel
            elif channel == "+promoted-slave" and sentinel == fo.leader and event.instance:
                fo.promoted = event.instance

    def hurry(self) -> None:
        """Ask again now, and keep asking quickly until a master is verified."""
        self.fast_until = time.monotonic() + FAST_POLL_FOR
        self.wake.set()

    async def subscribe(self, addr: str) -> None:
        backoff = Backoff(min(self.settings.poll_interval, RESUBSCRIBE_MAX_BACKOFF),
                          RESUBSCRIBE_MAX_BACKOFF)  # fmt: skip
        while True:
            client = self._client(addr, sentinel=True)
            # A subscription waits for messages indefinitely; only connects time out.
            client.connection_pool.connection_kwargs["socket_timeout"] = None
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*FAILOVER_EVENTS, *OTHER_EVENTS)
                await pubsub.psubscribe(ABORT_PATTERN)
                self.log.debug("subscribed", sentinel=addr)
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") in ("message", "pmessage"):
                        self.on_event(addr, str(message.get("channel", "")),
                                      str(message.get("data", "")))  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = _reason(exc)
                self.metrics.discovery_errors.labels(addr, "subscribe_" + reason).inc()
                self.log.warning("subscription_failed", sentinel=addr, reason=reason,
                                 error=str(exc)[:200] or type(exc).__name__)  # fmt: skip
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                with contextlib.suppress(Exception):
                    await client.aclose()
            # Events may have been missed meanwhile: a round right away looks at the flags.
            self.wake.set()
            await asyncio.sleep(backoff.next())

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        subscriptions = [
            asyncio.create_task(self.subscribe(addr), name=f"subscribe {addr}")
            for addr in self.settings.sentinels
        ]
        try:
            while True:
                self.wake.clear()
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug must not end discovery; say so and go on
                    self.log.exception("discovery_round_failed")
                self.first_round.set()
                fast = time.monotonic() < self.fast_until and self.master is None
                delay = FAST_POLL if fast else self.settings.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)
        finally:
            for task in subscriptions:
                task.cancel()
            await asyncio.gather(*subscriptions, return_exceptions=True)
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await client.aclose()
