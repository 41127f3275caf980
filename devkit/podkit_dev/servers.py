"""Real servers on free loopback ports, for the tests, the demo and the benchmarks.

Each server is started from its real binary (redis-server, redis-server --sentinel,
PostgreSQL's initdb/postgres, nginx, haproxy), waits until it answers, and is stopped
with everything in its temporary directory. `HelperProcess` does the same for
`podkit ROLE ...` itself. Nothing here is used by a helper at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    pass


class MissingBinary(ServerError):
    """A server binary is not installed; the tests turn this into a skip, or a failure in CI."""


def find_binary(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None
    )
    if path is None:
        raise MissingBinary(f"{name} is not installed (run ./dev setup as root, or apt-get it)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str,
    explain: Callable[[], object] | None = None,
) -> Any:
    """Poll `condition` until it returns something truthy, and return that; raise
    TimeoutError naming `what` (and, when given, what `explain()` says then: a helper's
    log, say). A condition that raises counts as not yet (the server may not be up);
    its last error is in the TimeoutError. `until` is the same wait for async code."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last_error, explain)
        time.sleep(interval)


async def until(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling, as wait_for's
    interval: float = 0.01,
    what: str,
    explain: Callable[[], object] | None = None,
) -> Any:
    """`wait_for` for async code: the same arguments and failure, and a coroutine that
    `condition()` returns is awaited; the event loop runs between checks."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last_error, explain)
        await asyncio.sleep(interval)


def _timed_out(
    timeout: float, what: str, last_error: Exception | None, explain: Callable[[], object] | None
) -> TimeoutError:
    suffix = f" (last error: {last_error})" if last_error else ""
    if explain is not None:
        suffix += f"\n{explain()}"
    return TimeoutError(f"timed out after {timeout}s waiting for {what}{suffix}")


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Process:
    """A child process with its log file; stopped (and waited for) by `stop()`."""

    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: str | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


class TempDir:
    def __init__(self, prefix: str, owner: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"podkit-{prefix}-"))
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(self.path, entry.pw_uid, entry.pw_gid)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# --- Redis and Sentinel ---------------------------------------------------------------------


class RedisServer:
    """redis-server on a free loopback port, persistence off."""

    def __init__(self, *, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.binary = find_binary("redis-server")
        self.port = port or free_port()
        self.extra_args = list(args)
        self.dir = TempDir(f"redis-{self.port}")
        self.process: Process | None = None

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(self.dir.path), *self.extra_args,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        self.process = Process(self.argv(), self.dir.path / "redis.log").start()
        wait_for(self.ping, what=f"redis-server on {self.addr}", timeout=15)
        return self

    def command(self, *args: str, timeout: float = 2.0) -> bytes:
        """Send one command in RESP and return the raw reply (enough for tests and fixtures)."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
        )
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(payload)
            chunks = []
            sock.settimeout(timeout)
            while True:
                chunk = sock.recv(65536)
                chunks.append(chunk)
                if not chunk or _resp_complete(b"".join(chunks)):
                    break
            return b"".join(chunks)

    def ping(self) -> bool:
        return self.command("PING").startswith(b"+PONG")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        self.dir.cleanup()


def _resp_complete(data: bytes) -> bool:
    """True once `data` holds one whole RESP reply."""

    def parse(pos: int) -> int:
        end = data.index(b"\r\n", pos)
        kind, head = data[pos : pos + 1], data[pos + 1 : end]
        if kind in (b"+", b"-", b":"):
            return end + 2
        if kind == b"$":
            length = int(head)
            if length < 0:
                return end + 2
            if len(data) < end + 2 + length + 2:
                raise ValueError
            return end + 2 + length + 2
        if kind == b"*":
            count, pos = int(head), end + 2
            for _ in range(max(count, 0)):
                pos = parse(pos)
            return pos
        raise ValueError

    try:
        parse(0)
        return True
    except (ValueError, IndexError):
        return False


