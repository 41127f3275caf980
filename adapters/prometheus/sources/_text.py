"""Small helpers the text-format sources share."""

from __future__ import annotations

from podkit.adapters.prometheus.api import Source, SourceContext, SourceError, SourceSpec
from podkit.adapters.prometheus.fetch import check_uri


class HttpSource(Source):
    """A source whose targets are URLs (http, https, unix:) read with the shared client."""

    def __init__(self, spec: SourceSpec, ctx: SourceContext) -> None:
        super().__init__(spec, ctx)
        for target in self.targets:
            check_uri(target)

    async def fetch(self, target: str) -> bytes:
        return await self.ctx.http.get(target)


def decode(body: bytes, what: str) -> str:
    """Body as text; an HTML page (an error page, a login page) is named as such."""
    text = body.decode("utf-8", errors="replace")
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")):
        raise SourceError(f"got an HTML page, not {what} (wrong URL, or an error page?)")
    if not text.strip():
        raise SourceError(f"empty body, not {what}")
    return text


def number(text: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SourceError(f"field {field!r} is not a number: {text[:40]!r}") from None
    if value != value:  # NaN is never a valid stats value here
        raise SourceError(f"field {field!r} is not a number: {text[:40]!r}")
    return value
