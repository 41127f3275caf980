"""pytest plugin: real servers on free loopback ports, and podkit helpers as subprocesses.

Loaded for every run through `-p tests.servers` (pyproject). A server whose binary is
missing skips its tests on a developer's machine; with CI=true it fails them instead,
so a missing package can never turn into a green run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from podkit_dev import servers as devservers
from podkit_dev.servers import (
    ApacheServer,
    GitHttpServer,
    GitRepo,
    HAProxyServer,
    HelperProcess,
    MissingBinary,
    NginxServer,
    PostgresServer,
    RedisServer,
    SentinelCluster,
    SshServer,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(exc: MissingBinary) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and a server binary is missing: {exc}", pytrace=False)
    pytest.skip(str(exc))


def _start(factory: Callable[[], object]):  # type: ignore[no-untyped-def]
    try:
        server = factory()
    except MissingBinary as exc:
        _missing(exc)
    try:
        server.start()  # type: ignore[attr-defined]
    except Exception:
        server.cleanup()  # type: ignore[attr-defined]
        raise
    return server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server."""
    server = _start(RedisServer)
    yield server
    server.cleanup()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start any number of redis-servers: `redis_factory(args=[...])`."""
    started: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        server = _start(lambda: RedisServer(**kwargs))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A master, 2 replicas and 3 Sentinels (down-after 1 s), master name `mymaster`."""
    cluster = _start(SentinelCluster)
    yield cluster
    cluster.cleanup()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = _start(PostgresServer)
    yield server
    server.cleanup()


@pytest.fixture
def postgres_factory() -> Iterator[Callable[..., PostgresServer]]:
    """`postgres_factory(auth="scram-sha-256", password_encryption=..., hba=[...], ssl_cert=...)`:
    PostgreSQL clusters with the given options (PostgresServer's docstring)."""
    started: list[PostgresServer] = []

    def make(**kwargs: object) -> PostgresServer:
        server = _start(lambda: PostgresServer(**kwargs))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def nginx_server() -> Iterator[NginxServer]:
    """nginx serving / and /stub_status on a free port."""
    server = _start(NginxServer)
    yield server
    server.cleanup()


@pytest.fixture
def apache_server() -> Iterator[ApacheServer]:
    """apache2 (event MPM) with mod_status at /server-status on a free port."""
    server = _start(ApacheServer)
    yield server
    server.cleanup()


@pytest.fixture
def haproxy_factory() -> Iterator[Callable[[str], HAProxyServer]]:
    """`haproxy_factory(config_text)`: haproxy with a stats page, plus the sections given."""
    started: list[HAProxyServer] = []

    def make(config: str = "") -> HAProxyServer:
        server = _start(lambda: HAProxyServer(config))
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def run_helper() -> Iterator[Callable[..., HelperProcess]]:
    """`run_helper("echo", "--listen", addr, wait="readyz")`: a real `podkit ROLE` process."""
    started: list[HelperProcess] = []

    def start(
        role: str, *args: str, wait: str | None = "readyz", timeout: float = 15.0, **kwargs: object
    ) -> HelperProcess:
        helper = HelperProcess(role, *args, **kwargs)  # type: ignore[arg-type]
        started.append(helper)
        return helper.start(wait=wait, timeout=timeout)

    yield start
    for helper in started:
        helper.cleanup()


@pytest.fixture
def git_repo() -> Iterator[GitRepo]:
    """A bare git repository with one commit on main, and a work clone to push from."""
    try:
        repo = GitRepo()
    except MissingBinary as exc:
        _missing(exc)
    repo.commit({"README": "hello\n"}, "first")
    yield repo
    repo.cleanup()


@pytest.fixture
def git_http() -> Iterator[Callable[..., GitHttpServer]]:
    """`git_http(project_root, username=, password=)`: git http-backend over loopback."""
    started: list[GitHttpServer] = []

    def make(project_root: object, **kwargs: str) -> GitHttpServer:
        try:
            server = GitHttpServer(project_root, **kwargs)  # type: ignore[arg-type]
        except MissingBinary as exc:
            _missing(exc)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def sshd() -> Iterator[SshServer]:
    """Debian's sshd on a free loopback port, its host key in `known_hosts`."""
    server = _start(SshServer)
    yield server
    server.cleanup()


@pytest.fixture
def free_port() -> Callable[[], int]:
    return devservers.free_port


def require_binary(name: str, *dirs: str) -> str:
    """The path of a binary a test needs directly (promtool, wrk, busybox...)."""
    try:
        return devservers.find_binary(name, *dirs)
    except MissingBinary as exc:
        _missing(exc)
        raise