class SentinelServer(RedisServer):
    """redis-server in --sentinel mode watching one master."""

    def __init__(
        self,
        master_name: str,
        master: RedisServer,
        *,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        announce_hostname: str | None = None,
    ) -> None:
        super().__init__()
        self.config = self.dir.path / "sentinel.conf"
        # With a hostname, Sentinel resolves it and names every node by it (announce-hostnames).
        hostnames = (
            f"sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
            f"sentinel announce-ip {announce_hostname}\n"
            if announce_hostname
            else ""
        )
        self.config.write_text(
            f"port {self.port}\nbind {HOST}\ndir {self.dir.path}\n{hostnames}"
            f"sentinel monitor {master_name} {announce_hostname or HOST} {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )

    def argv(self) -> list[str]:
        return [self.binary, str(self.config), "--sentinel"]


class SentinelCluster:
    """A master, replicas and Sentinels, all real, on loopback. Fast failover settings."""

    def __init__(
        self,
        master_name: str = "mymaster",
        *,
        replicas: int = 2,
        sentinels: int = 3,
        node_args: Sequence[str] = (),
        failover_timeout_ms: int = 5000,
        announce_hostname: str | None = None,
        down_after_ms: int = 1000,
    ) -> None:
        """`node_args`: extra redis-server arguments for every node (`--repl-diskless-sync-delay
        0`...); `announce_hostname`: nodes and Sentinels name each other by this hostname
        (`localhost`), as with `sentinel announce-hostnames yes`."""
        self.master_name = master_name
        host = announce_hostname or HOST
        announce = ["--replica-announce-ip", announce_hostname] if announce_hostname else []
        self.nodes: list[RedisServer] = [RedisServer(args=[*node_args, *announce])]
        master = self.nodes[0]
        for _ in range(replicas):
            self.nodes.append(RedisServer(
                args=[*node_args, *announce, "--replicaof", host, str(master.port)]
            ))  # fmt: skip
        self.sentinels = [
            SentinelServer(
                master_name,
                master,
                failover_timeout_ms=failover_timeout_ms,
                announce_hostname=announce_hostname,
                down_after_ms=down_after_ms,
            )
            for _ in range(sentinels)
        ]

    def start(self) -> SentinelCluster:
        for node in self.nodes:
            node.start()
        wait_for(self._replicas_online, what="replicas to sync with the master", timeout=20)
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(self._sentinels_agree, what="sentinels to see each other", timeout=45)
        return self

    def _replicas_online(self) -> bool:
        info = self.nodes[0].command("INFO", "replication")
        return info.count(b"state=online") == len(self.nodes) - 1

    def _sentinels_agree(self) -> bool:
        want = str(len(self.sentinels) - 1).encode()
        for sentinel in self.sentinels:
            reply = sentinel.command("SENTINEL", "MASTER", self.master_name)
            fields = reply.split(b"\r\n")
            try:
                index = fields.index(b"num-other-sentinels")
            except ValueError:
                return False
            if fields[index + 2] != want:
                return False
        return True

    @property
    def sentinel_addrs(self) -> list[str]:
        return [s.addr for s in self.sentinels]

    def master_addr(self) -> str:
        """The master as the first answering Sentinel reports it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(OSError):
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                parts = [p for p in reply.split(b"\r\n") if p and p[:1] not in b"*$"]
                if len(parts) == 2:
                    return f"{parts[0].decode()}:{parts[1].decode()}"
        raise ServerError("no sentinel answered")

    def node(self, addr: str) -> RedisServer:
        """The node at `addr` (an IP or an announced hostname, with its port)."""
        port = int(addr.rsplit(":", 1)[1])
        return next(n for n in self.nodes if n.port == port)

    # --- repeated failovers (tests and bench) -----------------------------------------------

    def _replication(self, node: RedisServer) -> dict[str, str]:
        text = node.command("INFO", "replication").decode(errors="replace")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _sentinel_knows_a_good_replica(self, sentinel: RedisServer) -> bool:
        import redis  # dev-only dependency, needed only here

        with redis.Redis(host=HOST, port=sentinel.port, decode_responses=True) as client:
            reply = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
        for entry in reply:
            fields = (
                entry
                if isinstance(entry, dict)
                else dict(zip(entry[::2], entry[1::2], strict=True))
            )
            if fields.get("flags") == "slave":  # not down, not disconnected: promotable
                return True
        return False

    def settled(self) -> str | None:
        """The master's address once every Sentinel names it, every other node is its synced
        replica and every Sentinel knows a replica that is up (one it can promote); else None."""
        try:
            names = {
                s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                for s in self.sentinels
            }
            if len(names) != 1:
                return None
            addr = self.master_addr()
            master = self.node(addr)
            if self._replication(master).get("role") != "master":
                return None
            for node in self.nodes:
                info = self._replication(node) if node is not master else {}
                if node is not master and (
                    info.get("role") != "slave"
                    or info.get("master_port") != str(master.port)
                    or info.get("master_link_status") != "up"
                    or info.get("master_sync_in_progress") != "0"
                ):
                    return None
            if not all(self._sentinel_knows_a_good_replica(s) for s in self.sentinels):
                return None
            return addr
        except (OSError, ServerError, StopIteration):
            return None

    def wait_settled(self, timeout: float = 60.0) -> str:
        return str(wait_for(self.settled, timeout=timeout, what="the Sentinel cluster to settle"))

    def failover_command(self, timeout: float = 20.0) -> None:
        """`SENTINEL FAILOVER`, again while a Sentinel answers -NOGOODSLAVE (still refreshing
        what it knows of the replicas)."""
        wait_for(
            lambda: (
                self.sentinels[0]
                .command("SENTINEL", "FAILOVER", self.master_name)
                .startswith(b"+OK")
            ),
            timeout=timeout,
            what="Sentinel to accept SENTINEL FAILOVER",
        )

    def make_replica(self, old: RedisServer, master: RedisServer) -> RedisServer:
        """Turn a replaced master into a replica of `master` (what Sentinel does some 10 s
        later); a killed one is started again as a replica. Returns the node."""
        if old.process is not None and old.process.alive():
            old.command("REPLICAOF", HOST, str(master.port), timeout=10)
            return old
        old.cleanup()
        fresh = RedisServer(port=old.port, args=[*old.extra_args, "--replicaof", HOST,
                                                  str(master.port)])  # fmt: skip
        self.nodes[self.nodes.index(old)] = fresh
        return fresh.start()

    @staticmethod
    def stopped(node: RedisServer) -> bool:
        """True once a SIGSTOP sent to the node has taken effect."""
        assert node.process is not None
        with open(f"/proc/{node.process.pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "T"

    def cleanup(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.cleanup()


# --- PostgreSQL ------------------------------------------------------------------------------

_PG_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb into a temp dir) with trust auth on loopback.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
    """

    def __init__(
        self,
        *,
        auth: str = "trust",
        hba: Sequence[str] = (),
        password_encryption: str | None = None,
        ssl_cert: tuple[Path, Path] | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        """Options (all off by default: trust on loopback, no TLS, as before):

        `auth`: the pg_hba method of the loopback `host` lines (`scram-sha-256`, `md5`,
        `password`, `trust`); `hba`: pg_hba lines put before them (per-user methods,
        `hostssl`/`hostnossl`); `password_encryption`: how `add_user` stores passwords
        (`scram-sha-256` or `md5`); `ssl_cert`: (cert, key) PEM files, copied in, `ssl=on`;
        `settings`: more `name=value` for `postgres -c`. The Unix socket stays trust, so
        fixtures can always reach it (`sql()`).
        """
        dirs = [str(d) for d in _PG_DIRS]
        self.initdb = find_binary("initdb", *dirs)
        self.postgres = find_binary("postgres", *dirs)
        self.psql = find_binary("psql", *dirs)
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.dir = TempDir(f"pg-{self.port}", owner=self.user)
        self.data = self.dir.path / "data"
        self.process: Process | None = None
        self.auth = auth
        self.hba = list(hba)
        self.password_encryption = password_encryption
        self.ssl_cert = ssl_cert
        self.settings = list(settings)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def start(self) -> PostgresServer:
        subprocess.run(
            [self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, user=self.user, cwd=self.dir.path,
        )  # fmt: skip
        argv = [
            self.postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir.path),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "max_connections=200",
        ]  # fmt: skip
        if self.auth != "trust" or self.hba:
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\n"
                + "".join(f"{line}\n" for line in self.hba)
                + f"host all all {HOST}/32 {self.auth}\nhost all all ::1/128 {self.auth}\n"
            )
        if self.password_encryption:
            argv += ["-c", f"password_encryption={self.password_encryption}"]
        if self.ssl_cert:
            argv += ["-c", "ssl=on", *self._install_cert(*self.ssl_cert)]
        for setting in self.settings:
            argv += ["-c", setting]
        self.process = Process(argv, self.dir.path / "postgres.log", user=self.user).start()
        wait_for(lambda: port_open(self.port), what=f"postgres on {self.port}", timeout=30)
        return self

    def _install_cert(self, cert: Path, key: Path) -> list[str]:
        """Copy the PEM pair into the data dir, owned by the server user, key mode 0600."""
        paths = [self.data / "server.crt", self.data / "server.key"]
        for source, target in zip((cert, key), paths, strict=True):
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(target, entry.pw_uid, entry.pw_gid)
        return ["-c", f"ssl_cert_file={paths[0]}", "-c", f"ssl_key_file={paths[1]}"]

    def sql(self, query: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the (always trusted) Unix socket; unaligned output."""
        result = subprocess.run(
            [self.psql, "-h", str(self.dir.path), "-p", str(self.port), "-U", "postgres",
             "-d", database, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def add_user(
        self,
        name: str,
        password: str | None,
        *,
        encryption: str | None = None,
        superuser: bool = False,
    ) -> None:
        """CREATE (or ALTER) ROLE `name` LOGIN with `password` stored as `encryption`
        (`scram-sha-256`, `md5`; default: the server's password_encryption)."""
        quoted_name = '"' + name.replace('"', '""') + '"'
        exists = self.sql(
            f"SELECT 1 FROM pg_roles WHERE rolname = '{name.replace(chr(39), chr(39) * 2)}'"
        )
        verb = "ALTER" if exists else "CREATE"
        secret = "NULL" if password is None else "'" + password.replace("'", "''") + "'"
        set_encryption = f"SET password_encryption = '{encryption}'; " if encryption else ""
        extra = " SUPERUSER" if superuser else ""
        self.sql(f"{set_encryption}{verb} ROLE {quoted_name} LOGIN{extra} PASSWORD {secret}")

    def dsn_for(self, user: str, password: str | None = None, database: str = "postgres") -> str:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth}@{HOST}:{self.port}/{database}"

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGINT)  # fast shutdown
        self.dir.cleanup()

    def accepting(self) -> bool:
        """True once the server accepts connections (past "the database system is starting up")."""
        isready = find_binary("pg_isready", *(str(d) for d in _PG_DIRS))
        argv = [isready, "-q", "-h", HOST, "-p", str(self.port), "-U", "postgres"]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def wait_accepting(self, timeout: float = 30.0) -> PostgresServer:
        wait_for(self.accepting, what=f"postgres on {self.port} accepting", timeout=timeout)
        return self

    def restart(self) -> PostgresServer:
        """Fast shutdown and start again on the same port and data directory."""
        if self.process is not None:
            self.process.stop(signal.SIGINT)
        self.process = Process(self.process.argv if self.process else [], self.dir.path /
                               "postgres.log", user=self.user).start()  # fmt: skip
        return self.wait_accepting()


# --- nginx and haproxy ---------------------------------------------------------------------


class NginxServer:
    """nginx with a static page on `port` and stub_status at /stub_status."""

    def __init__(self, extra_http: str = "") -> None:
        self.binary = find_binary("nginx", "/usr/sbin")
        self.port = free_port()
        self.dir = TempDir(f"nginx-{self.port}")
        self.access_log = self.dir.path / "access.log"
        (self.dir.path / "html").mkdir()
        (self.dir.path / "html" / "index.html").write_text("hello from nginx\n")
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config = self.dir.path / "nginx.conf"
        self.config.write_text(
            f"{user}worker_processes 1;\npid {self.dir.path}/nginx.pid;\n"
            f"error_log {self.dir.path}/error.log;\nevents {{ worker_connections 256; }}\n"
            "http {\n"
            f"  access_log {self.access_log};\n"
            f"  client_body_temp_path {self.dir.path}/body;\n"
            f"  proxy_temp_path {self.dir.path}/proxy;\n"
            f"  fastcgi_temp_path {self.dir.path}/fastcgi;\n"
            f"  uwsgi_temp_path {self.dir.path}/uwsgi;\n"
            f"  scgi_temp_path {self.dir.path}/scgi;\n"
            f"  {extra_http}\n"
            f"  server {{\n    listen {HOST}:{self.port};\n"
            f"    location / {{ root {self.dir.path}/html; }}\n"
            "    location = /stub_status { stub_status; }\n  }\n}\n"
        )
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> NginxServer:
        argv = [self.binary, "-c", str(self.config), "-p", str(self.dir.path), "-g",
                "daemon off;"]  # fmt: skip
        self.process = Process(argv, self.dir.path / "nginx.out").start()
        wait_for(
            lambda: http_get(f"{self.url}/stub_status")[0] == 200,
            what=f"nginx on {self.port}",
            timeout=15,
        )
        return self

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGQUIT)
        self.dir.cleanup()


