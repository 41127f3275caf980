"""Parsers and collectors of the stats-exporter sources, fed real-looking and bad input."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podkit.adapters.prometheus.api import Source, SourceContext, SourceError, SourceSpec
from podkit.adapters.prometheus.fetch import HttpClient, split_unix_uri
from podkit.adapters.prometheus.model import Family, merge, render
from podkit.adapters.prometheus.sources.apache import ApacheSource, parse_server_status
from podkit.adapters.prometheus.sources.generic import GenericSource
from podkit.adapters.prometheus.sources.haproxy import HAProxySource, parse_csv
from podkit.adapters.prometheus.sources.nginx import NginxSource, parse_stub_status
from podkit.urls import hide_userinfo

NGINX = (
    b"Active connections: 2 \nserver accepts handled requests\n 3 4 5 \n"
    b"Reading: 0 Writing: 1 Waiting: 1 \n"
)
TENGINE = (
    b"Active connections: 1\nserver accepts handled requests request_time\n"
    b" 10 10 20 300\nReading: 0 Writing: 1 Waiting: 0\n"
)
APACHE = b"""127.0.0.1
ServerVersion: Apache/2.4.71 (Debian)
Total Accesses: 12
Total kBytes: 3
Uptime: 40
CPULoad: .25
BusyWorkers: 1
IdleWorkers: 7
Processes: 1
ConnsTotal: 2
ConnsAsyncWriting: 0
ConnsAsyncKeepAlive: 1
ConnsAsyncClosing: 0
Scoreboard: _W_K....
"""
HAPROXY = (
    b"# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
    b"wretr,wredis,status,weight,act,bck,chkfail,type,hrsp_2xx,req_tot\n"
    b"fe,FRONTEND,,,1,2,100,7,100,200,0,0,1,,,,,OPEN,,,,,0,6,7\n"
    b"be,s1,0,0,0,1,,3,10,20,,0,,0,0,0,0,UP,1,1,0,0,2,3,\n"
    b"be,s2,0,0,0,0,,0,0,0,,0,,2,0,0,0,DOWN,1,1,0,4,2,0,\n"
    b"be,BACKEND,0,0,0,1,10,3,10,20,0,0,,2,0,0,0,UP,1,1,0,,1,3,\n"
)


def ctx(naming: str = "strict") -> SourceContext:
    return SourceContext(
        naming=naming,  # type: ignore[arg-type]
        timeout=1.0,
        max_body_size=1 << 20,
        http=HttpClient(1 << 20),
    )


def by_name(families: list[Family]) -> dict[str, Family]:
    return {f.name: f for f in families}


def test_stub_status_plain_and_tengine() -> None:
    status = parse_stub_status(NGINX)
    assert (status.active, status.accepts, status.handled, status.requests) == (2, 3, 4, 5)
    assert (status.reading, status.writing, status.waiting) == (0, 1, 1)
    tengine = parse_stub_status(TENGINE)
    assert (tengine.accepts, tengine.handled, tengine.requests) == (10, 10, 20)


def test_stub_status_tolerates_spaces_and_crlf() -> None:
    body = NGINX.replace(b"\n", b"\r\n").replace(b": ", b":    ").replace(b" 3 4 5", b"  3   4  5")
    assert parse_stub_status(body).handled == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML page"),
        (b"", "empty body"),
        (NGINX[:30], "not an nginx stub_status page"),
        (NGINX.replace(b" 3 4 5", b" 3 x 5"), "'handled' is not a number"),
        (NGINX.replace(b"Active connections: 2", b"Active connections: -2"), "not a number"),
        (NGINX.replace(b" 3 4 5", b" 3 4"), "2 server counters"),
    ],
)
def test_stub_status_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_stub_status(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_stub_status_never_raises_anything_but_source_error(body: bytes) -> None:
    with contextlib.suppress(SourceError):
        parse_stub_status(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_every_parser_turns_garbage_into_source_error(body: bytes) -> None:
    sources = [
        ApacheSource(SourceSpec(type="apache", targets=["http://x/"]), ctx()),
        HAProxySource(SourceSpec(type="haproxy", targets=["http://x/"]), ctx()),
        GenericSource(
            SourceSpec(
                type="generic", name="g", targets=["http://x/"], format="keyvalue",
                metrics=[{"name": "a", "key": "a"}],
            ),
            ctx(),
        ),
        GenericSource(
            SourceSpec(
                type="generic", name="g", targets=["http://x/"], format="regex",
                metrics=[{"name": "a", "regex": r"(?P<l>\w+)=(?P<value>\S+)"}],
            ),
            ctx(),
        ),
    ]  # fmt: skip
    for source in sources:
        with contextlib.suppress(SourceError):
            list(source.collect("http://x/", body))


def test_nginx_names_compat_and_strict() -> None:
    spec = SourceSpec(type="nginx", targets=["http://127.0.0.1/stub_status"])
    compat = by_name(list(NginxSource(spec, ctx("compat")).collect("t", NGINX)))
    strict = by_name(list(NginxSource(spec, ctx("strict")).collect("t", NGINX)))
    assert "nginx_connections_accepted" in compat
    assert compat["nginx_connections_accepted"].type == "counter"
    assert "nginx_connections_accepted_total" in strict
    assert "nginx_connections_handled_total" in strict
    assert set(compat) - set(strict) == {"nginx_connections_accepted", "nginx_connections_handled"}


def test_apache_status() -> None:
    fields = parse_server_status(APACHE)
    assert fields["BusyWorkers"] == "1"
    source = ApacheSource(SourceSpec(type="apache", targets=["http://x/"]), ctx())
    families = by_name(list(source.collect("t", APACHE)))
    assert families["apache_accesses_total"].samples == [({}, 12.0)]
    assert families["apache_sent_bytes_total"].samples == [({}, 3072.0)]
    board = dict((labels["state"], v) for labels, v in families["apache_scoreboard"].samples)
    assert board["idle"] == 2 and board["reply"] == 1 and board["open_slot"] == 4
    with pytest.raises(SourceError, match="'BusyWorkers' is not a number"):
        list(source.collect("t", APACHE.replace(b"BusyWorkers: 1", b"BusyWorkers: one")))
    with pytest.raises(SourceError, match="unknown scoreboard character"):
        list(source.collect("t", APACHE.replace(b"_W_K", b"_W?K")))
    with pytest.raises(SourceError, match="missing \\?auto"):
        parse_server_status(b"Total Accesses: 1\n")


def test_haproxy_csv() -> None:
    rows = parse_csv(HAPROXY)
    assert [r["svname"] for r in rows] == ["FRONTEND", "s1", "s2", "BACKEND"]
    source = HAProxySource(SourceSpec(type="haproxy", targets=["unix:/run/h.sock"]), ctx())
    families = by_name(list(source.collect("t", HAPROXY)))
    up = {labels["server"]: v for labels, v in families["haproxy_server_status_up"].samples}
    assert up == {"s1": 1.0, "s2": 0.0}
    assert families["haproxy_frontend_sessions_total"].samples == [({"proxy": "fe"}, 7.0)]
    with pytest.raises(SourceError, match="not a number"):
        list(source.collect("t", HAPROXY.replace(b",7,100,", b",seven,100,")))
    with pytest.raises(SourceError, match="not HAProxy CSV"):
        parse_csv(b"pxname,svname\n")


def test_generic_regex_and_keyvalue() -> None:
    regex = GenericSource(
        SourceSpec(
            type="generic",
            name="app",
            targets=["http://x/"],
            format="regex",
            metrics=[
                {
                    "name": "requests_total",
                    "type": "counter",
                    "regex": r"^(?P<vhost>\S+) served (?P<value>\d+)$",
                }
            ],
        ),
        ctx(),
    )
    families = list(regex.collect("t", b"a.example served 3\nb.example served 4\n"))
    assert families[0].samples == [({"vhost": "a.example"}, 3.0), ({"vhost": "b.example"}, 4.0)]
    with pytest.raises(SourceError, match="none of the configured metrics"):
        regex.collect("t", b"nothing here\n")
    keyvalue = GenericSource(
        SourceSpec(
            type="generic",
            name="app",
            targets=["http://x/"],
            format="keyvalue",
            separator="=",
            metrics=[{"name": "queue_depth", "key": "queue", "help": "jobs waiting"}],
        ),
        ctx(),
    )
    assert next(iter(keyvalue.collect("t", b"queue = 17\nother=x\n"))).samples == [({}, 17.0)]
    with pytest.raises(SourceError, match="not a number"):
        keyvalue.collect("t", b"queue=lots\n")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "regex", "metrics": [{"name": "x", "regex": "("}]}, "bad regex"),
        ({"format": "regex", "metrics": [{"name": "x", "regex": "(\\d+)"}]}, "value"),
        ({"format": "keyvalue", "metrics": [{"name": "hits", "type": "counter", "key": "h"}]},
         "_total"),
        ({"format": "keyvalue", "metrics": [{"name": "x"}]}, "needs key"),
        ({"format": "csv", "metrics": [{"name": "x", "key": "x"}]}, "format"),
    ],
)  # fmt: skip
def test_generic_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenericSource(SourceSpec(type="generic", name="a", targets=["http://x/"], **options), ctx())


def test_render_escapes_and_merges() -> None:
    a = Family("x_up", "gauge", "help with \\ and\nnewline").add(1, {"addr": 'a"b\\c\nd'})
    b = Family("x_up", "gauge", "ignored").add(0, {"addr": "e"})
    text = render(merge([a, b])).decode()
    assert text.splitlines() == [
        "# HELP x_up help with \\\\ and\\nnewline",
        "# TYPE x_up gauge",
        'x_up{addr="a\\"b\\\\c\\nd"} 1',
        'x_up{addr="e"} 0',
    ]


def test_unix_uri_and_userinfo() -> None:
    assert split_unix_uri("unix:/run/nginx.sock:/stub_status") == (
        "/run/nginx.sock",
        "/stub_status",
    )
    assert split_unix_uri("unix:/run/nginx.sock") == ("/run/nginx.sock", "/")
    assert hide_userinfo("redis://:secret@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_source_plugin_missing_a_method_is_a_config_error_naming_it() -> None:
    from podkit.adapters.prometheus.loader import build_source, check_context

    class HalfSource(Source):  # fetch, but no collect
        async def fetch(self, target: str) -> Any:
            return None

    import sys
    import types

    module = types.ModuleType("half_source_plugin")
    module.HalfSource = HalfSource  # type: ignore[attr-defined]
    sys.modules["half_source_plugin"] = module
    try:
        spec = SourceSpec(type="half_source_plugin:HalfSource", targets=["http://x/"])
        with pytest.raises(ValueError, match="does not implement: collect"):
            build_source(spec, check_context())
    finally:
        del sys.modules["half_source_plugin"]
