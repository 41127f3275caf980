"""Settings of `podkit stats-exporter`: the Go exporter's web flags, and the sources."""

from __future__ import annotations

import ssl
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from podkit.adapters.prometheus.api import SourceSpec, check_label_name
from podkit.adapters.prometheus.loader import build_source, check_context
from podkit.config import ByteSize, Duration, HelperSettings, HostPort, SecretFile
from podkit.naming import Alias

DEFAULT_NGINX_URI = "http://127.0.0.1:8080/stub_status"
# Source type -> the flag (field) that lists its targets.
FLAG_SOURCES = {
    "nginx": "nginx_scrape_uri",
    "apache": "apache_scrape_uri",
    "haproxy": "haproxy_scrape_uri",
    "redis": "redis_addr",
}


def parse_const_labels(text: str) -> dict[str, str]:
    """`a=1,b=2` -> {"a": "1", "b": "2"} (the Go exporter's --prometheus.const-labels)."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not NAME=VALUE")
        labels[check_label_name(key.strip())] = value.strip()
    return labels


class ExporterSettings(HelperSettings):
    web_listen_address: Annotated[
        HostPort,
        Alias(flags=("-web.listen-address", "--web.listen-address"), env=("LISTEN_ADDRESS",)),
    ] = Field(
        ":9113",
        description="address of the metrics listener (landing page at /)",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    web_telemetry_path: Annotated[
        str, Alias(flags=("-web.telemetry-path", "--web.telemetry-path"), env=("TELEMETRY_PATH",))
    ] = Field("/metrics", description="path of the metrics on the listener")
    timeout: Annotated[
        Duration, Alias(flags=("-nginx.timeout", "--nginx.timeout"), env=("TIMEOUT",))
    ] = Field(5.0, gt=0, description="longest a scrape waits for any target")
    naming: Literal["compat", "strict"] = Field(
        "strict",
        description="nginx metric names: strict (promtool-clean, counters end in _total) or "
        "compat (nginx-prometheus-exporter's exact names)",
    )
    nginx_scrape_uri: Annotated[
        list[str], Alias(flags=("-nginx.scrape-uri", "--nginx.scrape-uri"), env=("SCRAPE_URI",))
    ] = Field(
        default_factory=list,
        description="nginx stub_status: http(s)://host:port/stub_status or "
        f"unix:/path.sock:/stub_status (default {DEFAULT_NGINX_URI} when no source is set)",
        json_schema_extra={"metavar": "URI"},
    )
    apache_scrape_uri: list[str] = Field(
        default_factory=list,
        description="Apache mod_status: http(s)://host/server-status?auto",
        json_schema_extra={"metavar": "URI"},
    )
    haproxy_scrape_uri: list[str] = Field(
        default_factory=list,
        description="HAProxy CSV stats: http(s)://host/stats;csv or unix:/path/to/stats.sock",
        json_schema_extra={"metavar": "URI"},
    )
    redis_addr: list[str] = Field(
        default_factory=list,
        description="Redis INFO: redis://host:port, rediss://..., or unix:///path.sock",
        json_schema_extra={"metavar": "URL"},
    )
    redis_password_file: SecretFile = Field(None, description="file with the Redis password")
    const_labels: Annotated[
        str,
        Alias(
            flags=(
                "-prometheus.const-labels",
                "--prometheus.const-labels",
                "--prometheus.const-label",
            ),
            env=("CONST_LABELS",),
        ),
    ] = Field(
        "",
        description="labels on every series: name=value,name=value",
        json_schema_extra={"metavar": "LABELS"},
    )
    max_body_size: ByteSize = Field(
        1024 * 1024, ge=256, description="largest stats answer read from a target"
    )
    ssl_verify: Annotated[
        bool, Alias(flags=("-nginx.ssl-verify", "--nginx.ssl-verify"), env=("SSL_VERIFY",))
    ] = Field(True, description="verify the certificates of https targets")
    ssl_ca_cert: Annotated[
        str, Alias(flags=("-nginx.ssl-ca-cert", "--nginx.ssl-ca-cert"), env=("SSL_CA_CERT",))
    ] = Field("", description="CA bundle (PEM) for https targets")
    sources: list[SourceSpec] = Field(
        default_factory=list,
        description="YAML only: more sources (generic regex/key-value, or plugins)",
    )

    @field_validator("web_telemetry_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError("expected a path such as /metrics (not /, the landing page)")
        return value

    @field_validator("ssl_ca_cert")
    @classmethod
    def _ca(cls, value: str) -> str:
        if value:
            try:
                ssl.create_default_context(cafile=value)
            except FileNotFoundError:
                raise ValueError(f"{value} does not exist") from None
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"{value} is not a PEM CA bundle: {exc}") from None
        return value

    @field_validator("const_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        parse_const_labels(value)
        return value

    @field_validator("nginx_scrape_uri", "apache_scrape_uri", "haproxy_scrape_uri", "redis_addr")
    @classmethod
    def _targets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value:
            kind = (info.field_name or "").split("_", 1)[0]
            build_source(SourceSpec(type=kind, targets=value), check_context())
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[SourceSpec], info: ValidationInfo) -> list[SourceSpec]:
        # The flag shortcuts (validated before this field) name their sources by type.
        names = {kind for kind, field in FLAG_SOURCES.items() if info.data.get(field)}
        for index, spec in enumerate(value):
            source = build_source(spec, check_context(), f"sources[{index}] ({spec.type}): ")
            if source.name in names:
                raise ValueError(
                    f"sources[{index}]: another source is already named {source.name!r} "
                    "(metric prefix); give this one another name:"
                )
            names.add(source.name)
        return value

    def source_specs(self) -> list[SourceSpec]:
        """Flag shortcuts first, then the YAML list; nginx on :8080 when nothing is set."""
        specs: list[SourceSpec] = []
        flags: list[tuple[str, list[str], dict[str, Any]]] = [
            ("nginx", self.nginx_scrape_uri, {}),
            ("apache", self.apache_scrape_uri, {}),
            ("haproxy", self.haproxy_scrape_uri, {}),
            ("redis", self.redis_addr, {"password": self.redis_password_file}),
        ]
        for kind, targets, options in flags:
            if targets:
                extra = {k: v for k, v in options.items() if v is not None}
                specs.append(SourceSpec(type=kind, targets=targets, **extra))
        specs.extend(self.sources)
        if not specs:
            specs.append(SourceSpec(type="nginx", targets=[DEFAULT_NGINX_URI]))
        return specs


def secret_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
