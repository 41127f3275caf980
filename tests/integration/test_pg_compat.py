"""pg-ambassador against what client libraries' own test suites check (found by running
psycopg 3's suite through it): notification pids, and statements shared between clients
that a rolled-back transaction or a DROP made stale."""

from __future__ import annotations

import psycopg
import pytest

INSERT = "INSERT INTO preptable (bar) VALUES (%s::prepenum[])"


def create(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TYPE prepenum AS ENUM ('foo', 'bar', 'baz')")
    conn.execute("CREATE TABLE preptable(id integer, bar prepenum[])")


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_notification_pid_is_the_backend_pid_the_notifier_was_given(
    ambassador, pool_mode: str
) -> None:
    """`notify.pid == conn.info.backend_pid` tells a client its own notifications apart."""
    amb = ambassador(pool_mode=pool_mode, pool_size=4)
    with (
        psycopg.connect(amb.dsn(), autocommit=True) as listener,
        psycopg.connect(amb.dsn(), autocommit=True) as notifier,
    ):
        listener.execute("LISTEN chan")
        notifier.execute("NOTIFY chan, 'other'")
        listener.execute("NOTIFY chan, 'self'")
        got = {n.payload: n.pid for n in listener.notifies(timeout=10, stop_after=2)}
        assert got == {
            "other": notifier.info.backend_pid,
            "self": listener.info.backend_pid,
        }
        assert notifier.info.backend_pid != listener.info.backend_pid


def test_statement_prepared_in_a_rolled_back_transaction_is_not_given_to_the_next(
    ambassador,
) -> None:
    """A client leaves mid-transaction after preparing a statement that names a type it
    created there: the next client, on the same server, creates the type again and runs
    the same text. Handed the server's old statement it would get `cache lookup failed
    for type`; on a fresh connection to PostgreSQL it works."""
    amb = ambassador(pool_mode="transaction", pool_size=1)
    first = psycopg.connect(amb.dsn(), prepare_threshold=0)
    create(first)
    first.execute(INSERT, [["foo"]])
    first.close()  # in a transaction: rolled back by the ambassador

    with psycopg.connect(amb.dsn(), prepare_threshold=0) as second:
        create(second)
        second.execute(INSERT, [["bar"]])
        assert second.execute("SELECT bar::text FROM preptable").fetchall() == [("{bar}",)]


def test_deallocate_all_after_drop_reaches_the_other_servers_of_the_pool(ambassador) -> None:
    """psycopg says DEALLOCATE ALL after a DROP (the object may be created again); it runs
    on whichever server the client holds then. The server that prepared the statement
    must not hand out its copy, which names the dropped type, either."""
    amb = ambassador(pool_mode="transaction", pool_size=2)
    with (
        psycopg.connect(amb.dsn(), prepare_threshold=0, autocommit=True) as conn,
        psycopg.connect(amb.dsn()) as blocker,
    ):
        create(conn)
        with conn.transaction():
            prepared_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["foo"]])
        held = blocker.execute("SELECT pg_backend_pid()").fetchone()  # stays in a transaction
        conn.execute("DROP TABLE preptable")
        conn.execute("DROP TYPE prepenum")  # then psycopg sends DEALLOCATE ALL
        blocker.commit()
        create(conn)
        with conn.transaction():
            now_on = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute(INSERT, [["bar"]])
        # the precondition (idle servers are reused last in, first out): the DROPs ran on
        # the other server, and the INSERT is back on the one that prepared it
        assert held == prepared_on == now_on
        assert conn.execute("SELECT bar::text FROM preptable").fetchall() == [("{bar}",)]
