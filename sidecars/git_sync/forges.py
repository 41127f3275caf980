"""POST /webhook: a forge (GitHub, GitLab, Gitea/Forgejo) says a ref moved; sync now.

Forges authenticate a hook with a secret shared when the hook is set up, each in its own
way: GitHub signs the raw body (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`), Gitea
and Forgejo too (`X-Gitea-Signature` / `X-Forgejo-Signature: <hex>`), GitLab sends the
secret itself (`X-Gitlab-Token`). Every comparison is constant-time (hmac.compare_digest
on bytes, so any header value compares). Gitea also sends GitHub's and Gogs' event
headers, so Gitea's own header is looked at first.

What a request costs is bounded before any git runs: a token bucket takes
`--webhook-rate` requests per second over a burst of `--webhook-burst` (429 beyond), the
HTTP server reads at most `--webhook-max-body` bytes (413 beyond), and a verified push
only wakes the sync loop: any number of hooks during one sync cause at most one more.
Only a push to the synced ref does even that; one whose `after` is already published
answers 200 at once. Every answer is one line of JSON and is counted in
`git_sync_webhook_requests_total{forge,result}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from podkit.admin import json_response
from podkit.sidecars.git_sync.settings import read_secret

if TYPE_CHECKING:
    from podkit.httpserver import Request, Response
    from podkit.logs import EventLogger

FORGES = ("github", "gitlab", "gitea", "unknown")
# result -> HTTP status
RESULTS = {
    "accepted": 202,  # a sync was asked for
    "ignored": 202,  # a push to another ref
    "published": 200,  # its `after` is published already
    "ping": 200,
    "bad_request": 400,  # no forge, unknown event, malformed payload
    "unauthorized": 401,  # bad or missing signature or token
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,  # the secret file cannot be read
}
PUSH_EVENTS = {
    "github": {b"push": "push", b"ping": "ping"},
    "gitlab": {b"Push Hook": "push", b"Tag Push Hook": "push"},
    "gitea": {b"push": "push"},
}
ZERO_SHA = frozenset({"0" * 40, "0" * 64})


def forge_of(headers: dict[bytes, bytes]) -> str:
    if b"x-gitea-event" in headers or b"x-forgejo-event" in headers:
        return "gitea"
    if b"x-gitlab-event" in headers:
        return "gitlab"
    if b"x-github-event" in headers:
        return "github"
    return "unknown"


def _hmac_hex(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


def verified(forge: str, headers: dict[bytes, bytes], body: bytes, secret: bytes) -> bool:
    """The request carries the shared secret's signature (or the secret, for GitLab)."""
    if forge == "github":
        given = headers.get(b"x-hub-signature-256", b"")
        prefix, _, digest = given.partition(b"=")
        return hmac.compare_digest(prefix + b"=", b"sha256=") & hmac.compare_digest(
            digest, _hmac_hex(secret, body)
        )
    if forge == "gitea":
        given = headers.get(b"x-gitea-signature") or headers.get(b"x-forgejo-signature", b"")
        return hmac.compare_digest(given, _hmac_hex(secret, body))
    if forge == "gitlab":
        return hmac.compare_digest(headers.get(b"x-gitlab-token", b""), secret)
    return False


def event_of(forge: str, headers: dict[bytes, bytes]) -> str | None:
    """ "push" or "ping", or None for an event this endpoint does not take."""
    name = {
        "github": headers.get(b"x-github-event", b""),
        "gitlab": headers.get(b"x-gitlab-event", b""),
        "gitea": headers.get(b"x-gitea-event") or headers.get(b"x-forgejo-event", b""),
    }.get(forge, b"")
    return PUSH_EVENTS.get(forge, {}).get(name)


class BadPayload(ValueError):
    pass