class RegistryServer:
    """Debian's docker-registry (the CNCF distribution registry) on `port`: plain HTTP, no
    auth, its storage in a temporary directory. Clients need --tls-verify=false."""

    def __init__(self) -> None:
        self.binary = find_binary("docker-registry")
        self.port = free_port()
        self.dir = TempDir(f"registry-{self.port}")
        self.config = self.dir.path / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.dir.path}/data}}}}\n"
            f"http: {{addr: '{HOST}:{self.port}'}}\n"
        )
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> RegistryServer:
        argv = [self.binary, "serve", str(self.config)]
        self.process = Process(argv, self.dir.path / "registry.out").start()
        wait_for(
            lambda: http_get(f"http://{self.address}/v2/")[0] == 200,
            what=f"docker-registry on {self.port}",
            timeout=15,
            explain=self.process.log_text,
        )
        return self

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.dir.cleanup()


class HAProxyServer:
    """haproxy from a config text; `{stats_port}` and `{stats_socket}` are filled in."""

    def __init__(self, config: str = "") -> None:
        self.binary = find_binary("haproxy", "/usr/sbin")
        self.stats_port = free_port()
        self.dir = TempDir(f"haproxy-{self.stats_port}")
        self.stats_socket = self.dir.path / "stats.sock"
        self.config = self.dir.path / "haproxy.cfg"
        self.config.write_text(
            "global\n"
            f"  stats socket {self.stats_socket} mode 600 level admin\n"
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            f"frontend stats\n  bind {HOST}:{self.stats_port}\n  stats enable\n"
            "  stats uri /stats\n  stats refresh 10s\n"
            + config.format(stats_port=self.stats_port, stats_socket=self.stats_socket)
        )
        self.process: Process | None = None

    def start(self) -> HAProxyServer:
        argv = [self.binary, "-f", str(self.config), "-db"]
        self.process = Process(argv, self.dir.path / "haproxy.log").start()
        wait_for(lambda: port_open(self.stats_port), what="haproxy stats port", timeout=15)
        return self

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGUSR1)  # soft stop
        self.dir.cleanup()


