"""pytest plugin: real servers on free loopback ports, and podkit helpers as subprocesses.

Loaded for every run through `-p tests.servers` (pyproject). A server whose binary is
missing skips its tests on a developer's machine; with CI=true it fails them instead,
so a missing package can never turn into a green run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol, TypeVar

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

S = TypeVar("S", bound="Stoppable")


class Stoppable(Protocol):
    def cleanup(self) -> None: ...


def missing(exc: MissingBinary) -> NoReturn:
    """A server binary is missing: fail under CI=true, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"CI=true and a server binary is missing: {exc}", pytrace=False)
    pytest.skip(str(exc))


def start_server(make: Callable[[], S], start: Callable[[S], object] | None = None) -> S:
    """`make()` a server and start it (`start(server)`, or `server.start()`); a missing
    binary goes through `missing`, a failed start cleans up before it raises."""
    try:
        server = make()
    except MissingBinary as exc:
        missing(exc)
    try:
        if start is None:
            server.start()  # type: ignore[attr-defined]
        else:
            start(server)
    except MissingBinary as exc:
        server.cleanup()
        missing(exc)
    except BaseException:
        server.cleanup()
        raise
    return server


def serve(make: Callable[[], S], start: Callable[[S], object] | None = None) -> Iterator[S]:
    """The body of a fixture for one server: started, yielded, stopped."""
    server = start_server(make, start)
    try:
        yield server
    finally:
        server.cleanup()


def serve_many(make: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """The body of a fixture that starts any number of servers: `make(*args, **kwargs)`
    each, all stopped at the end."""
    started: list[S] = []

    def start(*args: Any, **kwargs: Any) -> S:
        server = start_server(lambda: make(*args, **kwargs))
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.cleanup()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server."""
    yield from serve(RedisServer)


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start any number of redis-servers: `redis_factory(args=[...])`."""
    yield from serve_many(RedisServer)


@pytest.fixture
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A master, 2 replicas and 3 Sentinels (down-after 1 s), master name `mymaster`."""
    yield from serve(SentinelCluster)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    yield from serve(PostgresServer)


@pytest.fixture
def postgres_factory() -> Iterator[Callable[..., PostgresServer]]:
    """`postgres_factory(auth="scram-sha-256", password_encryption=..., hba=[...], ssl_cert=...)`:
    PostgreSQL clusters with the given options (PostgresServer's docstring)."""
    yield from serve_many(PostgresServer)


@pytest.fixture
def nginx_server() -> Iterator[NginxServer]:
    """nginx serving / and /stub_status on a free port."""
    yield from serve(NginxServer)


@pytest.fixture
def apache_server() -> Iterator[ApacheServer]:
    """apache2 (event MPM) with mod_status at /server-status on a free port."""
    yield from serve(ApacheServer)


@pytest.fixture
def haproxy_factory() -> Iterator[Callable[..., HAProxyServer]]:
    """`haproxy_factory(config_text)`: haproxy with a stats page, plus the sections given."""
    yield from serve_many(HAProxyServer)


@pytest.fixture
def run_helper() -> Iterator[Callable[..., HelperProcess]]:
    """`run_helper("echo", "--listen", addr, wait="readyz")`: a real `podkit ROLE` process."""
    started: list[HelperProcess] = []

    def start(
        role: str, *args: str, wait: str | None = "readyz", timeout: float = 15.0, **kwargs: Any
    ) -> HelperProcess:
        helper = HelperProcess(role, *args, **kwargs)
        started.append(helper)
        return helper.start(wait=wait, timeout=timeout)

    yield start
    for helper in started:
        helper.cleanup()


@pytest.fixture
def git_repo() -> Iterator[GitRepo]:
    """A bare git repository with one commit on main, and a work clone to push from."""
    yield from serve(GitRepo, lambda repo: repo.commit({"README": "hello\n"}, "first"))


@pytest.fixture
def git_http() -> Iterator[Callable[..., GitHttpServer]]:
    """`git_http(project_root, username=, password=)`: git http-backend over loopback."""
    yield from serve_many(GitHttpServer)


@pytest.fixture
def sshd() -> Iterator[SshServer]:
    """Debian's sshd on a free loopback port, its host key in `known_hosts`."""
    yield from serve(SshServer)


@pytest.fixture
def free_port() -> Callable[[], int]:
    return devservers.free_port


def require_binary(name: str, *dirs: str) -> str:
    """The path of a binary a test needs directly (promtool, wrk, busybox...)."""
    try:
        return devservers.find_binary(name, *dirs)
    except MissingBinary as exc:
        missing(exc)
