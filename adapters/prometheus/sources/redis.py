"""Redis `INFO`, through redis-py's asyncio client (one pooled connection per target)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from podkit.adapters.prometheus.api import Source, SourceError, SourceSpec
from podkit.adapters.prometheus.model import Family
from podkit.adapters.prometheus.settings import secret_text
from podkit.config import SecretFile

_SECRET_FILE: TypeAdapter[Any] = TypeAdapter(SecretFile)

# (INFO field, metric suffix, type, help)
FIELDS: list[tuple[str, str, str, str]] = [
    ("uptime_in_seconds", "uptime_seconds", "gauge", "Seconds since the server started"),
    ("connected_clients", "connected_clients", "gauge", "Client connections"),
    ("blocked_clients", "blocked_clients", "gauge", "Clients blocked in a blocking call"),
    ("used_memory", "memory_used_bytes", "gauge", "Memory allocated by Redis"),
    ("used_memory_rss", "memory_used_rss_bytes", "gauge", "Resident memory of the process"),
    ("maxmemory", "memory_max_bytes", "gauge", "The maxmemory setting"),
    ("connected_slaves", "connected_replicas", "gauge", "Connected replicas"),
    ("instantaneous_ops_per_sec", "instantaneous_ops_per_second", "gauge", "Commands/s now"),
    ("total_connections_received", "connections_received_total", "counter",
     "Connections accepted"),
    ("total_commands_processed", "commands_processed_total", "counter", "Commands processed"),
    ("rejected_connections", "rejected_connections_total", "counter",
     "Connections rejected by maxclients"),
    ("expired_keys", "expired_keys_total", "counter", "Keys expired"),
    ("evicted_keys", "evicted_keys_total", "counter", "Keys evicted by maxmemory"),
    ("keyspace_hits", "keyspace_hits_total", "counter", "Successful key lookups"),
    ("keyspace_misses", "keyspace_misses_total", "counter", "Failed key lookups"),
    ("total_net_input_bytes", "net_input_bytes_total", "counter", "Bytes read from the network"),
    ("total_net_output_bytes", "net_output_bytes_total", "counter", "Bytes written"),
]  # fmt: skip


class RedisSource(Source):
    default_name = "redis"
    allowed_options = frozenset({"password", "password_file"})

    def __init__(self, spec: SourceSpec, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec, ctx)
        for target in self.targets:
            if not target.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"{target!r}: expected redis://host:port, rediss:// or unix://")
        self.password = secret_text(spec.options.get("password"))
        if self.password is None and spec.options.get("password_file"):
            # The same reading (and trailing-newline rule) as the --*-password-file flags.
            try:
                secret = _SECRET_FILE.validate_python(str(spec.options["password_file"]))
            except ValidationError as exc:
                reason = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"password_file: {reason}") from None
            self.password = secret_text(secret)
        self._clients: dict[str, Any] = {}

    def _client(self, target: str) -> Any:
        client = self._clients.get(target)
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(
                target,
                password=self.password,
                socket_timeout=self.ctx.timeout,
                socket_connect_timeout=self.ctx.timeout,
                retry_on_timeout=False,
                retry=None,
                max_connections=4,
            )
            self._clients[target] = client
        return client

    async def fetch(self, target: str) -> dict[str, Any]:
        import redis.exceptions

        try:
            info: dict[str, Any] = await self._client(target).info("all")
            return info
        except redis.exceptions.AuthenticationError:
            raise SourceError("authentication failed (check --redis-password-file)") from None
        except redis.exceptions.ConnectionError as exc:
            raise SourceError(f"cannot connect: {exc}") from None
        except redis.exceptions.RedisError as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from None

    def collect(self, target: str, data: dict[str, Any]) -> Iterable[Family]:
        if "redis_version" not in data:
            raise SourceError("INFO answer without redis_version: not a Redis server?")
        p = self.name
        out: list[Family] = []
        for key, suffix, kind, help_text in FIELDS:
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(Family(f"{p}_{suffix}", kind, help_text).add(value))  # type: ignore[arg-type]
        info = {
            "role": str(data.get("role", "")),
            "redis_version": str(data.get("redis_version", "")),
            "redis_mode": str(data.get("redis_mode", "")),
        }
        out.append(Family(f"{p}_instance_info", "gauge", "Redis role and version (always 1)")
                   .add(1, info))  # fmt: skip
        keys = Family(f"{p}_db_keys", "gauge", "Keys per database")
        expiring = Family(f"{p}_db_keys_expiring", "gauge", "Keys with an expiry per database")
        for name, value in data.items():
            if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict):
                keys.add(value.get("keys", 0), {"db": name})
                expiring.add(value.get("expires", 0), {"db": name})
        if keys.samples:
            out.extend((keys, expiring))
        return out

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
