"""`postgres`: COPY each batch into a table, idempotently.

Rows go by COPY into a temporary table, then `INSERT ... ON CONFLICT (id) DO NOTHING`
into the target in the same transaction: the record id (file identity + offset) is the
primary key, so a batch resent after a crash or a lost answer adds no duplicate rows.

    CREATE TABLE logs (id text PRIMARY KEY, ingest_time timestamptz, path text,
                       file_offset bigint, message text, record jsonb)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import Field, field_validator

from podkit.config import SecretFile
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions, SendResult
from podkit.sidecars.log_shipper.records import OutBatch

COLUMNS = ("id", "ingest_time", "path", "file_offset", "message", "record")
# SQLSTATE classes that mean "not now": connection, resources, operator, transaction.
TRANSIENT_CLASSES = ("08", "40", "53", "55", "57", "58")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class PostgresOptions(OutputOptions):
    dsn: str = Field(description="postgresql:// connection URI")
    table: str = Field("podkit_logs", description="target table, optionally schema.table")
    password_file: SecretFile = Field(None, description="file with the database password")
    create_table: bool = Field(True, description="create the table if it does not exist")

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError("expected an identifier such as logs or app.logs")
        return value

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URI")
        return value


def _clean(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class PostgresOutput(Output):
    Options = PostgresOptions
    options: PostgresOptions
    idempotent = True

    def __init__(self, options: PostgresOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.conn: Any = None
        self.staging = "podkit_staging"

    async def open(self) -> None:
        import asyncpg

        if self.conn is not None and not self.conn.is_closed():
            return
        opts = self.options
        password = opts.password_file.get_secret_value() if opts.password_file else None
        try:
            self.conn = await asyncpg.connect(
                opts.dsn, password=password, timeout=min(opts.request_timeout, 10.0)
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._error(exc) from None
        if opts.create_table:
            await self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {opts.table} (id text PRIMARY KEY, "
                "ingest_time timestamptz NOT NULL, path text NOT NULL, "
                "file_offset bigint NOT NULL, message text NOT NULL, record jsonb NOT NULL)"
            )
        await self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.staging} "
            f"(LIKE {opts.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    def rows(self, batch: OutBatch) -> list[tuple[Any, ...]]:
        rows = []
        for part in batch.slices:
            chunk = part.chunk
            ingest = datetime.fromtimestamp(chunk.ingest_ns / 1e9, UTC)
            path = _clean(chunk.path)
            for i in range(part.start, part.stop):
                message = chunk.messages[i]
                if "\x00" in message:
                    record = chunk.record(i)
                    record["message"] = _clean(message)
                    text = orjson.dumps(record, default=str).decode()
                else:
                    text = chunk.record_bytes(i).decode()
                rows.append(
                    (chunk.record_id(i), ingest, path, chunk.offsets[i],
                     _clean(message), text)
                )  # fmt: skip
        return rows

    async def send(self, batch: OutBatch) -> SendResult | None:
        import asyncpg

        rows = self.rows(batch)
        table = self.options.table
        try:
            async with self.conn.transaction():
                await self.conn.copy_records_to_table(self.staging, records=rows, columns=COLUMNS)
                status = await self.conn.execute(
                    f"INSERT INTO {table} SELECT * FROM {self.staging} ON CONFLICT (id) DO NOTHING"
                )
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a connection left mid-operation by a failure
        ) as exc:
            error = self._error(exc)
            if error.retryable:
                await self._reset()
            raise error from None
        inserted = int(status.rsplit(" ", 1)[-1])
        duplicates = len(rows) - inserted
        return SendResult(duplicates=duplicates) if duplicates else None

    def _error(self, exc: Exception) -> OutputError:
        state = getattr(exc, "sqlstate", None)
        if state is None:  # connection-level: refused, reset, closed
            return OutputError("connect", f"{type(exc).__name__}: {exc}", retryable=True)
        return OutputError(f"sqlstate_{state}", str(exc), retryable=state[:2] in TRANSIENT_CLASSES)

    async def _reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
