"""git-sync settings: git-sync v4's flags, each also `GITSYNC_<NAME>` (v3 `GIT_SYNC_*` deprecated).

The field names are git-sync v4's flag names, so `--repo=URL --root=/git --period=60s
--link=current` runs unchanged; podkit's own spellings (`PODKIT_*`, the YAML file) work
too. Durations take Go's forms used in git-sync manifests (`60s`, `2m`, `250ms`).
"""

from __future__ import annotations

import errno
import json
import re
import signal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podkit.config import ByteSize, Duration, HelperSettings, HostPort, split_host_port
from podkit.naming import Alias


def _names(name: str, *v3: str, flags: tuple[str, ...] = ()) -> Alias:
    """`GITSYNC_NAME` as env; the v3 names (`GIT_SYNC_X` env, `--x` flag) deprecated."""
    own = "--" + name.lower().replace("_", "-")
    old_flags = tuple(f for n in v3 if (f := "--" + n.lower().replace("_", "-")) != own)
    return Alias(
        flags=flags,
        env=(f"GITSYNC_{name}",),
        deprecated_flags=old_flags,
        deprecated_env=tuple(f"GIT_SYNC_{n}" for n in v3),
    )


SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|m|h))?\s*$")
RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any) -> Any:
    """Requests per second from "10/s", "30/m", "100/h" or a number (per second)."""
    if isinstance(value, str):
        match = RATE_RE.match(value)
        if not match:
            raise ValueError("expected a rate such as 10/s, 30/m or 100/h")
        return float(match.group(1)) / RATE_UNITS[match.group(2) or "s"]
    return value


def parse_git_config(text: str) -> list[tuple[str, str]]:
    """git-sync's `--git-config`: `key:value,key:value`; values may be "double-quoted"
    (with backslash escapes) to hold commas or colons."""
    entries: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        colon = text.find(":", i)
        if colon < 0:
            raise ValueError(f"expected key:value at {text[i:]!r}")
        key = text[i:colon].strip()
        if not key:
            raise ValueError("empty key")
        i = colon + 1
        if i < n and text[i] == '"':
            i += 1
            value: list[str] = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted value for {key}")
                char = text[i]
                if char == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if char == '"':
                    break
                value.append(char)
            entries.append((key, "".join(value)))
            if i < n and text[i] != ",":
                raise ValueError(f"expected ',' after the quoted value of {key}")
            i += 1
        else:
            comma = text.find(",", i)
            end = n if comma < 0 else comma
            entries.append((key, text[i:end]))
            i = end + 1
    return entries


