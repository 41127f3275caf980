"""Settings of `podkit redis-ambassador`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from podkit.config import Duration, HelperSettings, HostPort, SecretFile


def _split_commas(value: Any) -> Any:
    # `--sentinels a:1,b:2` and repeated flags both work: split every item on commas.
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


class AmbassadorSettings(HelperSettings):
    sentinels: Annotated[list[HostPort], BeforeValidator(_split_commas)] = Field(
        description="Sentinel addresses, HOST:PORT,... (every one is asked)",
        min_length=1,
        json_schema_extra={"metavar": "HOST:PORT,..."},
    )
    master_name: str = Field("mymaster", min_length=1, description="the master's Sentinel name")
    quorum: int | None = Field(
        None,
        ge=1,
        description="Sentinels that must agree on the master (default: a majority of the "
        "reachable ones)",
    )
    listen: HostPort = Field(
        "127.0.0.1:6379",
        description="address the application connects to",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    poll_interval: Duration = Field(
        1.0, gt=0, description="how often every Sentinel is asked and the master's ROLE checked"
    )
    connect_wait: Duration = Field(
        5.0, description="how long a new connection waits for a master while none is known"
    )
    connect_timeout: Duration = Field(2.0, gt=0, description="timeout of a connect to the master")
    failover_hold_timeout: Duration | None = Field(
        None,
        gt=0,
        description="longest a failover holds traffic without news from Sentinel (a lost "
        "abort event); default: the Sentinels' failover-timeout",
    )
    max_client_conn: int = Field(
        10000,
        ge=1,
        description="client connections open at once; more are refused with "
        "-ERR max number of clients reached",
    )
    client_idle_timeout: Duration = Field(
        0.0,
        description="close a client connection after this long without a byte either way "
        "(0: never; blocking commands and subscribers look idle)",
    )
    sentinel_timeout: Duration = Field(
        0.5, gt=0, description="timeout of one Sentinel query or ROLE check"
    )
    sentinel_username: str | None = Field(None, description="ACL user for the Sentinels")
    sentinel_password_file: SecretFile = Field(None, description="file with the Sentinel password")
    redis_username: str | None = Field(
        None, description="ACL user for the ROLE check on Redis (clients AUTH themselves)"
    )
    redis_password_file: SecretFile = Field(
        None, description="file with the Redis password used for the ROLE check"
    )
    redis_tls: bool = Field(False, description="connect to Redis with TLS")
    sentinel_tls: bool = Field(False, description="connect to the Sentinels with TLS")
    tls_ca_file: str | None = Field(
        None, description="CA bundle that signs the servers' certificates (default: system CAs)"
    )
    tls_cert_file: str | None = Field(None, description="client certificate (PEM) for TLS")
    tls_key_file: str | None = Field(None, description="key of --tls-cert-file (PEM)")
    tls_verify_hostname: bool = Field(
        True, description="check that the server certificate names the address connected to"
    )

    @field_validator("quorum")
    @classmethod
    def _quorum_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        sentinels = info.data.get("sentinels") or []
        if value is not None and sentinels and value > len(sentinels):
            raise ValueError(f"more than the {len(sentinels)} Sentinels given")
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("tls_key_file")
    @classmethod
    def _cert_and_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if bool(value) != bool(info.data.get("tls_cert_file")):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        return value
