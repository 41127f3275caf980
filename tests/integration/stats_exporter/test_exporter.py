"""`podkit stats-exporter` against real nginx, Apache, HAProxy, Redis and the Go exporter."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import pytest

from podkit_dev.servers import (
    HOST,
    NginxServer,
    Process,
    TempDir,
    http_get,
    podkit_argv,
    port_open,
    wait_for,
)
from tests.servers import require_binary

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Exposition:
    """The parsed text of one scrape: samples by (name, labels), and each family's TYPE/HELP."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: Series = {}
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line.startswith("# HELP "):
                _, _, name, *help_text = line.split(" ", 3)
                self.helps[name] = help_text[0] if help_text else ""
            elif line and not line.startswith("#"):
                match = _SAMPLE.match(line)
                assert match, f"not a sample line: {line!r}"
                labels = frozenset(_LABEL.findall(match.group(2) or ""))
                self.samples[(match.group(1), labels)] = float(match.group(3))

    def value(self, name: str, **labels: str) -> float:
        found = [
            v for (n, ls), v in self.samples.items() if n == name and set(labels.items()) <= ls
        ]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples in\n{self.text}"
        return found[0]

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(port: int, path: str = "/metrics") -> Exposition:
    status, body = http_get(f"http://{HOST}:{port}{path}", timeout=30)
    assert status == 200, body
    return Exposition(body.decode())


def promtool_problems(text: str) -> str:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return (result.stdout + result.stderr).strip() if result.returncode or result.stdout else ""


# --- nginx ------------------------------------------------------------------------------


def test_nginx_counters_move_and_strict_names_pass_promtool(nginx_server, exporter) -> None:  # type: ignore[no-untyped-def]
    helper, port = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status")
    before = scrape(port)
    assert before.value("nginx_up") == 1
    for _ in range(5):
        assert http_get(f"{nginx_server.url}/")[0] == 200
    after = scrape(port)
    # Five page requests plus the one stub_status fetch this scrape made itself.
    assert after.value("nginx_http_requests_total") - before.value("nginx_http_requests_total") == 6
    assert (
        after.value("nginx_connections_accepted_total")
        >= before.value("nginx_connections_accepted_total") + 5
    )
    assert after.types["nginx_connections_handled_total"] == "counter"
    assert after.types["nginx_connections_active"] == "gauge"
    assert promtool_problems(after.text) == ""
    status, landing = http_get(f"http://{HOST}:{port}/")
    assert status == 200 and b'href="/metrics"' in landing
    assert http_get(f"http://{HOST}:{port}/nope")[0] == 404
    # The exporter's own health stays on the admin port.
    assert "stats_exporter_scrape_duration_seconds" in helper.metrics()


