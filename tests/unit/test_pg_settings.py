"""pg-ambassador's settings as the CLI loads them: the pgbouncer images' env ranks as env
(below PODKIT_* and flags, above the --config file), and what is logged or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from podkit.ambassadors.postgres.settings import PgAmbassadorSettings
from podkit.config import ConfigError, Notice, load_settings


def load(
    env: dict[str, str], *argv: str, notices: list[Notice] | None = None
) -> PgAmbassadorSettings:
    return load_settings(
        PgAmbassadorSettings, ["--client-auth", "trust", *argv], env,
        prog="podkit pg-ambassador", admin_default="127.0.0.1:9705", notices=notices,
    )  # fmt: skip


def test_listen_from_the_pgbouncer_env_and_who_wins(tmp_path: Path) -> None:
    assert load({}).listen == "127.0.0.1:5432"
    assert load({"PGBOUNCER_LISTEN_PORT": "6432"}).listen == "127.0.0.1:6432"
    assert load({"PGBOUNCER_LISTEN_ADDR": "*"}).listen == "0.0.0.0:5432"
    assert load({"PGBOUNCER_LISTEN_ADDR": "::1", "PGBOUNCER_LISTEN_PORT": "7"}).listen == "[::1]:7"
    assert load({"PGBOUNCER_PORT": "6433", "PGBOUNCER_LISTEN_ADDRESS": "0.0.0.0"}).listen == (
        "0.0.0.0:6433"
    )
    config = tmp_path / "podkit.yaml"
    config.write_text("listen: 127.0.0.1:1111\n")
    assert load({"PGBOUNCER_LISTEN_PORT": "6432"}, "--config", str(config)).listen == (
        "127.0.0.1:6432"
    )
    both = {"PGBOUNCER_LISTEN_PORT": "6432", "PODKIT_LISTEN": "127.0.0.1:2222"}
    assert load(both).listen == "127.0.0.1:2222"
    assert load(both, "--listen", "127.0.0.1:3333").listen == "127.0.0.1:3333"


def test_auth_type_names_and_aliases() -> None:
    for pgbouncer, ours in [("scram-sha-256", "scram"), ("md5", "md5"), ("trust", "trust"),
                            ("any", "trust")]:  # fmt: skip
        settings = load_settings(
            PgAmbassadorSettings, [], {"PGBOUNCER_AUTH_TYPE": pgbouncer, "DATABASES_PASSWORD": "x"},
            prog="podkit pg-ambassador", admin_default="127.0.0.1:9705",
        )  # fmt: skip
        assert settings.client_auth == ours
    settings = load({"DATABASES_POOL_SIZE": "7", "PGBOUNCER_DEFAULT_POOL_SIZE": "9",
                     "PGBOUNCER_QUERY_TIMEOUT": "30", "PGBOUNCER_ADMIN_USERS": "a, b"})  # fmt: skip
    assert (settings.pool_size, settings.query_timeout, settings.admin_users) == (
        7,
        30.0,
        ["a", "b"],
    )
    assert load({"DATABASES_PASSWORD": "s3cret"}).password is not None


def test_unsupported_names_are_noticed_without_their_values() -> None:
    notices: list[Notice] = []
    load({"PGBOUNCER_LOGFILE": "/var/log/x", "DATABASES_CLIENT_SIDE_DBNAME": "app",
          "PGBOUNCER_LISTEN_PORT": "6432", "OTHER": "1"}, notices=notices)  # fmt: skip
    assert [(n.event, n.fields["name"]) for n in notices] == [
        ("unsupported_setting", "DATABASES_CLIENT_SIDE_DBNAME"),
        ("unsupported_setting", "PGBOUNCER_LOGFILE"),
    ]
    assert "/var/log/x" not in repr(notices)


def test_a_refused_userlist_is_not_shown() -> None:
    with pytest.raises(ConfigError, match="PGBOUNCER_USERLIST") as refused:
        load({"PGBOUNCER_USERLIST": '"app" "s3cret"'})
    assert "s3cret" not in str(refused.value)