# --- podkit itself ----------------------------------------------------------------------------


def podkit_argv() -> list[str]:
    """How to run the `podkit` of this interpreter, whether or not its bin dir is on PATH."""
    script = Path(sys.executable).parent / "podkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "podkit.cli"]


class HelperProcess:
    """`podkit ROLE ...` as a real subprocess, with its admin server on a free port."""

    def __init__(
        self,
        role: str,
        *args: str,
        env: dict[str, str] | None = None,
        admin_port: int | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.role = role
        self.admin_port = admin_port or free_port()
        self.dir = TempDir(f"helper-{role}")
        self.log_path = self.dir.path / "helper.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = [*wrapper, *podkit_argv(), role, "--admin-addr", f"{HOST}:{self.admin_port}",
                *args]  # fmt: skip
        self.process = Process(argv, self.log_path, env=full_env)

    @property
    def admin(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    def start(self, *, wait: str | None = "readyz", timeout: float = 15.0) -> HelperProcess:
        self.process.start()
        if wait:
            self.wait_http(wait, timeout=timeout)
        return self

    def wait_http(self, path: str, status: int = 200, timeout: float = 15.0) -> None:
        def check() -> bool:
            if not self.process.alive():
                raise ServerError(f"podkit {self.role} exited early:\n{self.log_text()}")
            return http_get(f"{self.admin}/{path.lstrip('/')}", timeout=1)[0] == status

        try:
            wait_for(check, what=f"podkit {self.role} /{path} = {status}", timeout=timeout)
        except ServerError:
            raise
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- helper log ---\n{self.log_text()}") from None

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.admin}/{path.lstrip('/')}")

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def log_text(self) -> str:
        return self.process.log_text()

    def log_events(self) -> Iterator[dict[str, Any]]:
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                yield json.loads(line)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines whose `event` is `name`."""
        return [e for e in self.log_events() if e.get("event") == name]

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process.popen is not None
        return self.process.popen.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return self.process.stop(sig, timeout)

    def cleanup(self) -> None:
        self.process.stop(signal.SIGKILL, timeout=5)
        self.dir.cleanup()


# --- Apache httpd ------------------------------------------------------------------------------


class ApacheServer:
    """apache2 (event MPM) with mod_status at /server-status and a static page at /."""

    MODULES = "/usr/lib/apache2/modules"

    def __init__(self) -> None:
        self.binary = find_binary("apache2", "/usr/sbin")
        self.port = free_port()
        self.dir = TempDir(f"apache-{self.port}")
        os.chmod(self.dir.path, 0o755)  # the workers (User below) read the document root
        (self.dir.path / "html").mkdir()
        (self.dir.path / "html" / "index.html").write_text("hello from apache\n")
        # As root, httpd insists on dropping its workers to an unprivileged user.
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        modules = "".join(
            f"LoadModule {name}_module {self.MODULES}/mod_{name}.so\n"
            for name in ("mpm_event", "authz_core", "status")
        )
        self.config = self.dir.path / "httpd.conf"
        self.config.write_text(
            f"ServerRoot {self.dir.path}\nServerName {HOST}\nListen {HOST}:{self.port}\n"
            f"{modules}{user}"
            f"PidFile {self.dir.path}/httpd.pid\nErrorLog {self.dir.path}/error.log\n"
            f"DefaultRuntimeDir {self.dir.path}\nMutex file:{self.dir.path} default\n"
            f"DocumentRoot {self.dir.path}/html\nExtendedStatus On\n"
            "StartServers 1\nServerLimit 2\nThreadsPerChild 8\nMaxRequestWorkers 16\n"
            "<Location /server-status>\n  SetHandler server-status\n"
            "  Require all granted\n</Location>\n"
        )
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ApacheServer:
        argv = [self.binary, "-f", str(self.config), "-DFOREGROUND"]
        self.process = Process(argv, self.dir.path / "apache.out").start()
        wait_for(
            lambda: http_get(f"{self.url}/server-status?auto")[0] == 200,
            what=f"apache2 on {self.port}",
            timeout=15,
        )
        return self

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM)
        self.dir.cleanup()


# --- Prometheus ---------------------------------------------------------------------------------


@dataclass
class ScrapeJob:
    """One scrape job: targets (host:port) and the labels every series of them gets."""

    name: str
    targets: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    path: str = "/metrics"


class PrometheusServer:
    """Debian's `prometheus` on a free loopback port, temp storage, scraping `jobs`."""

    def __init__(
        self, jobs: Sequence[ScrapeJob], *, interval: str = "1s", rule_files: Sequence[str] = ()
    ) -> None:
        self.binary = find_binary("prometheus")
        self.port = free_port()
        self.dir = TempDir(f"prometheus-{self.port}")
        self.jobs = list(jobs)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": list(rule_files),
            "scrape_configs": [
                {
                    "job_name": job.name,
                    "metrics_path": job.path,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": job.targets, "labels": job.labels}],
                }
                for job in self.jobs
            ],
        }
        self.config = self.dir.path / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> PrometheusServer:
        argv = [
            self.binary,
            f"--config.file={self.config}",
            f"--web.listen-address={HOST}:{self.port}",
            f"--storage.tsdb.path={self.dir.path / 'data'}",
            "--log.level=warn",
        ]
        self.process = Process(argv, self.dir.path / "prometheus.log").start()
        wait_for(
            lambda: http_get(f"{self.url}/-/ready")[0] == 200,
            what=f"prometheus on {self.port}",
            timeout=30,
        )
        return self

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/PATH; returns the JSON answer (status "success" or "error")."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                answer: dict[str, Any] = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with its error text
            answer = json.loads(exc.read())
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))

    def scrapes_done(self, count: int = 2) -> bool:
        """Every target scraped successfully at least `count` times."""
        targets = self.api("targets")["data"]["activeTargets"]
        expected = sum(len(job.targets) for job in self.jobs)
        if len(targets) < expected or any(t["health"] != "up" for t in targets):
            return False
        answer = self.query("count_over_time(up[10m])")
        values = [float(r["value"][1]) for r in answer["data"]["result"]]
        return len(values) >= expected and min(values) >= count

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop()


