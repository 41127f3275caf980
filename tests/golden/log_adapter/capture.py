"""Capture real server logs as golden inputs (run once by hand; the output is committed).

    .venv/bin/python tests/golden/log_adapter/capture.py [NAME ...]

Starts each server with podkit_dev.servers on a free loopback port, makes it log the lines
users see (start, a client error, an upstream failure, shutdown) and writes what it logged to
`tests/golden/log_adapter/NAME.in`. SOURCES.md says which command and version made each file;
logs read from this machine's own servers (/var/log/...) are copied there by hand, the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from podkit_dev.servers import (  # noqa: E402
    HOST,
    ApacheServer,
    HAProxyServer,
    NginxServer,
    PostgresServer,
    RedisServer,
    free_port,
    http_get,
    wait_for,
)

HERE = Path(__file__).resolve().parent


def _http(url: str) -> None:
    with contextlib.suppress(OSError):
        http_get(url, timeout=5)


def postgresql() -> bytes:
    server = PostgresServer().start()
    try:
        import asyncpg

        async def work() -> None:
            conn = await asyncpg.connect(server.dsn)
            for sql in (
                "SELECT 1/0",
                "SELECT * FROM missing_table",
                "DO $$BEGIN RAISE WARNING 'disk almost full: %', 91; END$$",
                "CHECKPOINT",
            ):
                with contextlib.suppress(asyncpg.PostgresError):
                    await conn.execute(sql)
            await conn.close()
            with contextlib.suppress(asyncpg.PostgresError):
                await asyncpg.connect(server.dsn.replace("/postgres", "/nosuchdb"))

        asyncio.run(work())
    finally:
        assert server.process is not None
        server.process.stop(signal.SIGINT)
        text = (server.dir.path / "postgres.log").read_bytes()
        server.dir.cleanup()
    return text


def redis() -> bytes:
    server = RedisServer(args=["--loglevel", "verbose"]).start()
    try:
        server.command("CONFIG", "SET", "maxmemory", "1")
        server.command("DEBUG", "SLEEP", "0")
        server.command("SET", "k", "v")
        server.command("CONFIG", "SET", "maxmemory", "0")
        server.command("BGSAVE")
        wait_for(lambda: b"Background saving terminated" in _read(server.dir.path / "redis.log"),
                 what="bgsave", timeout=15)  # fmt: skip
    finally:
        server.stop(signal.SIGTERM)
        text = (server.dir.path / "redis.log").read_bytes()
        server.dir.cleanup()
    return text


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def nginx_error() -> bytes:
    closed = free_port()
    extra = (
        f"server {{ listen {HOST}:{{port}}; server_name example.test; "
        f"location /api/ {{ proxy_pass http://{HOST}:{closed}; }} "
        "location /missing/ { root /nonexistent; } }"
    )
    port = free_port()
    server = NginxServer(extra_http=extra.replace("{port}", str(port)))
    # info level: the notices of start and shutdown too, as `error_log ... info` shows them.
    server.config.write_text(server.config.read_text().replace("error.log;", "error.log info;", 1))
    server.start()
    try:
        _http(f"http://{HOST}:{port}/api/users?id=7")
        _http(f"http://{HOST}:{port}/missing/page.html")
        with socket.create_connection((HOST, port)) as sock:  # a request nginx rejects
            sock.sendall(b"GET / HTTP/1.1\r\nHost: \r\n\r\n")
            sock.recv(4096)
    finally:
        assert server.process is not None
        server.process.stop(signal.SIGQUIT)
        text = (server.dir.path / "error.log").read_bytes()
        server.dir.cleanup()
    return text


def apache_error() -> bytes:
    server = ApacheServer()
    server.config.write_text(
        server.config.read_text()
        + "LogLevel info\n<Location /denied>\n  Require all denied\n</Location>\n"
    )
    server.start()
    try:
        _http(f"{server.url}/denied/secret.txt")
        _http(f"{server.url}/%2e%2e/%2e%2e/etc/passwd")
    finally:
        assert server.process is not None
        server.process.stop(signal.SIGTERM)
        text = (server.dir.path / "error.log").read_bytes()
        server.dir.cleanup()
    return text


def haproxy() -> bytes:
    front, back_ok, back_closed = free_port(), free_port(), free_port()
    nginx = NginxServer()
    nginx.start()
    config = (
        f"frontend web\n  bind {HOST}:{front}\n  mode http\n  option httplog\n"
        "  log stdout format rfc3164 local0\n"
        "  use_backend down if {{ path_beg /down }}\n  default_backend app\n"
        f"backend app\n  mode http\n  server nginx1 {HOST}:{nginx.port}\n"
        f"backend down\n  mode http\n  server gone {HOST}:{back_closed}\n"
    )
    del back_ok
    server = HAProxyServer(config).start()
    try:
        wait_for(lambda: _port(front), what="haproxy frontend", timeout=15)
        _http(f"http://{HOST}:{front}/")
        _http(f"http://{HOST}:{front}/stub_status?x=1")
        _http(f"http://{HOST}:{front}/nothing-here")
        _http(f"http://{HOST}:{front}/down/api")
    finally:
        assert server.process is not None
        server.process.stop(signal.SIGUSR1)
        text = (server.dir.path / "haproxy.log").read_bytes()
        server.dir.cleanup()
        nginx.cleanup()
    # Only the traffic log: haproxy's own start-up notices are not in the HTTP log format.
    return b"".join(line for line in text.splitlines(keepends=True) if line.startswith(b"<"))


def _port(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def syslog_rfc3164_local() -> bytes:
    """util-linux `logger` writing to a Unix datagram socket, as programs write to /dev/log."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="podkit-syslog-") as tmp:
        path = f"{tmp}/log.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        sent = [
            ["-t", "myapp", "--id=4242", "-p", "user.info", "service started"],
            ["-t", "cron", "-p", "cron.notice", "(root) CMD (run-parts /etc/cron.hourly)"],
            ["-t", "backup.sh", "--id=77", "-p", "local3.err", "disk /dev/sdb1 full: 100%"],
            ["-t", "kernel", "-p", "kern.warning", "eth0: link down"],
            ["-t", "su", "-p", "auth.crit", "'su root' failed for alice on /dev/pts/8"],
        ]
        lines = []
        try:
            for args in sent:
                subprocess.run(["logger", "-u", path, *args], check=True)
                lines.append(sock.recv(65536))
        finally:
            sock.close()
    return b"\n".join(lines)


