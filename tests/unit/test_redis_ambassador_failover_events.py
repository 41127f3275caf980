"""redis-ambassador: Sentinel's failover events and SENTINEL MASTERS replies, parsed and
followed without a server (the real failovers are in test_redis_ambassador_jepsen.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from podkit.ambassadors.redis_sentinel.discovery import (
    FAILOVER_EVENTS,
    Discovery,
    Round,
    View,
    _parse_masters,
    parse_event,
)
from podkit.ambassadors.redis_sentinel.metrics import AmbassadorMetrics
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings

OLD, NEW, OTHER = "10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"
S1, S2, S3 = "s1:26379", "s2:26379", "s3:26379"


def master_event(name: str = "mymaster", addr: str = OLD) -> str:
    host, port = addr.rsplit(":", 1)
    return f"master {name} {host} {port}"


def replica_event(replica: str, name: str = "mymaster", addr: str = OLD) -> str:
    host, port = replica.rsplit(":", 1)
    mhost, mport = addr.rsplit(":", 1)
    return f"slave {replica} {host} {port} @ {name} {mhost} {mport}"


def test_parse_events_of_each_shape():
    event = parse_event("+try-failover", master_event())
    assert event is not None and (event.master_name, event.master, event.instance) == (
        "mymaster", OLD, None)  # fmt: skip
    event = parse_event("+promoted-slave", replica_event(NEW))
    assert event is not None and (event.master, event.instance) == (OLD, NEW)
    event = parse_event("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379")
    assert event is not None and (event.master, event.instance) == (OLD, NEW)
    event = parse_event("+odown", master_event() + " #quorum 2/2")
    assert event is not None and event.master == OLD
    event = parse_event("+try-failover", "master mymaster redis-0.redis 6379")
    assert event is not None and event.master == "redis-0.redis:6379"  # announce-hostnames
    event = parse_event("+try-failover", "master mymaster ::1 6379")
    assert event is not None and event.master == "[::1]:6379"
    assert parse_event("+switch-master", "mymaster 10.0.0.1 x 10.0.0.2 6379") is None
    assert parse_event("+sdown", "sentinel 10.0.0.9:26379 10.0.0.9 26379 @ mymaster") is None
    assert parse_event("+try-failover", "") is None


@given(st.sampled_from([*FAILOVER_EVENTS, "+switch-master", "-failover-abort-x"]),
       st.text(max_size=120))  # fmt: skip
def test_any_event_text_parses_or_is_ignored(channel, data):
    event = parse_event(channel, data)
    if event is not None:
        assert event.master.rsplit(":", 1)[1].isdigit()
        assert event.instance is None or event.instance.rsplit(":", 1)[1].isdigit()


def test_parse_masters_reads_our_entry():
    entry = {"name": "mymaster", "ip": "10.0.0.1", "port": "6379",
             "flags": "master,failover_in_progress", "failover-timeout": "3000"}  # fmt: skip
    other = {"name": "other", "ip": "10.0.0.9", "port": "1", "flags": "master,o_down"}
    view = _parse_masters([other, entry], "mymaster")
    assert view == View(OLD, failing_over=True, odown=False, failover_timeout=3.0)
    flat = [x for pair in {**entry, "flags": "s_down,o_down,master"}.items() for x in pair]
    assert _parse_masters([flat], "mymaster") == View(OLD, odown=True, failover_timeout=3.0)
    assert _parse_masters([other], "mymaster") == View(None)
    assert _parse_masters([], "mymaster") == View(None)
    for bad in ("OK", [["name"]], [{"name": "mymaster", "ip": "x", "port": "p"}], [1]):
        with pytest.raises(ValueError):
            _parse_masters(bad, "mymaster")


@given(st.recursive(
    st.none() | st.integers() | st.text(max_size=12) | st.sampled_from(["name", "mymaster", "ip", "port", "flags", "6379"]),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
))  # fmt: skip
def test_any_masters_reply_parses_or_is_rejected_cleanly(reply):
    try:
        view = _parse_masters(reply, "mymaster")
    except ValueError:
        return
    assert view.addr is None or view.addr.rsplit(":", 1)[1].isdigit()


def test_round_says_who_is_failing_over():
    found = Round(votes={S1: OLD, S2: OLD}, views={
        S1: View(OLD, failing_over=True), S2: View(OLD), S3: View(NEW, odown=True)})  # fmt: skip
    assert found.busy_with(OLD) == [S1]
    assert found.busy_with(NEW) == [S3]


# --- the hold, driven by events ---------------------------------------------------------


class Followed:
    def __init__(self) -> None:
        self.changes: list[tuple[str | None, str]] = []
        settings = AmbassadorSettings(sentinels=[S1, S2, S3], admin_addr="127.0.0.1:9704")
        self.discovery = Discovery(settings, AmbassadorMetrics(CollectorRegistry()),
                                   lambda addr, reason: self.changes.append((addr, reason)))  # fmt: skip
        self.discovery._set(OLD, "sentinel_majority")

    def event(self, sentinel: str, channel: str, data: str | None = None) -> None:
        self.discovery.on_event(sentinel, channel, data or master_event())


@pytest.fixture
def followed() -> Iterator[Followed]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield Followed()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize("channel", [*FAILOVER_EVENTS, "+odown"])
def test_any_sign_of_a_failover_cuts_the_master(followed, channel):
    data = replica_event(NEW) if "slave" in channel and "state" not in channel else None
    followed.event(S2, channel, data)
    assert followed.changes[-1] == (None, "failover_started")
    assert OLD in followed.discovery.failovers


def test_events_about_other_masters_are_ignored(followed):
    followed.event(S1, "+try-failover", master_event(name="other"))
    followed.event(S1, "+try-failover", master_event(addr=OTHER))  # a stale Sentinel's view
    followed.event(S1, "+sdown", master_event())
    assert followed.discovery.master == OLD
    assert not followed.discovery.failovers


def test_abort_releases_only_when_every_attempt_aborted(followed):
    followed.event(S1, "+try-failover")
    followed.event(S2, "+try-failover")
    followed.event(S1, "-failover-abort-not-elected")
    assert OLD in followed.discovery.failovers  # S2 may still be promoting
    followed.event(S2, "-failover-abort-no-good-slave")
    assert OLD not in followed.discovery.failovers  # the rounds verify OLD again


def test_only_the_leaders_promotion_names_the_new_master(followed):
    followed.event(S1, "+try-failover")
    followed.event(S1, "+elected-leader")
    followed.event(S2, "+promoted-slave", replica_event(OTHER))
    assert followed.discovery.failovers[OLD].promoted is None
    followed.event(S1, "+promoted-slave", replica_event(NEW))
    assert followed.discovery.failovers[OLD].promoted == NEW
    followed.event(S3, "-failover-abort-not-elected")
    assert OLD in followed.discovery.failovers  # promoted: an abort elsewhere changes nothing


def test_switch_master_alone_holds_and_names_the_new_master(followed):
    followed.event(S3, "+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379")
    assert followed.changes[-1] == (None, "failover_started")
    fo = followed.discovery.failovers[OLD]
    assert fo.switched and fo.promoted == NEW
    assert followed.discovery.suspect[OLD] > 0


def test_polled_flags_start_a_hold_when_events_were_lost(followed):
    d = followed.discovery
    d._follow_polled(Round(votes={S1: OLD}, views={S1: View(OLD, failing_over=True)},
                           started=1e12))  # fmt: skip
    assert followed.changes[-1] == (None, "failover_started")
    assert list(d.failovers[OLD].attempts) == [S1]
    # A later round finds S1 no longer failing over and still naming OLD: it gave up.
    d._follow_polled(Round(votes={S1: OLD}, views={S1: View(OLD)}, started=2e12))
    assert OLD not in d.failovers


def test_a_lost_abort_cannot_hold_forever(followed):
    d = followed.discovery
    followed.event(S1, "+try-failover")
    d.failovers[OLD].deadline = 0.0  # nothing heard for the failover-timeout
    d._follow_polled(Round(votes={S2: OLD}, views={S2: View(OLD)}, started=1e12))
    assert OLD not in d.failovers