def push_of(headers: dict[bytes, bytes], body: bytes) -> tuple[str, str]:
    """(ref, after) of a push payload: JSON, or a form with a `payload` field (GitHub's
    and Gitea's other content type). Raises BadPayload."""
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    # (curl --data says form-urlencoded by default, for a JSON body too)
    form = content_type == b"application/x-www-form-urlencoded" and body.startswith(b"payload=")
    try:
        text = body.decode("utf-8")
        if form:
            fields = urllib.parse.parse_qs(text, strict_parsing=True, max_num_fields=100)
            text = fields.get("payload", [""])[0]
        payload = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise BadPayload("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadPayload("payload is not a JSON object")
    ref, after = payload.get("ref"), payload.get("after", "")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise BadPayload('payload has no "ref" (refs/...)')
    if not isinstance(after, str):
        raise BadPayload('payload "after" is not a string')
    return ref, after


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one per request."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken; otherwise the seconds until the next one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class WebhookEndpoint:
    """POST /webhook. `wanted_refs()` gives the refs whose pushes matter (None: not known
    yet, every push does), `published()` the hash published now, `wake()` asks the sync
    loop for one more sync."""

    def __init__(
        self,
        secret_file: str,
        rate: float,
        burst: int,
        wanted_refs: Callable[[], set[str] | None],
        published: Callable[[], str | None],
        wake: Callable[[], None],
        log: EventLogger,
        registry: Any,
    ) -> None:
        self.secret_file = secret_file
        self.bucket = TokenBucket(rate, burst)
        self.wanted_refs = wanted_refs
        self.published = published
        self.wake = wake
        self.log = log
        self.requests = Counter(
            "git_sync_webhook_requests",
            "POST /webhook requests, by forge and result",
            ["forge", "result"],
            registry=registry,
        )
        # Every series exists from the start, so an alert sees the first one counted.
        for forge in FORGES:
            for result in RESULTS:
                self.requests.labels(forge, result)

    def answer(self, forge: str, result: str, body: dict[str, object], **headers: str) -> Response:
        self.requests.labels(forge, result).inc()
        response = json_response(body, RESULTS[result])
        response.headers.update({k.encode(): v.encode() for k, v in headers.items()})
        return response

    def refuse(self, forge: str, result: str, error: str, request: Request) -> Response:
        self.log.warning("webhook_refused", forge=forge, result=result, error=error,
                         peer=request.peer)  # fmt: skip
        return self.answer(forge, result, {"error": error})

    async def handle(self, request: Request) -> Response:
        headers = request.headers
        forge = forge_of(headers)
        wait = self.bucket.take()
        if wait:
            # Not logged: a flood would flood the log too; the counter shows it.
            return self.answer(forge, "rate_limited", {"error": "too many webhook requests"},
                               **{"Retry-After": str(math.ceil(wait))})  # fmt: skip
        if request.body is None:
            return self.refuse(forge, "too_large", "body larger than --webhook-max-body", request)
        if forge == "unknown":
            error = "no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header"
            return self.refuse(forge, "bad_request", error, request)
        try:
            secret = read_secret(self.secret_file).encode()
        except OSError as exc:
            self.log.error("webhook_secret_unreadable", file=self.secret_file,
                           error=exc.strerror or str(exc))  # fmt: skip
            return self.answer(forge, "unavailable", {"error": "webhook secret unreadable"})
        if not secret:
            self.log.error("webhook_secret_unreadable", file=self.secret_file, error="empty")
            return self.answer(forge, "unavailable", {"error": "webhook secret unreadable"})
        if not verified(forge, headers, request.body, secret):
            what = "token" if forge == "gitlab" else "signature"
            return self.refuse(forge, "unauthorized", f"bad or missing {what}", request)
        event = event_of(forge, headers)
        if event is None:
            return self.refuse(forge, "bad_request", "not a push event", request)
        if event == "ping":
            self.log.info("webhook", forge=forge, event="ping", result="ping")
            return self.answer(forge, "ping", {"status": "ok", "event": "ping"})
        try:
            ref, after = push_of(headers, request.body)
        except BadPayload as exc:
            return self.refuse(forge, "bad_request", str(exc), request)
        wanted = self.wanted_refs()
        if wanted is not None and ref not in wanted:
            self.log.info("webhook", forge=forge, ref=ref, after=after, result="ignored")
            return self.answer(forge, "ignored", {"status": "ignored", "ignored": "ref",
                                                  "ref": ref})  # fmt: skip
        if after and after not in ZERO_SHA and after == self.published():
            self.log.info("webhook", forge=forge, ref=ref, after=after, result="published")
            return self.answer(forge, "published", {"status": "ok", "published": after})
        self.log.info("webhook", forge=forge, ref=ref, after=after, result="accepted")
        self.wake()
        return self.answer(forge, "accepted", {"status": "accepted", "ref": ref, "after": after})
