"""What the HTTP-based outputs share: one aiohttp session, auth from files, gzip, and
reading a response the same way (2xx ok; 408, 429 and 5xx retried, honouring
Retry-After; any other 4xx is a permanent error for that batch, logged with its body)."""

from __future__ import annotations

import base64
import gzip
import time
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator

from podkit.config import SecretFile
from podkit.sidecars.log_shipper.outputs.base import Output, OutputError, OutputOptions
from podkit.tls import client_context
from podkit.urls import hide_userinfo

RETRYABLE_STATUS = frozenset({408, 429})
BODY_LIMIT = 2000


class HttpOptions(OutputOptions):
    url: str = Field(description="endpoint to POST to")
    header: list[str] = Field(
        default_factory=list, description='extra request header, "Name: value" (repeatable)'
    )
    gzip: bool = Field(False, description="gzip request bodies (Content-Encoding: gzip)")
    bearer_token_file: SecretFile = Field(None, description="file with a bearer token")
    username: str | None = Field(None, description="basic auth user")
    password_file: SecretFile = Field(None, description="file with the basic auth password")
    tls_verify: bool = Field(True, description="verify the server's TLS certificate")
    ca_file: str | None = Field(None, description="CA bundle for the server's certificate")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("header")
    @classmethod
    def _check_headers(cls, value: list[str]) -> list[str]:
        for item in value:
            name, sep, _ = item.partition(":")
            if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
                raise ValueError(f'expected "Name: value", got {item!r}')
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HttpOptions:
        if self.bearer_token_file is not None and self.username is not None:
            raise ValueError("set either a bearer token file or a username, not both")
        if self.password_file is not None and self.username is None:
            raise ValueError("a password file needs a username")
        return self


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpOutput(Output):
    # The answers that are retried (and so may come again and again): 408, 429, 5xx.
    failure_reasons: ClassVar[tuple[str, ...]] = (
        "http_408", "http_429", "http_500", "http_502", "http_503", "http_504",
    )  # fmt: skip
    """Base of the HTTP outputs: `post()` sends, `check()` reads the status."""

    options: HttpOptions

    def __init__(self, options: HttpOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.session: aiohttp.ClientSession | None = None
        self.headers = self._headers()

    def _headers(self) -> dict[str, str]:
        opts = self.options
        headers = {"User-Agent": "podkit-log-shipper"}
        for item in opts.header:
            name, _, value = item.partition(":")
            headers[name.strip()] = value.strip()
        if opts.bearer_token_file is not None:
            headers["Authorization"] = f"Bearer {opts.bearer_token_file.get_secret_value()}"
        elif opts.username is not None:
            password = opts.password_file or SecretStr("")
            token = f"{opts.username}:{password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        return headers

    async def open(self) -> None:
        if self.session is not None:
            return
        opts = self.options
        ssl_context = client_context(verify=opts.tls_verify, ca_file=opts.ca_file)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=4),
            timeout=aiohttp.ClientTimeout(total=opts.request_timeout),
        )

    async def post(
        self, url: str, body: bytes, content_type: str
    ) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
        assert self.session is not None
        headers = {**self.headers, "Content-Type": content_type}
        if self.options.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read(), response.headers
        except TimeoutError:
            raise OutputError("timeout", hide_userinfo(url), retryable=True) from None
        except aiohttp.ClientError as exc:
            raise OutputError("connect", f"{hide_userinfo(url)}: {exc}", retryable=True) from None

    @staticmethod
    def check(status: int, body: bytes, headers: Any) -> None:
        """Raise OutputError unless the status says the batch was taken."""
        if 200 <= status < 300:
            return
        detail = body[:BODY_LIMIT].decode("utf-8", "replace")
        retryable = status in RETRYABLE_STATUS or status >= 500
        retry_after = parse_retry_after(headers.get("Retry-After")) if headers else None
        raise OutputError(f"http_{status}", detail, retryable=retryable, retry_after=retry_after)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
