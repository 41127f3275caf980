"""The example pods of k8s/ run under `podman kube play`, each pattern in both forms
(native sidecars turned classic for podman 4.3), with the commands their READMEs show.

nginx, redis, busybox and postgres are stand-ins built from Debian packages under the
names the manifests use (tests/e2e/base-image.sh standins). Pods run with `--network
none`: every request stays on the pod's own loopback; only pg-ambassador's pod joins an
internal network, to reach the test's PostgreSQL.

What `tests/e2e/manifests.py podman` rewrites, for every pod: native sidecars become
classic containers, containerPorts go (podman would publish them), probes take port
numbers, a `metadata.namespace` fieldRef becomes "default", emptyDirs become
world-writable tmpfs volumes, and Secret volumes become configMap volumes of the same
name (podman 4.3 cannot mount a Secret: see manifests.for_podman). And for the pods that
need something of this machine (manifests.Local):

- git-sync: the manifest's remote (GitHub) is out of reach, so `--repo=` becomes
  `file:///srv/e2e-repo.git`, a bare repository of the test's mounted read-only there
  (hostPath) in the git-sync container;
- pg-ambassador: a `hostAliases` entry maps the manifest's DATABASES_HOST
  (`postgres.default.svc.cluster.local`, a cluster Service) to the IP of the test's
  PostgreSQL on the internal network (a CNI network made `--internal` has no DNS).
  DATABASES_*, PGBOUNCER_* and the Secret's password are the manifest's.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Podman
from tests.e2e.manifests import K8S, all_containers, load
from tests.e2e.pods import Pod, check_commands, played, wait_for

FORMS = ["classic", "native"]


@pytest.fixture
def need(helper_images: dict[str, str], standins: None):  # type: ignore[no-untyped-def]
    def check(*helpers: str) -> None:
        missing = [h for h in helpers if h not in helper_images]
        assert missing == [], f"no image was built for helper(s) {missing}"

    return check


@pytest.mark.parametrize("form", FORMS)
def test_shared_volume(podman: Podman, standins: None, form: str) -> None:
    with played(podman, "shared-volume", form) as pod:
        (command,) = check_commands("shared-volume", form)

        def page() -> int:
            answer = pod.sh(command, check=False).stdout
            match = re.match(r"page (\d+) written at \S+ by the producer", answer)
            return int(match.group(1)) if match else 0

        first = wait_for(page, 60, "nginx to serve the producer's page")
        # The producer keeps rewriting it, and nginx serves each new page.
        wait_for(lambda: page() > first, 30, "a newer page")


@pytest.mark.parametrize("form", FORMS)
def test_localhost(podman: Podman, standins: None, form: str) -> None:
    with played(podman, "localhost", form) as pod:
        (logs,) = check_commands("localhost", form)
        wait_for(
            lambda: "localhost:8080 answered: hello over localhost" in pod.sh(logs).stdout,
            60,
            "the poller to reach nginx over localhost",
        )


def json_lines(text: str) -> list[dict]:
    """Every stdout line must be one JSON object; a broken line fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stop_pod(podman: Podman, pod: Pod, helper: str) -> None:
    """`podman pod stop` sends SIGTERM: the helper drains and exits 0."""
    podman.run("pod", "stop", "--time", "30", pod.name, timeout=90)
    assert pod.exit_code(helper) == 0, pod.logs(helper)[-3000:]


