"""pgbouncer.ini as `podkit pg-ambassador --pgbouncer-config` loads it (the CLI's
load_settings, without a process per case): PgBouncer 1.25's syntax and defaults, the
routing it gives, and open-ended input that must end in a parse or one clear line, never a
traceback. The servers themselves: tests/integration/pg_ambassador/test_pgbouncer_ini.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podkit.ambassadors.postgres.routing import target_for
from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit.config import ConfigError, Notice, load_settings


def load(path: Path, *argv: str) -> tuple[PgAmbassadorSettings, list[Notice]]:
    notices: list[Notice] = []
    loaded = load_settings(
        PgAmbassadorSettings, ["--pgbouncer-config", str(path), *argv], {},
        prog="podkit pg-ambassador", admin_default="127.0.0.1:9705", notices=notices,
    )  # fmt: skip
    return loaded, notices


def write(tmp_path: Path, text: str, name: str = "pgbouncer.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_syntax_as_pgbouncer_reads_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  ; a comment\n# another\r\n"
        "[databases]\n"
        "'my db' = host=db1 dbname='it''s here' user=owner password='p w'\n"
        '"odd""name" = host=db2 port=6000   pool_size=3 reserve_pool=2\n'
        "plain.name-1 =host=db3\n"
        "[users]\n"
        "owner = pool_mode=Session pool_size=4 query_timeout=30\n"
        "[pgbouncer] auth_type = TRUST\n"  # PgBouncer reads a key after ']' on the line
        "listen_addr = *\n"
        "default_pool_size = 5\n"
        "default_pool_size = 7\n"  # the last one counts
        "server_idle_timeout = 12.5\n"
        "admin_users = a, b ,c\n",
    )
    loaded, _ = load(path)
    assert loaded.listen == "0.0.0.0:6432"  # PgBouncer's port when the file names none
    assert (loaded.client_auth, loaded.pool_size, loaded.server_idle_timeout) == ("trust", 7, 12.5)
    assert loaded.admin_users == ["a", "b", "c"]
    assert loaded.pool_mode == "session"  # PgBouncer's default, not podkit's
    mine = target_for(loaded, "my db", "someone")
    assert mine is not None
    assert (mine.host, mine.port, mine.dbname, mine.user, mine.password) == (
        "db1",
        5432,
        "it's here",
        "owner",
        "p w",
    )
    # [users] owner wins over the database's and the global settings
    assert (mine.pool_mode, mine.pool_size, mine.query_timeout) == ("session", 4, 30)
    odd = target_for(loaded, 'odd"name', "app")
    assert odd is not None
    assert (odd.port, odd.dbname, odd.user, odd.pool_size, odd.reserve_pool_size) == (
        6000,
        'odd"name',
        "app",
        3,
        2,
    )
    assert target_for(loaded, "elsewhere", "app") is None  # no '*'


def test_star_is_the_fallback_and_podkit_flags_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[databases]\n* = host=shared port=5433\n"
        "[pgbouncer]\nauth_type = trust\npool_mode = transaction\ndefault_pool_size = 9\n",
    )
    loaded, notices = load(path, "--pool-size", "3")
    target = target_for(loaded, "anything", "app")
    assert target is not None
    assert (target.host, target.port, target.dbname, target.pool_size) == (
        "shared",
        5433,
        "anything",
        3,
    )
    assert target.pool_mode == "transaction"
    [notice] = [n for n in notices if n.event == "pgbouncer_config"]
    assert notice.fields["databases"] == ["*"]


def test_harmless_keys_are_listed_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[pgbouncer]\nauth_type = trust\nlogfile = /var/log/x.log\npidfile = /run/x.pid\n"
        "unix_socket_dir = /tmp\nuser = postgres\ntcp_keepalive = 1\nverbose = 2\n"
        "max_prepared_statements = 0\ntrack_extra_parameters = IntervalStyle\n",
    )
    _, notices = load(path)
    [notice] = [n for n in notices if n.event == "pgbouncer_config"]
    assert set(notice.fields["ignored"]) == {
        "logfile", "pidfile", "unix_socket_dir", "user", "tcp_keepalive", "verbose",
        "max_prepared_statements", "track_extra_parameters",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("x = host=h password=Sekrit-77 pool_size=0", "pool_size"),
        ("x = junk password=Sekrit-77", "'junk'"),
        ("x host=h password=Sekrit-77", "expected '=' after 'x'"),
        ("x = password='Sekrit-77", "unterminated quote"),
        ("$x = password=Sekrit-77", "cannot start with '$'"),
    ],
)
def test_a_password_in_a_connection_string_is_never_shown(
    tmp_path: Path, line: str, named: str
) -> None:
    path = write(tmp_path, f"[databases]\n{line}\n[pgbouncer]\nauth_type = trust\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert f"{path}:2" in str(caught.value) and named in str(caught.value)
    assert "Sekrit-77" not in str(caught.value)


def test_include_loops_end_in_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pgbouncer.ini"
    path.write_text(f"[pgbouncer]\n%include {path}\n")
    with pytest.raises(ConfigError, match=r"nested more than 10 deep"):
        load(path)


# --- open-ended input -------------------------------------------------------------------

KEYS = ["listen_addr", "listen_port", "auth_type", "pool_mode", "default_pool_size",
        "min_pool_size", "reserve_pool_size", "max_client_conn", "server_lifetime",
        "server_idle_timeout", "query_wait_timeout", "idle_transaction_timeout",
        "client_tls_sslmode", "server_tls_sslmode", "max_prepared_statements",
        "ignore_startup_parameters", "admin_users", "stats_users", "auth_file", "logfile",
        "unix_socket_dir", "max_db_connections", "nonsense"]  # fmt: skip
CONN_KEYS = ["host", "port", "dbname", "user", "password", "pool_size", "pool_mode",
             "connect_query", "reserve_pool", "server_lifetime", "auth_user", "timezone",
             "query_timeout", "max_user_connections", "x"]  # fmt: skip
words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
values = st.one_of(
    words,
    st.sampled_from(["0", "1", "-1", "6432", "70000", "session", "statement", "trust",
                     "md5", "*", "", "1.5", "0x10", "a,b", "/tmp", "'q''x'", "'open"]),
)  # fmt: skip
conn = st.lists(
    st.tuples(st.sampled_from(CONN_KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    max_size=4,
).map(" ".join)
line = st.one_of(
    st.sampled_from(["[pgbouncer]", "[databases]", "[users]", "[peers]", "[nope]", "[open",
                     "; c", "# c", "", "=", "%include", "%include missing.ini",
                     "%include pgbouncer.ini"]),
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.tuples(st.sampled_from(["app", "*", "'q d'", '"x""y"', "pgbouncer"]), conn).map(
        lambda kv: f"{kv[0]} = {kv[1]}"
    ),
    words,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=12), st.booleans())
def test_any_file_is_a_parse_or_one_clear_line(lines: list[str], crlf: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pgbouncer.ini"
        path.write_text(("\r\n" if crlf else "\n").join(lines), encoding="utf-8")
        cwd = os.getcwd()
        os.chdir(tmp)  # a relative %include resolves here, as PgBouncer's would
        try:
            loaded, _ = load(path)
        except ConfigError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message
            # it names the file (as an %include wrote it), or the setting
            assert path.name in message or message.startswith(("invalid setting", "unknown"))
            return
        finally:
            os.chdir(cwd)
        for name in loaded.databases:
            target_for(loaded, name, "app")  # every entry gives a pool target


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_parse_or_one_clear_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pgbouncer.ini"
        path.write_bytes(b"[pgbouncer]\nauth_type = trust\n" + data)
        try:
            load(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)


def test_databases_and_users_are_podkit_settings_too() -> None:
    """The routing pgbouncer.ini gives, in podkit's own terms (flag, env or --config)."""
    loaded = load_settings(
        PgAmbassadorSettings,
        ["--client-auth", "trust", "--databases",
         '{"app": {"host": "db1", "port": 6000, "user": "owner"}, "*": {"host": "db2"}}'],
        {"PODKIT_USERS": '{"owner": {"pool_size": 3}}'},
        prog="podkit pg-ambassador", admin_default="127.0.0.1:9705",
    )  # fmt: skip
    app = target_for(loaded, "app", "someone")
    other = target_for(loaded, "other", "someone")
    assert app is not None and other is not None
    assert (app.host, app.port, app.user, app.forced, app.pool_size) == (
        "db1",
        6000,
        "owner",
        True,
        3,
    )
    assert (other.host, other.port, other.dbname, other.user, other.forced) == (
        "db2",
        5432,
        "other",
        "someone",
        False,
    )
    with pytest.raises(ConfigError, match="'pgbouncer' is the admin console's"):
        load_settings(
            PgAmbassadorSettings, ["--client-auth", "trust", "--databases", '{"pgbouncer": {}}'],
            {}, prog="podkit pg-ambassador", admin_default="127.0.0.1:9705",
        )  # fmt: skip