# --- git: a repository to push to, served over file://, http (git http-backend) and ssh -------

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "podkit",
    "GIT_AUTHOR_EMAIL": "podkit@example.invalid",
    "GIT_COMMITTER_NAME": "podkit",
    "GIT_COMMITTER_EMAIL": "podkit@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: str | Path | None = None, input: bytes | None = None) -> str:
    """Run the real git (no user config) and return its stdout; raise on failure."""
    binary = find_binary("git")
    result = subprocess.run(
        [binary, *args], cwd=cwd, input=input, capture_output=True,
        env={**os.environ, **GIT_ENV}, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServerError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


class GitRepo:
    """A bare repository (the "remote") and a work clone that commits and pushes to it."""

    def __init__(self, name: str = "repo", branch: str = "main") -> None:
        find_binary("git")
        self.dir = TempDir("git")
        self.name = name
        self.branch = branch
        self.bare = self.dir.path / f"{name}.git"
        self.work = self.dir.path / f"{name}-work"
        git("init", "-q", "--bare", "-b", branch, str(self.bare))
        # Shallow fetches of any commit by SHA, as hosted servers allow.
        git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=self.bare)
        git("config", "uploadpack.allowFilter", "true", cwd=self.bare)
        git("init", "-q", "-b", branch, str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(
        self, files: dict[str, str | bytes | None], message: str = "change", branch: str = ""
    ) -> str:
        """Write (None: delete) files, commit, push to branch; returns the new commit."""
        branch = branch or self.branch
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def checkout(self, branch: str, start: str = "HEAD") -> None:
        git("checkout", "-q", "-B", branch, start, cwd=self.work)

    def tag(self, name: str, *, annotated: bool = False, commit: str = "HEAD") -> str:
        """Tag a commit and push the tag; returns the tag's object (a tag object if annotated)."""
        args = ["-a", "-m", f"tag {name}"] if annotated else []
        git("tag", "-f", *args, name, commit, cwd=self.work)
        git("push", "-q", "--force", "origin", f"refs/tags/{name}", cwd=self.work)
        return git("rev-parse", f"refs/tags/{name}", cwd=self.work).strip()

    def cleanup(self) -> None:
        self.dir.cleanup()


def _read_chunked(stream: io.BufferedIOBase) -> bytes:
    body = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += stream.read(size)
        stream.readline()


class GitHttpServer:
    """The real `git http-backend` (CGI) behind a small threaded HTTP server on loopback,
    with optional basic auth. `password` may be changed while it runs (token rotation);
    `stall_fetch` makes fetches (not ls-remote's ls-refs) hang until it is cleared.
    `cookie` ("name=value"): requests without that cookie get 403 (a cookie-file login)."""

    def __init__(
        self, project_root: Path, username: str = "", password: str = "", cookie: str = ""
    ) -> None:
        import http.server
        import threading

        self.backend = find_binary("git-http-backend", "/usr/lib/git-core")
        self.project_root = Path(project_root)
        self.username = username
        self.password = password
        self.cookie = cookie
        self.cookies_seen: list[str] = []
        self.stall_fetch = threading.Event()
        self.requests: list[tuple[str, str, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _authorized(self) -> bool:
                if not server.username:
                    return True
                import base64

                want = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
                return self.headers.get("Authorization", "") == f"Basic {want}"

            def _handle(self) -> None:
                path, _, query = self.path.partition("?")
                if server.cookie:
                    sent = [c.strip() for c in self.headers.get("Cookie", "").split(";")]
                    server.cookies_seen.append(self.headers.get("Cookie", ""))
                    if server.cookie not in sent:
                        server.requests.append((self.command, path, 403))
                        self.send_response(403)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if not self._authorized():
                    server.requests.append((self.command, path, 401))
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fetch = path.endswith("/git-upload-pack") and b"command=ls-refs" not in body
                if fetch and self.command == "POST":
                    while server.stall_fetch.is_set():
                        time.sleep(0.05)
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": server.username,
                    "REMOTE_ADDR": self.client_address[0],
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                }
                result = subprocess.run(
                    [server.backend], input=body, env=env, capture_output=True, check=False
                )
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = result.stdout.partition(b"\n\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                server.requests.append((self.command, path, status))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, repo_path: str) -> str:
        return f"http://{HOST}:{self.port}/{repo_path.lstrip('/')}"

    def start(self) -> GitHttpServer:
        self.thread.start()
        return self

    def cleanup(self) -> None:
        self.stall_fetch.clear()
        self.httpd.shutdown()
        self.httpd.server_close()


class SshServer:
    """Debian's sshd on a free loopback port with its own host key; one client key pair is
    authorized for the current user (git over ssh runs git-upload-pack through it)."""

    def __init__(self) -> None:
        self.binary = find_binary("sshd", "/usr/sbin")
        keygen = find_binary("ssh-keygen")
        self.port = free_port()
        self.dir = TempDir(f"sshd-{self.port}")
        path = self.dir.path
        os.chmod(path, 0o755)
        self.host_key = path / "host_ed25519"
        self.client_key = path / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (path / "authorized_keys").write_text((path / "client_ed25519.pub").read_text())
        os.chmod(path / "authorized_keys", 0o600)
        host_pub = (path / "host_ed25519.pub").read_text().split()[:2]
        self.known_hosts = path / "known_hosts"
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {' '.join(host_pub)}\n")
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.config = path / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress {HOST}\nHostKey {self.host_key}\n"
            f"PidFile {path}/sshd.pid\nAuthorizedKeysFile {path}/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\nLogLevel ERROR\n"
        )
        self.process: Process | None = None

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@{HOST}:{self.port}{repo}"

    def start(self) -> SshServer:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        argv = [self.binary, "-D", "-e", "-f", str(self.config)]
        self.process = Process(argv, self.dir.path / "sshd.log").start()
        wait_for(lambda: port_open(self.port), what=f"sshd on {self.port}", timeout=15)
        return self

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM)
        self.dir.cleanup()