@pytest.mark.parametrize("form", FORMS)
def test_log_shipper(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("log-shipper")
    with played(podman, "log-shipper", form) as pod:
        load, logs = check_commands("log-shipper", form)
        wait_for(lambda: '"ready"' in pod.logs("log-shipper"), 60, "the shipper to be ready")
        pod.sh(load)  # 20 requests: /hello-0 ... /hello-19

        def shipped() -> dict[int, int]:
            counts = dict.fromkeys(range(20), 0)
            for record in json_lines(pod.sh(logs).stdout):
                text = json.dumps(record)
                for i in counts:
                    if f'GET /hello-{i} HTTP/1.1\\" 200' in text:
                        counts[i] += 1
            return counts

        counts = wait_for(lambda: (c := shipped()) and all(c.values()) and c, 60, "20 lines")
        # Every access-log line arrived once, whole (request line and status in one record).
        assert set(counts.values()) == {1}, counts
        stop_pod(podman, pod, "log-shipper")


@pytest.mark.parametrize("form", FORMS)
def test_log_adapter(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("log-adapter")
    with played(podman, "log-adapter", form) as pod:
        (logs,) = check_commands("log-adapter", form)

        def records() -> list[dict]:
            return json_lines(pod.sh(logs).stdout)

        def parsed() -> list[dict]:
            found = [r for r in records() if isinstance(r.get("took_ms"), int)]
            warnings = [r for r in records() if "cache hit ratio" in str(r.get("message"))]
            return found if len(found) >= 6 and warnings else []

        found = wait_for(parsed, 60, "JSON records with the custom parser's fields")
        for record in found:
            # Parsed by legacy.py from the ConfigMap: key=value pairs, typed by `types:`.
            assert str(record["user"]).startswith("user"), record
            assert "request" in record["message"], record
            assert record.get("timestamp"), record
        stop_pod(podman, pod, "log-adapter")


def nginx_requests(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("nginx_http_requests_total"):
            return float(line.split()[-1])
    raise AssertionError(f"no nginx_http_requests_total in:\n{metrics[:2000]}")


@pytest.mark.parametrize("form", FORMS)
def test_stats_exporter(podman: Podman, need, form: str) -> None:  # type: ignore[no-untyped-def]
    need("stats-exporter")
    with played(podman, "stats-exporter", form) as pod:
        load, scrape = check_commands("stats-exporter", form)

        def metrics() -> str:
            result = pod.sh(scrape, check=False)
            return result.stdout if result.returncode == 0 and "nginx_up 1" in result.stdout else ""

        found = wait_for(metrics, 60, "nginx series on :9113/metrics", explain=pod.state)
        before = nginx_requests(found)
        pod.sh(load)  # 20 requests to nginx
        after = nginx_requests(metrics())
        # The series move with the traffic (+20, and +1 for each stub_status read).
        assert after >= before + 20, (before, after)
        stop_pod(podman, pod, "stats-exporter")


class Remote:
    """A bare repository for the pod to sync from, and a work tree that pushes to it.

    The bare repository belongs to git-sync's UID (the manifest's runAsUser): git refuses
    to serve a repository of another owner over file:// ("dubious ownership"), and
    podkit git-sync's `safe.directory=*` does not reach the git-upload-pack that file://
    runs (git drops GIT_CONFIG_COUNT/-c config for local transports; git-sync v4 writes it
    to its global config). Our own git commands trust it through a global config of ours.
    """

    def __init__(self, root: Path, uid: int) -> None:
        self.bare, self.work = root / "repo.git", root / "work"
        config = root / "gitconfig"
        config.write_text(
            "[safe]\n\tdirectory = *\n[user]\n\temail = e2e@podkit.invalid\n\tname = e2e\n"
        )
        self.env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        self.git("init", "--quiet", "--initial-branch=main", str(self.work))
        for path in [self.bare, *self.bare.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work.parent, env=self.env, check=True,
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    def commit(self, text: str) -> str:
        """Commit README.md with TEXT and push it to the bare repository: the hash."""
        (self.work / "README.md").write_text(text)
        w = ("-C", str(self.work))
        self.git(*w, "add", "README.md")
        self.git(*w, "commit", "--quiet", "-m", text)
        self.git(*w, "push", "--quiet", str(self.bare), "HEAD:main")
        return self.git(*w, "rev-parse", "HEAD")


def run_as_user(folder: str, form: str, container: str) -> int:
    (doc,) = [d for d in load(K8S / folder / f"{form}.yaml").docs if d["kind"] == "Pod"]
    (found,) = [c for c in all_containers(doc["spec"]) if c["name"] == container]
    return int(found["securityContext"]["runAsUser"])


@pytest.mark.parametrize("form", FORMS)
def test_git_sync(podman: Podman, need, tmp_path: Path, form: str) -> None:  # type: ignore[no-untyped-def]
    """The pod syncs a bare repository of the test's: the harness mounts it read-only
    (hostPath /srv/e2e-repo.git) and rewrites `--repo` to its file:// path (the
    manifest's GitHub remote is out of reach here). nginx serves the commit's files through
    git-sync's link; a pushed commit is served after a sync (`POST /sync`, the README's
    way to skip the 60s period)."""
    need("git-sync")
    remote = Remote(tmp_path, run_as_user("git-sync", form, "git-sync"))
    first = remote.commit("first version\n")
    with played(podman, "git-sync", form, local=("--git-repo", str(remote.bare))) as pod:
        readme, link, sync, readyz, metrics = check_commands("git-sync", form)

        def served() -> str:
            result = pod.sh(readme, check=False)
            return result.stdout.strip() if result.returncode == 0 else ""

        wait_for(lambda: served() == "first version", 60, "nginx to serve the first commit")
        assert pod.sh(link).stdout.strip() == f".worktrees/{first}"
        # Ready after the first sync; the metrics count it.
        pod.sh(readyz)
        assert 'git_sync_count_total{status="success"} 1.0' in pod.sh(metrics).stdout

        second = remote.commit("second version\n")
        # POST /sync answers once a sync that started after the request has ended.
        assert second in pod.sh(sync).stdout
        wait_for(lambda: served() == "second version", 30, "nginx to serve the pushed commit")
        assert pod.sh(link).stdout.strip() == f".worktrees/{second}"
        assert 'git_sync_count_total{status="success"} 2.0' in pod.sh(metrics).stdout
        stop_pod(podman, pod, "git-sync")


# --- pg-ambassador: a PostgreSQL of the test's behind the pod's DATABASES_HOST ----------------

PG_NETWORK = "podkit-e2e-pg"
PG_SERVER = "podkit-e2e-postgres"
# The stand-in's server (initdb on a tmpfs, the manifest's user and database).
PG_SCRIPT = (K8S.parent / "tests/e2e/pg-server.sh").read_text()


def pg_env(form: str) -> dict[str, str]:
    """The ambassador's env in the manifest (DATABASES_*, PGBOUNCER_*)."""
    (doc,) = [d for d in load(K8S / "pg-ambassador" / f"{form}.yaml").docs if d["kind"] == "Pod"]
    (container,) = [c for c in all_containers(doc["spec"]) if c["name"] == "pg-ambassador"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def pg_password() -> str:
    (secret,) = load(K8S / "pg-ambassador" / "secret.yaml").docs
    password = secret["stringData"]["password"]
    assert "'" not in password and "\n" not in password
    return password


@pytest.fixture
def postgres(podman: Podman, standins: None) -> Iterator[str]:
    """A PostgreSQL (the postgres stand-in) alone on an internal network: its IP."""
    env = pg_env("classic")

    def clean() -> None:
        podman.run("rm", "--force", "--time", "0", PG_SERVER, check=False)
        podman.run("network", "rm", "--force", PG_NETWORK, check=False)

    clean()
    try:
        podman.run("network", "create", "--internal", PG_NETWORK)
        podman.run(
            "run", "-d", "--name", PG_SERVER, "--network", PG_NETWORK,
            "--user", "postgres", "--read-only", "--tmpfs", "/tmp",
            "-e", f"PG_USER={env['DATABASES_USER']}", "-e", f"PG_DBNAME={env['DATABASES_DBNAME']}",
            "-e", f"PG_PASSWORD={pg_password()}",
            "postgres:16.4", "sh", "-c", PG_SCRIPT,
        )  # fmt: skip

        def ready() -> bool:
            args = ("exec", PG_SERVER, "pg_isready", "-q", "-h", "127.0.0.1")
            return podman.run(*args, check=False).returncode == 0

        wait_for(ready, 60, "PostgreSQL to accept connections")
        yield podman.out(
            "inspect", "--format",
            f'{{{{(index .NetworkSettings.Networks "{PG_NETWORK}").IPAddress}}}}', PG_SERVER,
        )  # fmt: skip
    finally:
        clean()


class Psql:
    """An interactive psql in a container of the pod, driven line by line: each `query`
    waits (with a timeout) for its own marker, so the session stays open in between."""

    def __init__(self, podman: Podman, container: str, password: str, user: str, db: str):
        self.proc = subprocess.Popen(
            [
                podman.binary, "exec", "-i", "-e", f"PGPASSWORD={password}", container,
                "stdbuf", "-oL", "psql", "-XAtq", "-h", "127.0.0.1", "-p", "5432",
                "-U", user, "-d", db,
            ],
            env=podman.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def query(self, sql: str, timeout: float = 30) -> list[str]:
        assert self.proc.stdin is not None
        self.count += 1
        marker = f"-- e2e {self.count} done --"
        self.proc.stdin.write(f"{sql.rstrip().rstrip(';')};\n\\echo '{marker}'\n")
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line == marker:
                return out
            if line is None:
                raise AssertionError(f"psql ended ({self.proc.wait(5)}): {out}")
            out.append(line)

    def close(self) -> int:
        if self.proc.stdin:
            self.proc.stdin.close()
        return self.proc.wait(30)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        series, _, rest = key.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if series == name and found == labels:
            return float(value)
    return 0.0


@pytest.mark.parametrize("form", FORMS)
def test_pg_ambassador(podman: Podman, need, postgres: str, form: str) -> None:  # type: ignore[no-untyped-def]
    """The pod's ambassador pools to a PostgreSQL of the test's (the postgres stand-in, in
    a container of its own on an internal network). The harness adds a `hostAliases` entry
    for the manifest's DATABASES_HOST (the cluster's Service name) with that container's
    IP, and mounts the Secret as a configMap (podman 4.3 cannot mount Secrets, see
    manifests.for_podman); DATABASES_*, PGBOUNCER_* and the password are the manifest's."""
    need("pg-ambassador")
    env = pg_env(form)
    host = f"{env['DATABASES_HOST']}={postgres}"
    with played(podman, "pg-ambassador", form, ("--host", host), network=PG_NETWORK) as pod:
        app_logs, scrape = check_commands("pg-ambassador", form)
        # The app's own loop: one transaction a second through localhost:5432.
        wait_for(lambda: "ok " in pod.sh(app_logs).stdout, 60, "the app's first transaction")

        def metrics() -> str:
            return pod.sh(scrape).stdout

        user, db = env["DATABASES_USER"], env["DATABASES_DBNAME"]
        session = Psql(podman, pod.container("app"), pg_password(), user, db)
        try:
            assert session.query("SELECT 6 * 7") == ["42"]
            # A session SET is replayed on whichever server the client gets next: no pin.
            session.query("SET statement_timeout = '12345ms'")
            assert session.query("SHOW statement_timeout") == ["12345ms"]
            assert metric(metrics(), "pg_ambassador_pinned_clients", reason="set") == 0
            # A session advisory lock pins the client to its backend while it holds one.
            session.query("SELECT pg_advisory_lock(7)")
            wait_for(
                lambda: (
                    metric(metrics(), "pg_ambassador_pinned_clients", reason="advisory_lock") == 1
                ),
                10,
                "the advisory lock to pin its client",
            )
            pid = session.query("SELECT pg_backend_pid()")
            assert session.query("SHOW statement_timeout") == ["12345ms"]
            assert session.query("SELECT pg_backend_pid()") == pid
            session.query("SELECT pg_advisory_unlock(7)")
            wait_for(
                lambda: (
                    metric(metrics(), "pg_ambassador_pinned_clients", reason="advisory_lock") == 0
                ),
                10,
                "the unlock to return its client to the pool",
            )
            assert session.query("SHOW statement_timeout") == ["12345ms"]
        finally:
            code = session.close()
        assert code == 0

        # Pooling: 8 clients connected at once, each running a transaction in turn, share
        # far fewer PostgreSQL connections (transaction mode: a server per transaction).
        clients = [Psql(podman, pod.container("app"), pg_password(), user, db) for _ in range(8)]
        try:
            for client in clients:
                assert client.query("SELECT 1") == ["1"]
            text = metrics()
            open_clients = metric(text, "pg_ambassador_client_connections_open")
            servers = sum(
                metric(text, "pg_ambassador_servers", database=db, user=user, state=state)
                for state in ("active", "idle", "login")
            )
            backends = podman.out(
                "exec", PG_SERVER, "psql", "-XAt", "-h", "/tmp", "-U", "postgres", "-c",
                f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'",
            )  # fmt: skip
        finally:
            codes = [client.close() for client in clients]
        assert codes == [0] * 8
        assert open_clients >= 8, text
        # The 8 clients and the app's loop ran on at most 2 servers (the app's transaction
        # may overlap one of ours), and PostgreSQL sees no more backends of the app user.
        assert 1 <= servers <= 2, text
        assert 1 <= int(backends) <= 2, backends
        # SIGTERM: the ambassador drains and exits 0; the app's loop (PID 1 of its
        # container, with a TERM trap) exits 0 at once, not after the grace period.
        podman.run("stop", "--time", "30", pod.container("pg-ambassador"), timeout=90)
        assert pod.exit_code("pg-ambassador") == 0, pod.logs("pg-ambassador")[-3000:]
        # Without the trap, podman would SIGKILL it after --time: exit 137, not 0.
        podman.run("stop", "--time", "20", pod.container("app"), timeout=60)
        assert pod.exit_code("app") == 0
