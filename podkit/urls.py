"""URLs as they may be shown: in logs, errors, metric labels. Credentials never are."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def hide_userinfo(url: str) -> str:
    """The URL without `user:password@`: a password in a URL never leaves the process."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
