"""redis-ambassador pieces that need no server: the vote, reply parsing, settings."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podkit.ambassadors.redis_sentinel.discovery import Round, _parse_addr
from podkit.ambassadors.redis_sentinel.settings import AmbassadorSettings
from podkit.config import ConfigError, load_settings
from podkit_dev.servers import podkit_argv

addrs = st.sampled_from(["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", None])


@given(st.dictionaries(st.sampled_from([f"s{n}:26379" for n in range(7)]), addrs),
       st.one_of(st.none(), st.integers(1, 7)))  # fmt: skip
def test_candidate_is_named_by_enough_sentinels(votes, quorum):
    found = Round(votes=votes)
    candidate, count = found.candidate(quorum)
    counts = Counter(v for v in votes.values() if v)
    need = quorum or len(votes) // 2 + 1
    if candidate is None:
        # Nobody reached the bar, or two addresses tie at the top.
        top = counts.most_common(2)
        assert not top or top[0][1] < need or (len(top) == 2 and top[0][1] == top[1][1])
    else:
        assert counts[candidate] == count >= need
        assert all(n < count for a, n in counts.items() if a != candidate)


def test_majority_of_reachable_sentinels():
    assert Round(votes={"a": "m:1", "b": "m:1", "c": "m:2"}).candidate(None) == ("m:1", 2)
    assert Round(votes={"a": "m:1", "b": "m:2"}).candidate(None) == (None, 1)
    assert Round(votes={"a": "m:1"}).candidate(None) == ("m:1", 1)
    assert Round(votes={"a": "m:1", "b": None, "c": None}).candidate(None) == (None, 1)
    assert Round(votes={"a": "m:1", "b": "m:1"}).candidate(3) == (None, 2)


@given(st.recursive(
    st.none() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=8,
))  # fmt: skip
def test_any_sentinel_reply_parses_or_is_rejected_cleanly(reply):
    try:
        addr = _parse_addr(reply)
    except ValueError:
        return
    assert addr is None or addr.rsplit(":", 1)[1].isdigit()


def test_parse_addr():
    assert _parse_addr(["127.0.0.1", "6379"]) == "127.0.0.1:6379"
    assert _parse_addr(["::1", "6379"]) == "[::1]:6379"
    assert _parse_addr(None) is None
    with pytest.raises(ValueError):
        _parse_addr(["127.0.0.1", "x"])


def load(*argv: str) -> AmbassadorSettings:
    return load_settings(
        AmbassadorSettings, list(argv), {}, prog="podkit redis-ambassador",
        admin_default="127.0.0.1:9704",
    )  # fmt: skip


def test_sentinels_split_on_commas_and_repeat():
    settings = load("--sentinels", "a:1,b:2", "--sentinels", "c:3")
    assert settings.sentinels == ["a:1", "b:2", "c:3"]
    assert settings.listen == "127.0.0.1:6379"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "missing required setting --sentinels"),
        (("--sentinels", "nope"), "--sentinels"),
        (("--sentinels", "a:1,b:2", "--quorum", "3"), "--quorum=3"),
        (("--sentinels", "a:1", "--tls-key-file", __file__), "--tls-key-file"),
        (("--sentinels", "a:1", "--tls-ca-file", "/nonexistent.pem"), "does not exist"),
        (("--sentinels", "a:1", "--sentinel-password-file", "/nonexistent"), "does not exist"),
    ],
)
def test_bad_settings_name_the_setting(argv, message):
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
        load(*argv)


def test_bad_settings_exit_2_with_one_line():
    result = subprocess.run(
        [*podkit_argv(), "redis-ambassador", "--sentinels", "a:1", "--quorum", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--quorum" in result.stderr
