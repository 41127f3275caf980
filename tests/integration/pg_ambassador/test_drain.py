"""pg-ambassador's drain under a pgbench load, by SIGTERM and by `podkit ctl drain`.

pgbench runs a short write transaction on 8 connections through the helper; one more
client holds a transaction open across the drain. The promises checked from the clients'
side: /readyz turns 503 at once, a new connection is answered 57P03 (the listener stays
open, as PostgreSQL's does while it shuts down; pg_isready reads it as "rejecting"), a
connection that never sent its startup packet does not hold the drain up, no transaction
fails except by being closed at its boundary with 57P01 (pgbench aborts a client only in
the first command of a transaction), every transaction pgbench counted is committed (its
per-transaction log against the rows in the table), the open transaction commits, and
the helper exits 0 within --shutdown-timeout.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from podkit.ambassadors.postgres import protocol as pq
from podkit_dev.servers import HOST, free_port, http_get, podkit_argv, wait_for
from tests.integration.pg_ambassador import kit

SHUTDOWN_TIMEOUT = 20.0
SCRIPT = """\
BEGIN;
INSERT INTO drained (client, note) VALUES (:client_id, 'pgbench');
SELECT pg_sleep(0.005);
END;
"""
ADMIN_SHUTDOWN = "terminating connection due to administrator command"
ABORTED = re.compile(r"client (\d+) (?:script \d+ )?aborted in command (\d+)[^:;]*[:;] (.*)")


def committed_per_client(pg) -> collections.Counter[int]:  # type: ignore[no-untyped-def]
    out = pg.sql("select client, count(*) from drained where note = 'pgbench' group by client")
    counts: collections.Counter[int] = collections.Counter()
    for line in out.split():
        client, n = line.split("|")
        counts[int(client)] = int(n)
    return counts


@pytest.mark.parametrize("trigger", ["sigterm", "ctl"])
@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_drain_under_pgbench_load(run_helper, pg, tmp_path: Path, protocol, trigger) -> None:
    pg.sql("create table drained (client int, note text)")
    port = free_port()
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-port", str(pg.port),
        "--client-auth", "trust", "--pool-size", "10",
        "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
    )  # fmt: skip
    dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    holder = psycopg.connect(dsn, sslmode="disable", autocommit=True)
    notices: list[str] = []  # libpq reports a FATAL read while idle as a notice
    holder.add_notice_handler(lambda diag: notices.append(diag.sqlstate or ""))
    holder.execute("begin")
    holder.execute("insert into drained values (-1, 'held across the drain')")
    # connected before the drain: one sends its startup packet during it, the other never
    # does and must not hold the drain up
    silent = socket.create_connection((HOST, port), timeout=10)
    mute = socket.create_connection((HOST, port), timeout=10)

    script = tmp_path / "script.sql"
    script.write_text(SCRIPT)
    env = {**os.environ, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    bench = subprocess.Popen(
        [kit.pg_binary("pgbench"), "-n", "-h", HOST, "-p", str(port), "-U", "postgres",
         "-c", "8", "-j", "2", "-T", "60", "-M", protocol, "-f", str(script),
         "-l", "--log-prefix", str(tmp_path / "tx"), "postgres"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        # mid-run: every pgbench client has committed a few transactions
        wait_for(lambda: len(committed_per_client(pg)) == 8
                 and min(committed_per_client(pg).values()) >= 5,
                 what="pgbench committing on all 8 connections", timeout=30)  # fmt: skip
        ctl = None
        signalled = time.monotonic()
        if trigger == "sigterm":
            helper.process.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        else:
            ctl = subprocess.Popen(
                [*podkit_argv(), "ctl", "drain", "--admin", helper.admin,
                 "--timeout", str(SHUTDOWN_TIMEOUT + 10)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        wait_for(lambda: http_get(f"{helper.admin}/readyz")[0] == 503,
                 what="/readyz 503", timeout=2)  # fmt: skip

        # a new connection is told why, whether it came in after the drain began or
        # before it (the silent socket, answered once it speaks)
        with pytest.raises(psycopg.OperationalError, match="pg-ambassador is shutting down"):
            psycopg.connect(dsn, sslmode="disable", connect_timeout=10).close()
        silent.sendall(pq.startup_message({"user": "postgres", "database": "postgres"}))
        assert b"C57P03\x00" in kit.read_to_eof(silent)
        isready = subprocess.run(
            [kit.pg_binary("pg_isready"), "-h", HOST, "-p", str(port), "-U", "postgres"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10,
        )  # fmt: skip
        assert isready.returncode == 1 and "rejecting" in isready.stdout, isready.stdout

        # pgbench's clients are all closed at a transaction boundary: the run ends long
        # before its -T
        output = bench.communicate(timeout=SHUTDOWN_TIMEOUT)[0]
        # the open transaction was left to finish: it commits, and is then closed
        holder.execute("commit")
        with pytest.raises(psycopg.OperationalError) as closed:
            holder.execute("select 1")
        assert "administrator command" in str(closed.value) or "57P01" in notices, closed.value
        code = helper.wait_exit(SHUTDOWN_TIMEOUT)
        elapsed = time.monotonic() - signalled
        assert code == 0, helper.log_text()
        assert elapsed < SHUTDOWN_TIMEOUT
        if ctl is not None:
            ctl_out = ctl.communicate(timeout=10)[0]
            assert ctl.returncode == 0, ctl_out
    finally:
        holder.close()
        silent.close()
        mute.close()
        if bench.poll() is None:
            bench.kill()
            bench.wait()

    # every client was stopped by the drain, before a transaction began: pgbench says so in
    # the first command of its script, with the 57P01 FATAL (libpq prints the FATAL as a
    # notice when it reads it while idle, then reports the closed connection)
    aborts = ABORTED.findall(output)
    assert sorted(int(a[0]) for a in aborts) == list(range(8)), output
    for _client, command, message in aborts:
        assert command == "0", output
        assert ADMIN_SHUTDOWN in message or "backend died" in message, output
    assert output.count(ADMIN_SHUTDOWN) >= 8, output
    for line in output.splitlines():
        if "FATAL" in line or "error" in line:
            assert ABORTED.search(line) or ADMIN_SHUTDOWN in line or "Run was aborted" in line, line
    assert "failed transactions: 0 " in output, output
    # what pgbench counted as done is exactly what is committed, client by client
    logged: collections.Counter[int] = collections.Counter()
    for log in tmp_path.glob("tx.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            assert fields[2] not in ("failed", "skipped"), line
            logged[int(fields[0])] += 1
    committed = committed_per_client(pg)
    assert logged == committed, output
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    assert processed is not None and int(processed.group(1)) == sum(committed.values()), output
    assert pg.sql("select count(*) from drained where client = -1").strip() == "1"
    events = [e.get("event") for e in helper.log_events()]
    assert "draining" in events and "drained" in events


def test_console_shutdown_starts_the_drain(run_helper, pg) -> None:
    """PgBouncer's `SHUTDOWN` on the admin console starts the same drain as SIGTERM: the
    command is answered, an open transaction still commits, then the helper exits 0."""
    port = free_port()
    helper = run_helper(
        "pg-ambassador", "--listen", f"{HOST}:{port}", "--server-port", str(pg.port),
        "--client-auth", "trust", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
    )  # fmt: skip
    dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    with psycopg.connect(dsn, sslmode="disable") as holder:
        notices: list[str] = []  # libpq reports a FATAL read while idle as a notice
        holder.add_notice_handler(lambda diag: notices.append(diag.sqlstate or ""))
        holder.execute("create table shut (n int)")  # a transaction is open
        done = kit.run_pg_tool("psql", "-X", "-h", HOST, "-p", str(port), "-U", "postgres",
                               "-d", "pgbouncer", "-c", "SHUTDOWN", timeout=30)  # fmt: skip
        assert "SHUTDOWN" in done.stdout, done.stderr
        wait_for(lambda: http_get(f"{helper.admin}/readyz")[0] == 503, what="/readyz 503")
        assert helper.process.alive()  # waiting for the open transaction
        holder.commit()
        with pytest.raises(psycopg.OperationalError) as closed:
            holder.execute("select 1")
        assert "administrator command" in str(closed.value) or "57P01" in notices, closed.value
    assert helper.wait_exit(SHUTDOWN_TIMEOUT) == 0, helper.log_text()
    assert pg.sql("select count(*) from shut").strip() == "0"  # the table was committed
    requested = [e for e in helper.log_events() if e.get("event") == "drain_requested"]
    assert [e.get("source") for e in requested] == ["console"]