def test_several_targets_unix_socket_and_const_labels(exporter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sock = tmp_path / "nginx.sock"
    nginx = NginxServer(
        extra_http=f"server {{ listen unix:{sock}; location = /stub_status {{ stub_status; }} }}"
    )
    try:
        nginx.start()
        unix_target = f"unix:{sock}:/stub_status"
        http_target = f"{nginx.url}/stub_status"
        _, port = exporter(
            "--nginx-scrape-uri", http_target, "--nginx-scrape-uri", unix_target,
            "--const-labels", "pod=web-0,team=edge",
        )  # fmt: skip
        result = scrape(port)
        for target in (http_target, unix_target):
            assert result.value("nginx_up", addr=target, pod="web-0", team="edge") == 1
            assert result.value("nginx_http_requests_total", addr=target) >= 1
    finally:
        nginx.cleanup()


def test_compat_mode_matches_the_go_exporter(nginx_server, exporter, free_port) -> None:  # type: ignore[no-untyped-def]
    """Same nginx, scraped alternately: ours, Go, ours. Each scrape is one stub_status
    request, so Go's request count must lie exactly between our two, one apart, and the
    connection gauges (both exporters keep one keep-alive connection open) must agree."""
    binary = require_binary("prometheus-nginx-exporter")
    uri = f"{nginx_server.url}/stub_status"
    go_port = free_port()
    go_dir = TempDir("go-exporter")
    go = Process(
        [binary, f"-nginx.scrape-uri={uri}", f"-web.listen-address={HOST}:{go_port}",
         "-prometheus.const-labels=pod=web-0"],
        go_dir.path / "go.log",
    ).start()  # fmt: skip
    try:
        _, port = exporter("--nginx-scrape-uri", uri, "--naming", "compat",
                           "--const-labels", "pod=web-0")  # fmt: skip
        wait_for(lambda: port_open(go_port), what="prometheus-nginx-exporter")
        scrape(port), scrape(go_port, "/metrics")  # both open their keep-alive connection
        ours_1, go_result, ours_2 = scrape(port), scrape(go_port), scrape(port)
    finally:
        go.stop()
        go_dir.cleanup()
    go_nginx = {k: v for k, v in go_result.samples.items() if k[0].startswith("nginx_")}
    ours = {k: v for k, v in ours_1.samples.items()}
    assert set(ours) == set(go_nginx)  # names and label sets
    for name in {n for n, _ in go_nginx}:
        assert ours_1.types[name] == go_result.types[name], name
        assert ours_1.helps[name] == go_result.helps[name], name
    requests = "nginx_http_requests_total"
    assert ours_1.value(requests) + 1 == go_result.value(requests) == ours_2.value(requests) - 1
    for name in ("nginx_connections_accepted", "nginx_connections_handled"):
        assert ours_1.value(name) <= go_result.value(name) <= ours_2.value(name)
    for name in ("active", "reading", "writing", "waiting"):
        metric = f"nginx_connections_{name}"
        assert go_result.value(metric) == ours_1.value(metric) == ours_2.value(metric), metric
    assert go_result.value("nginx_up") == ours_1.value("nginx_up") == 1
    # Compat names are what the Go exporter has; promtool's only complaint is _total.
    problems = promtool_problems(ours_1.text)
    assert all("_total" in line for line in problems.splitlines()), problems


# --- the other sources -------------------------------------------------------------------


def test_haproxy_stats_page_and_socket(haproxy_factory, nginx_server, exporter, free_port) -> None:  # type: ignore[no-untyped-def]
    front = free_port()
    haproxy = haproxy_factory(
        f"frontend web\n  bind {HOST}:{front}\n  default_backend app\n"
        f"backend app\n  server nginx1 {HOST}:{nginx_server.port}\n"
    )
    http_target = f"http://{HOST}:{haproxy.stats_port}/stats;csv"
    socket_target = f"unix:{haproxy.stats_socket}"
    _, port = exporter("--haproxy-scrape-uri", http_target, "--haproxy-scrape-uri", socket_target)
    before = scrape(port)
    for _ in range(3):
        assert http_get(f"http://{HOST}:{front}/")[0] == 200
    after = scrape(port)
    for target in (http_target, socket_target):
        assert after.value("haproxy_up", addr=target) == 1
        counted = "haproxy_frontend_http_requests_total"
        grown = after.value(counted, addr=target, proxy="web") - before.value(
            counted, addr=target, proxy="web"
        )
        assert grown == 3
        assert after.value("haproxy_server_sessions_total", addr=target, server="nginx1") == 3
        assert after.value("haproxy_server_status_up", addr=target, server="nginx1") == 1
    assert promtool_problems(after.text) == ""


def test_apache_mod_status(apache_server, exporter) -> None:  # type: ignore[no-untyped-def]
    _, port = exporter("--apache-scrape-uri", f"{apache_server.url}/server-status?auto")
    before = scrape(port)
    assert before.value("apache_up") == 1
    for _ in range(4):
        assert http_get(f"{apache_server.url}/index.html")[0] == 200
    after = scrape(port)
    # Four pages and this scrape's own server-status request.
    assert after.value("apache_accesses_total") - before.value("apache_accesses_total") == 5
    assert after.value("apache_workers", state="busy") >= 1
    assert after.value("apache_scoreboard", state="reply") >= 1
    assert promtool_problems(after.text) == ""


def test_redis_info_and_password(redis_server, exporter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cret-Passw0rd"
    redis = redis_server
    redis.command("CONFIG", "SET", "requirepass", secret)
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("nope\n")
    helper, port = exporter("--redis-addr", redis.url, "--redis-password-file", str(password_file))
    result = scrape(port)
    assert result.value("redis_up") == 1
    assert result.value("redis_instance_info", role="master") == 1
    assert result.value("redis_connections_received_total") >= 1
    assert promtool_problems(result.text) == ""
    wrong, wrong_port = exporter(
        "--redis-addr", redis.url, "--redis-password-file", str(wrong_file)
    )
    assert scrape(wrong_port).value("redis_up") == 0
    assert "authentication failed" in wrong.events("target_down")[0]["error"]
    for process in (helper, wrong):
        assert secret not in process.log_text()
    assert secret not in result.text


def test_redis_keyspace(redis_server, exporter) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        redis_server.command("SET", f"k{i}", "v")
    redis_server.command("EXPIRE", "k0", "600")
    _, port = exporter("--redis-addr", redis_server.url)
    result = scrape(port)
    assert result.value("redis_db_keys", db="db0") == 5
    assert result.value("redis_db_keys_expiring", db="db0") == 1


# --- bad input ---------------------------------------------------------------------------


def test_bad_answers_give_up_zero_and_one_log_line_each(standin, nginx_server, exporter) -> None:  # type: ignore[no-untyped-def]
    expected = {
        standin.url("/html"): "HTML page",
        standin.url("/status500"): "HTTP status 500",
        standin.url("/nonnumeric"): "not a number",
        standin.url("/huge-declared"): "max-body-size",
        standin.url("/huge-chunked"): "max-body-size",
        standin.url("/slow"): "within --timeout",
        standin.url("/missing"): "HTTP status 404",
        standin.truncated_url: "truncated",
        "unix:/nonexistent/nginx.sock:/stub_status": "does not exist",
        f"http://{HOST}:1/stub_status": "cannot connect",
    }
    good = f"{nginx_server.url}/stub_status"
    flags = [arg for target in [*expected, good] for arg in ("--nginx-scrape-uri", target)]
    helper, port = exporter(*flags, "--timeout", "2s", "--max-body-size", "1MiB")
    for _ in range(2):
        result = scrape(port)
        assert result.value("nginx_up", addr=good) == 1
        for target in expected:
            assert result.value("nginx_up", addr=target) == 0, target
    down = {e["target"]: e["error"] for e in helper.events("target_down")}
    assert len(helper.events("target_down")) == len(expected)  # once, not once per scrape
    for target, message in expected.items():
        assert message in down[target], (target, down[target])
    assert helper.get("/livez")[0] == 200
    assert helper.process.alive()


def test_slow_target_never_blocks_livez(standin, exporter) -> None:  # type: ignore[no-untyped-def]
    helper, port = exporter("--nginx-scrape-uri", standin.url("/slow"), "--timeout", "5s")
    answers: list[Exposition] = []
    scraper = threading.Thread(target=lambda: answers.append(scrape(port)))
    scraper.start()
    wait_for(lambda: standin.hits.get("/slow"), what="the scrape to reach the slow target")
    assert helper.get("/livez")[0] == 200
    assert scraper.is_alive()  # /livez answered while the scrape was still waiting
    scraper.join(30)
    assert answers and answers[0].value("nginx_up") == 0


def test_state_changes_are_logged_once(standin, exporter) -> None:  # type: ignore[no-untyped-def]
    helper, port = exporter("--nginx-scrape-uri", standin.url("/flap"))
    for _ in range(3):
        assert scrape(port).value("nginx_up") == 0
    standin.flap_ok = True
    for _ in range(3):
        assert scrape(port).value("nginx_up") == 1
    standin.flap_ok = False
    assert scrape(port).value("nginx_up") == 0
    assert len(helper.events("target_down")) == 2
    assert len(helper.events("target_up")) == 1


# --- generic source, plugins, configuration -----------------------------------------------


def test_generic_yaml_source_and_user_plugins(standin, exporter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plugin_file = Path(__file__).parents[3] / "adapters/prometheus/examples/json_source.py"
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "sources:\n"
        "  - type: generic\n    name: legacy\n"
        f"    targets: ['{standin.url('/kv')}']\n"
        "    format: keyvalue\n    labels: {tier: batch}\n    metrics:\n"
        "      - {key: queue, name: queue_depth, help: jobs waiting}\n"
        "      - {key: workers, name: workers}\n"
        f"  - type: {plugin_file}:JsonSource\n    name: fromfile\n"
        f"    targets: ['{standin.url('/json')}']\n"
        "  - type: podkit.adapters.prometheus.examples.json_source:JsonSource\n    name: frommodule\n"
        f"    targets: ['{standin.url('/json')}', '{standin.url('/html')}']\n"
        "    fields: [sessions]\n"
    )
    _, port = exporter("--config", str(config))
    result = scrape(port)
    assert result.value("legacy_queue_depth", tier="batch") == 17
    assert result.value("legacy_workers") == 4
    assert result.value("legacy_up") == 1
    assert result.value("fromfile_sessions") == 3
    assert result.value("fromfile_load") == 0.5
    assert result.value("frommodule_up", addr=standin.url("/json")) == 1
    assert result.value("frommodule_up", addr=standin.url("/html")) == 0
    assert "frommodule_load" not in result.names()
    assert "nginx_up" not in result.names()  # the :8080 default only applies with no source
    assert promtool_problems(result.text) == ""


def test_installed_plugin_package_is_found_by_entry_point_name(
    standin, run_helper, free_port, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A package that declares `[project.entry-points."podkit.sources"] json = ...` (here an
    installed-package layout on PYTHONPATH: the module plus its .dist-info) is `type: json`."""
    example = Path(__file__).parents[3] / "adapters/prometheus/examples/json_source.py"
    package = tmp_path / "site" / "acme_sources"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(example.read_text())
    dist_info = tmp_path / "site" / "acme_sources-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-sources\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[podkit.sources]\njson = acme_sources:JsonSource\n"
    )
    config = tmp_path / "exporter.yaml"
    config.write_text(f"sources:\n  - {{type: json, targets: ['{standin.url('/json')}']}}\n")
    port = free_port()
    run_helper(
        "stats-exporter", "--web-listen-address", f"{HOST}:{port}", "--config", str(config),
        env={"PYTHONPATH": str(tmp_path / "site")},
    )  # fmt: skip
    result = scrape(port)
    assert result.value("json_up") == 1
    assert result.value("json_sessions") == 3


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["--nginx-scrape-uri", "ftp://x/status"], "", "expected http://"),
        (["--const-labels", "pod"], "", "not NAME=VALUE"),
        (["--web-telemetry-path", "/"], "", "not /, the landing page"),
        (["--ssl-ca-cert", "/nonexistent/ca.pem"], "", "does not exist"),
        (["--ssl-ca-cert", "/etc/hostname"], "", "not a PEM CA bundle"),
        ([], "sources:\n  - {type: nosuch, targets: [x]}\n", "available: apache, generic"),
        ([], "sources:\n  - {type: generic, targets: ['http://x/']}\n", "needs a name"),
        ([], "sources:\n  - {type: nginx, targets: ['http://x/'], colour: red}\n",
         "unknown option(s) colour"),
        (["--nginx-scrape-uri", "http://y/"],
         "sources:\n  - {type: nginx, targets: ['http://x/']}\n", "already named 'nginx'"),
        (["--redis-addr", "http://x/"], "", "expected redis://"),
    ],
)  # fmt: skip
def test_bad_configuration_exits_2_with_one_line(args, config, message, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if config:
        path = tmp_path / "c.yaml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    result = subprocess.run(
        [*podkit_argv(), "stats-exporter", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_listener_answers_odd_requests_without_dying(nginx_server, exporter) -> None:  # type: ignore[no-untyped-def]
    import socket

    helper, port = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status")

    def exchange(raw: bytes) -> bytes:
        with socket.create_connection((HOST, port), timeout=10) as conn:
            conn.sendall(raw)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert exchange(b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert exchange(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert exchange(b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 20000).startswith(b"HTTP/1.1 431")
    # Two pipelined scrapes on one keep-alive connection, then a close.
    two = exchange(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.count(b"nginx_up 1") == 2
    head = exchange(b"HEAD / HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"<html>" not in head
    assert scrape(port).value("nginx_up") == 1
    assert helper.process.alive()


def test_https_target_with_ca_and_without_verification(exporter, free_port, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls_port = free_port()
    nginx = NginxServer(
        extra_http=f"server {{ listen {HOST}:{tls_port} ssl; ssl_certificate {cert}; "
        f"ssl_certificate_key {key}; location = /stub_status {{ stub_status; }} }}"
    )
    try:
        nginx.start()
        uri = f"https://{HOST}:{tls_port}/stub_status"
        _, trusted = exporter("--nginx-scrape-uri", uri, "--ssl-ca-cert", str(cert))
        assert scrape(trusted).value("nginx_up") == 1
        untrusted_helper, untrusted = exporter("--nginx-scrape-uri", uri)
        assert scrape(untrusted).value("nginx_up") == 0
        assert "certificate" in untrusted_helper.events("target_down")[0]["error"].lower()
        _, unverified = exporter("--nginx-scrape-uri", uri, "--no-ssl-verify")
        assert scrape(unverified).value("nginx_up") == 1
    finally:
        nginx.cleanup()


def test_sigterm_drains_and_exits_0(nginx_server, exporter) -> None:  # type: ignore[no-untyped-def]
    import signal

    helper, port = exporter("--nginx-scrape-uri", f"{nginx_server.url}/stub_status")
    assert scrape(port).value("nginx_up") == 1
    assert helper.stop(signal.SIGTERM) == 0
    assert not port_open(port)


# --- drop-in: nginx-prometheus-exporter's own flags and env ---------------------------------


def test_the_seed_pods_args_line_loads_as_is() -> None:
    """The classic pod's exact `args:` for nginx/nginx-prometheus-exporter."""
    from podkit.adapters.prometheus.settings import ExporterSettings
    from podkit.config import load_settings

    settings = load_settings(
        ExporterSettings,
        ["-nginx.scrape-uri=http://localhost:8080/nginx_status"],
        {},
        prog="podkit stats-exporter",
        admin_default="0.0.0.0:9706",
    )
    assert settings.nginx_scrape_uri == ["http://localhost:8080/nginx_status"]
    assert settings.web_listen_address == ":9113"


def test_go_exporter_spellings_scrape_a_real_nginx(nginx_server, run_helper, free_port) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    helper = run_helper(
        "stats-exporter",
        f"-nginx.scrape-uri={nginx_server.url}/stub_status",
        "-web.listen-address",
        f"{HOST}:{port}",
        "--web.telemetry-path=/prom",
        "-nginx.timeout=2s",
        env={"CONST_LABELS": "pod=seed"},
    )
    status, body = http_get(f"http://{HOST}:{port}/prom")
    assert status == 200
    assert 'nginx_up{pod="seed"} 1' in body.decode()
    assert not [e for e in helper.log_events() if e.get("event") == "deprecated_setting"]