class GitSyncSettings(HelperSettings):
    """Keeps a checkout of --repo at --ref current under --root, in git-sync v4's layout:
    ROOT/.git is a repository that is never checked out, each synced commit is a detached
    worktree ROOT/.worktrees/<sha>, and --link is a relative symlink to the current one,
    replaced atomically (temporary link + rename), so readers see the old tree or the new
    one, never a mix. Every --period the remote is polled (git ls-remote); a new hash is
    fetched, checked out (sparse checkout, submodules), published, and the hooks
    (--exechook-command, --webhook-url) are told.

    git-sync v4's flags and GITSYNC_* variables work unchanged; the v3 names (GIT_SYNC_*,
    --dest, --wait, ...) work with a warning. The admin HTTP server (--http-bind, default
    :9703) serves / and /readyz (ready after the first sync, or at once when a valid tree
    is already published), /livez, /metrics and POST /sync (sync now).
    """

    admin_addr: Annotated[HostPort, _names("HTTP_BIND", "HTTP_BIND", flags=("--http-bind",))] = (
        Field(
            "",
            description="address of the admin HTTP server; git-sync's --http-bind (':8080': all "
            "interfaces). It serves git-sync's / (503 until the first sync, then 200, as "
            "/readyz) and /metrics, with podkit's /livez /readyz /startupz /status /sync",
            json_schema_extra={"metavar": "HOST:PORT"},
        )
    )
    http_metrics: Annotated[bool, _names("HTTP_METRICS", "HTTP_METRICS")] = Field(
        False,
        description="git-sync's switch for /metrics; accepted, as podkit always serves "
        "/metrics on the admin address (--http-bind)",
    )
    http_pprof: Annotated[bool, _names("HTTP_PPROF", "HTTP_PPROF")] = Field(
        False,
        description="git-sync's Go pprof endpoints: accepted with a notice, as they have no "
        "meaning here; /metrics (process_*, podkit_event_loop_*) and /status are served instead",
    )
    verbose: Annotated[int, _names("VERBOSE", flags=("-v",))] = Field(
        0, ge=0, description="git-sync's -v level; 5 or more logs at debug"
    )

    # --- what to sync ----------------------------------------------------------------------
    repo: Annotated[str, _names("REPO", "REPO")] = Field(
        ..., description="the git repository to sync (URL or path)"
    )
    ref: Annotated[str, _names("REF", "REV", "BRANCH")] = Field(
        "HEAD", description="branch, tag (annotated tags are peeled) or full commit SHA to sync"
    )
    root: Annotated[str, _names("ROOT", "ROOT")] = Field(
        ..., description="directory of the root repo, its worktrees and (by default) the link"
    )
    link: Annotated[str, _names("LINK", "DEST")] = Field(
        "",
        description="symlink to the current worktree, absolute or relative to --root "
        "(default: the repo's last path element)",
    )
    depth: Annotated[int, _names("DEPTH", "DEPTH")] = Field(
        1, ge=0, description="commits of history to fetch (0: all)"
    )
    submodules: Annotated[
        Literal["recursive", "shallow", "off"], _names("SUBMODULES", "SUBMODULES")
    ] = Field("recursive", description="how submodules are checked out")
    sparse_checkout_file: Annotated[str, _names("SPARSE_CHECKOUT_FILE", "SPARSE_CHECKOUT_FILE")] = (
        Field(
            "", description="file of sparse-checkout patterns (non-cone) applied to each worktree"
        )
    )
    filter: Annotated[str, _names("FILTER")] = Field(
        "", description="partial clone filter for fetches, e.g. blob:none"
    )
    git: Annotated[str, _names("GIT", "GIT")] = Field("git", description="the git binary")
    git_config: Annotated[str, _names("GIT_CONFIG", "GIT_CONFIG")] = Field(
        "", description='extra git config as key:value,key:"quoted,value" (private to git-sync)'
    )
    git_gc: Annotated[
        Literal["auto", "always", "aggressive", "off"], _names("GIT_GC", "GIT_GC")
    ] = Field("always", description="git gc after old worktrees are removed")

    # --- the loop ------------------------------------------------------------------------
    period: Annotated[Duration, _names("PERIOD", "WAIT")] = Field(
        10.0, description="time between polls"
    )
    init_period: Annotated[Duration | None, _names("INIT_PERIOD")] = Field(
        None, description="time between tries until the first success (default: --period)"
    )
    sync_timeout: Annotated[Duration, _names("SYNC_TIMEOUT", "TIMEOUT")] = Field(
        120.0, description="the longest one sync may take"
    )
    max_failures: Annotated[int, _names("MAX_FAILURES", "MAX_SYNC_FAILURES")] = Field(
        0, ge=-1, description="consecutive failures tolerated before exiting (-1: never exit)"
    )
    init_max_failures: Annotated[int | None, _names("INIT_MAX_FAILURES")] = Field(
        None, ge=-1, description="the same before the first success (default: --max-failures)"
    )
    one_time: Annotated[bool, _names("ONE_TIME", "ONE_TIME")] = Field(
        False, description="exit after one successful sync (status 0) or too many failures (1)"
    )
    sync_on_signal: Annotated[str, _names("SYNC_ON_SIGNAL", "SYNC_ON_SIGNAL")] = Field(
        "", description="signal (HUP, SIGUSR1, 10) that starts a sync at once"
    )
    sync_token_file: Annotated[str, _names("SYNC_TOKEN_FILE")] = Field(
        "",
        description="file of a bearer token that lets POST /sync come from off-loopback "
        "(without it, only loopback may ask)",
    )
    stale_worktree_timeout: Annotated[Duration, _names("STALE_WORKTREE_TIMEOUT")] = Field(
        0.0, description="how long a replaced worktree stays for readers still inside it"
    )
    unready_after_failures: Annotated[int, _names("UNREADY_AFTER_FAILURES")] = Field(
        0, ge=0, description="consecutive failures after which /readyz fails (0: never)"
    )

    # --- files ---------------------------------------------------------------------------
    touch_file: Annotated[str, _names("TOUCH_FILE", "TOUCH_FILE")] = Field(
        "", description="file touched after each successful sync (absolute or under --root)"
    )
    error_file: Annotated[str, _names("ERROR_FILE", "ERROR_FILE")] = Field(
        "", description="file holding the last error as JSON, removed after a success"
    )
    publish_file: Annotated[str, _names("PUBLISH_FILE")] = Field(
        "", description="file holding the published hash and worktree path as JSON"
    )
    group_write: Annotated[bool, _names("GROUP_WRITE", "GROUP_WRITE")] = Field(
        False, description="make the synced files group-writable"
    )
    add_user: Annotated[bool, _names("ADD_USER", "ADD_USER")] = Field(
        False, description="add this UID to /etc/passwd if missing (ssh needs it)"
    )

    # --- auth ----------------------------------------------------------------------------
    username: Annotated[str, _names("USERNAME", "USERNAME")] = Field(
        "", description="user name for http(s) basic auth"
    )
    password_file: Annotated[str, _names("PASSWORD_FILE", "PASSWORD_FILE")] = Field(
        "", description="file of the password or token (re-read before every sync)"
    )
    password: Annotated[SecretStr | None, _names("PASSWORD", "PASSWORD")] = Field(
        None, description="password from the environment (prefer --password-file)"
    )
    credential: Annotated[list[dict[str, Any]], _names("CREDENTIAL")] = Field(
        default_factory=list,
        description='per-URL credentials as JSON: {"url": U, "username": N, '
        '"password-file": F} (or a JSON list of them)',
    )
    ssh_key_file: Annotated[list[str], _names("SSH_KEY_FILE", "SSH_KEY_FILE")] = Field(
        default_factory=lambda: ["/etc/git-secret/ssh"],
        description="ssh private key file(s)",
    )
    ssh_known_hosts: Annotated[bool, _names("SSH_KNOWN_HOSTS", "SSH_KNOWN_HOSTS")] = Field(
        True, description="check ssh host keys against --ssh-known-hosts-file"
    )
    ssh_known_hosts_file: Annotated[str, _names("SSH_KNOWN_HOSTS_FILE", "SSH_KNOWN_HOSTS_FILE")] = (
        Field("/etc/git-secret/known_hosts", description="the ssh known_hosts file")
    )
    askpass_url: Annotated[str, _names("ASKPASS_URL", "ASKPASS_URL")] = Field(
        "", description="URL answering username=...\\npassword=... before each sync"
    )
    cookie_file: Annotated[bool, _names("COOKIE_FILE", "COOKIE_FILE")] = Field(
        False, description="use the http cookie file /etc/git-secret/cookie_file"
    )

    # --- hooks ---------------------------------------------------------------------------
    exechook_command: Annotated[str, _names("EXECHOOK_COMMAND")] = Field(
        "", description="command run (no shell) in each new worktree, env GITSYNC_HASH"
    )
    exechook_timeout: Annotated[Duration, _names("EXECHOOK_TIMEOUT")] = Field(
        30.0, description="the longest the exechook may run"
    )
    exechook_backoff: Annotated[Duration, _names("EXECHOOK_BACKOFF")] = Field(
        3.0, description="first wait before retrying a failed exechook"
    )
    webhook_url: Annotated[str, _names("WEBHOOK_URL", "WEBHOOK_URL")] = Field(
        "", description="URL called after each new hash (header Gitsync-Hash)"
    )
    webhook_method: Annotated[str, _names("WEBHOOK_METHOD", "WEBHOOK_METHOD")] = Field(
        "POST", description="HTTP method of the webhook"
    )
    webhook_success_status: Annotated[
        int, _names("WEBHOOK_SUCCESS_STATUS", "WEBHOOK_SUCCESS_STATUS")
    ] = Field(200, ge=0, description="status that means success (0: fire and forget)")
    webhook_timeout: Annotated[Duration, _names("WEBHOOK_TIMEOUT", "WEBHOOK_TIMEOUT")] = Field(
        1.0, description="the longest the webhook call may take"
    )
    webhook_backoff: Annotated[Duration, _names("WEBHOOK_BACKOFF", "WEBHOOK_BACKOFF")] = Field(
        3.0, description="first wait before retrying a failed webhook"
    )

    # --- the inbound webhook: forges ask for a sync -----------------------------------------
    webhook_secret_file: Annotated[str, _names("WEBHOOK_SECRET_FILE")] = Field(
        "",
        description="file of the secret shared with the forge; enables POST /webhook, which "
        "takes GitHub, GitLab and Gitea/Forgejo push hooks signed with it (re-read when it "
        "changes). Unrelated to --webhook-url, which is called after a sync",
        json_schema_extra={"metavar": "PATH"},
    )
    webhook_bind: Annotated[str, _names("WEBHOOK_BIND")] = Field(
        "",
        description="serve POST /webhook on this address of its own, instead of on the admin "
        "address (so that only it is exposed through a Service)",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    webhook_rate: Annotated[float, BeforeValidator(parse_rate), _names("WEBHOOK_RATE")] = Field(
        10.0,
        gt=0,
        description="webhook requests taken per second (10/s, 30/m, 100/h), over a burst of "
        "--webhook-burst; the rest get 429",
        json_schema_extra={"metavar": "RATE"},
    )
    webhook_burst: Annotated[int, _names("WEBHOOK_BURST")] = Field(
        20, ge=1, description="webhook requests taken at once before --webhook-rate applies"
    )
    webhook_max_body: Annotated[ByteSize, _names("WEBHOOK_MAX_BODY")] = Field(
        1024 * 1024, ge=1, description="largest webhook body read; a larger one gets 413"
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        value = value.strip()
        if not value or value.startswith("-") or any(c in value for c in " \t\n~:?*[\\"):
            raise ValueError("expected a branch, tag or commit SHA")
        return value

    @field_validator("git_config")
    @classmethod
    def _git_config(cls, value: str) -> str:
        parse_git_config(value)
        return value

    @field_validator("credential", mode="before")
    @classmethod
    def _credential(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        out: list[Any] = []
        for item in items:
            if isinstance(item, str):
                try:
                    item = json.loads(item)
                except ValueError:
                    raise ValueError('expected JSON like {"url": ..., "username": ...}') from None
            out.extend(item if isinstance(item, list) else [item])
        for item in out:
            if not isinstance(item, dict) or not item.get("url"):
                raise ValueError('each credential needs a "url"')
            if "password" in item:
                raise ValueError('credentials take "password-file", never an inline password')
        return out

    @field_validator("webhook_bind")
    @classmethod
    def _webhook_bind(cls, value: str, info: ValidationInfo) -> str:
        if value:
            split_host_port(value)
            # (declared after webhook_secret_file, so that one is validated already)
            if not info.data.get("webhook_secret_file"):
                raise ValueError("needs --webhook-secret-file (only signed hooks are taken)")
        return value

    @field_validator("webhook_secret_file")
    @classmethod
    def _webhook_secret_file(cls, value: str) -> str:
        # Read again at every change; at start it must be there (a Secret is mounted
        # before the container starts), so a wrong path fails now, not at the first push.
        if value:
            try:
                with open(value, "rb"):
                    pass
            except FileNotFoundError:
                raise ValueError(f"file {value} does not exist") from None
            except OSError as exc:
                raise ValueError(f"file {value} cannot be read: {exc.strerror}") from None
        return value

    @field_validator("sync_on_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if value:
            signal_number(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> GitSyncSettings:
        if self.password_file and self.password is not None:
            raise ValueError("--password-file and --password are exclusive")
        if (self.password_file or self.password is not None) and not self.username:
            raise ValueError("a password needs --username")
        if self.webhook_method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            raise ValueError(f"--webhook-method={self.webhook_method}: not an HTTP method")
        return self

    # --- derived -------------------------------------------------------------------------

    @property
    def is_sha(self) -> bool:
        return bool(SHA_RE.match(self.ref))

    @property
    def link_name(self) -> str:
        if self.link:
            return self.link
        tail = self.repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return tail.removesuffix(".git") or "repo"


def signal_number(value: str) -> int:
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            number = int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal {value!r}") from None
    if number in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):
        raise ValueError(f"signal {value!r} cannot be used for --sync-on-signal")
    return number


def read_secret(path: str) -> str:
    """A secret file's text, one trailing newline dropped; OSError for anything unreadable.

    Read at each use (the sync token, each webhook, each fetch's password), so a rotated
    Kubernetes Secret counts from its next use with nothing to watch."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "not UTF-8 text") from None