INGRESS_FORMAT = (
    # ingress-nginx's `upstreaminfo` log_format; $proxy_upstream_name is set by its Lua.
    "log_format upstreaminfo '$remote_addr - $remote_user [$time_local] \"$request\" '"
    ' \'$status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length\''
    " ' $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]'"
    " ' $upstream_addr $upstream_response_length $upstream_response_time'"
    " ' $upstream_status $req_id';"
)


def k8s_nginx_ingress() -> bytes:
    app = NginxServer()
    app.start()
    port, closed = free_port(), free_port()
    extra = (
        INGRESS_FORMAT + f" server {{ listen {HOST}:{port}; access_log {{log}} upstreaminfo;"
        " set $proxy_upstream_name default-web-80; set $proxy_alternative_upstream_name '';"
        " set $req_id $request_id;"
        f" location /down/ {{ proxy_pass http://{HOST}:{closed}; }}"
        f" location / {{ proxy_pass http://{HOST}:{app.port}; }} }}"
    )
    server = NginxServer(extra_http="")
    log = server.dir.path / "ingress.log"
    server.config.write_text(
        server.config.read_text().replace(
            "  \n  server {", "  " + extra.replace("{log}", str(log)) + "\n  server {", 1
        )
    )
    server.start()
    try:
        _http(f"http://{HOST}:{port}/")
        _http(f"http://{HOST}:{port}/stub_status")
        _http(f"http://{HOST}:{port}/nothing")
        _http(f"http://{HOST}:{port}/down/api")
    finally:
        assert server.process is not None
        server.process.stop(signal.SIGQUIT)
        text = log.read_bytes()
        server.dir.cleanup()
        app.cleanup()
    return text


CAPTURES: dict[str, Callable[[], bytes]] = {
    "postgresql": postgresql,
    "redis": redis,
    "nginx_error": nginx_error,
    "apache_error": apache_error,
    "haproxy": haproxy,
    "syslog-rfc3164-local": syslog_rfc3164_local,
    "k8s-nginx-ingress": k8s_nginx_ingress,
}


def main() -> int:
    names = sys.argv[1:] or list(CAPTURES)
    for name in names:
        text = CAPTURES[name]()
        (HERE / f"{name}.in").write_bytes(text.rstrip(b"\n"))
        print(name, text.count(b"\n"), "lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
