"""Finding the master: ask every Sentinel, take what a majority says, check it with ROLE.

One round asks every Sentinel `SENTINEL GET-MASTER-ADDR-BY-NAME` at once. An address is
a candidate when at least `need` of the Sentinels that answered name it (`need` is a
majority of the reachable Sentinels, or `--quorum`); the candidate becomes the master
only if it answers `ROLE` with `master`. Rounds run every `--poll-interval`, and at once
(then every FAST_POLL until settled) when a Sentinel publishes `+switch-master`.

A `+switch-master` away from the current master takes that master out of service at
once, even before the other Sentinels agree: a node that one Sentinel has demoted must get
no more writes. The new address is adopted when the majority and ROLE say so.

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
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from podkit.ambassadors.redis_sentinel.metrics import AmbassadorMetrics
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings
from podkit.config import split_host_port
from podkit.logs import get_logger

FAST_POLL = 0.02
FAST_POLL_FOR = 10.0
# After a +switch-master away from a master, it is not taken back for this long even if
# the majority still names it: the announcing Sentinel's peers are catching up.
SUSPECT_HOLD = 5.0
RESUBSCRIBE_MAX_BACKOFF = 5.0


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


@dataclass
class Round:
    """What one round of questions found."""

    votes: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

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


def _parse_addr(reply: Any) -> str | None:
    if reply is None:
        return None
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise ValueError(f"unexpected reply {reply!r:.80}")
    host, port = reply
    if not str(port).isdigit():
        raise ValueError(f"unexpected port {port!r:.40}")
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
            **options,
        )

    # --- one round -------------------------------------------------------------------------

    async def _ask(self, addr: str, client: Redis) -> str | None:
        query = ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.settings.master_name)
        reply = await asyncio.wait_for(
            client.execute_command(*query), self.settings.sentinel_timeout * 2
        )
        return _parse_addr(reply)

    async def ask_all(self) -> Round:
        result = Round()
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
                result.votes[addr] = reply
                if self.sentinel_errors.pop(addr, None) is not None:
                    self.log.info("sentinel_recovered", sentinel=addr)
        return result

    async def role(self, addr: str) -> str:
        """The node's ROLE ("master", "slave", ...) or a failure reason prefixed with "!"."""
        client = self._client(addr, sentinel=False)
        try:
            reply = await asyncio.wait_for(
                client.execute_command("ROLE"), self.settings.sentinel_timeout * 2
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
        if self.suspect.get(candidate, 0.0) > now:
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
        self.last_rejected = None
        self.suspect.pop(candidate, None)
        self._set(candidate, "sentinel_majority")

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

    # --- +switch-master ------------------------------------------------------------------

    def announced(self, sentinel: str, data: str) -> None:
        parts = data.split()
        if len(parts) != 5 or parts[0] != self.settings.master_name:
            return
        _, old_host, old_port, new_host, new_port = parts
        old = f"{old_host}:{old_port}"
        new = f"{new_host}:{new_port}"
        self.metrics.switch_announcements.labels(sentinel).inc()
        self.log.info("switch_master_announced", sentinel=sentinel, old=old, new=new)
        if old != new:
            self.suspect[old] = time.monotonic() + SUSPECT_HOLD
            if self.master == old:
                self._set(None, "switch_announced")
        self.hurry()

    def hurry(self) -> None:
        """Ask again now, and keep asking quickly until a master is verified."""
        self.fast_until = time.monotonic() + FAST_POLL_FOR
        self.wake.set()

    async def subscribe(self, addr: str) -> None:
        backoff = self.settings.poll_interval
        while True:
            client = self._client(addr, sentinel=True)
            # A subscription waits for messages indefinitely; only connects time out.
            client.connection_pool.connection_kwargs["socket_timeout"] = None
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe("+switch-master")
                self.log.debug("subscribed", sentinel=addr)
                backoff = self.settings.poll_interval
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.announced(addr, str(message.get("data", "")))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = _reason(exc)
                self.metrics.discovery_errors.labels(addr, "subscribe_" + reason).inc()
                self.log.warning("subscription_failed", sentinel=addr, reason=reason,
                                 error=str(exc)[:200] or type(exc).__name__)  # fmt: skip
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESUBSCRIBE_MAX_BACKOFF)

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
