"""git-sync v4's --http-bind, --http-metrics, --http-pprof and --man, from the outside."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from podkit.naming import aliases, env_name, flag_name
from podkit.sidecars.git_sync.settings import GitSyncSettings
from podkit_dev.servers import HOST, GitRepo, free_port, http_get, podkit_argv, wait_for


def test_http_bind_serves_gitsync_health_and_metrics(run_helper, git_repo: GitRepo, tmp_path):
    """The seed's `--http-bind=ADDR --http-metrics` and probes on ADDR `/` work: / is 503
    until the first sync, 200 after; /metrics is there too (it is the admin server)."""
    port = free_port()
    later = tmp_path / "later.git"  # the remote appears only after the helper started
    helper = run_helper(
        "git-sync", f"--repo=file://{later}", f"--root={tmp_path / 'git'}", "--period=100ms",
        "--max-failures=-1", f"--http-bind={HOST}:{port}", "--http-metrics",
        admin_port=port, wait=None,
    )  # fmt: skip
    base = f"http://{HOST}:{port}"
    wait_for(lambda: helper.events("sync_failed"), what="a failed sync")
    status, body = http_get(f"{base}/")
    assert status == 503 and json.loads(body)["status"] == "fail"
    assert helper.events("starting")[0]["admin_addr"] == f"{HOST}:{port}"

    shutil.copytree(git_repo.bare, later)
    wait_for(lambda: http_get(f"{base}/")[0] == 200, what="/ healthy after the first sync")
    status, metrics = http_get(f"{base}/metrics")
    assert status == 200
    assert 'git_sync_count_total{status="success"} 1.0' in metrics.decode()
    assert http_get(f"{base}/livez")[0] == 200
    assert not helper.events("http_pprof_ignored")


def test_http_pprof_is_accepted_with_one_notice(run_helper, git_repo: GitRepo, tmp_path):
    helper = run_helper(
        "git-sync", f"--repo={git_repo.url}", f"--root={tmp_path / 'git'}", "--http-pprof",
    )  # fmt: skip
    notices = helper.events("http_pprof_ignored")
    assert len(notices) == 1 and "pprof" in notices[0]["reason"]
    assert "/metrics" in notices[0]["instead"]
    assert helper.get("/debug/pprof/")[0] == 404
    assert helper.get("/metrics")[0] == 200
    assert helper.stop() == 0


def test_man_prints_every_setting_and_exits_0(tmp_path: Path) -> None:
    # No --repo, no --root: --man, like --help, needs no valid settings.
    result = subprocess.run(
        [*podkit_argv(), "git-sync", "--man"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout
    sections = [line for line in text.splitlines() if line and not line[0].isspace()]
    assert sections == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMON OPTIONS"]
    for name, info in GitSyncSettings.model_fields.items():
        alias = aliases(info)
        for spelling in (flag_name(name), env_name(name), *alias.flags, *alias.env):
            assert spelling in text, f"{spelling} missing from the manual"
        for old in (*alias.deprecated_flags, *alias.deprecated_env):
            assert old in text, f"deprecated {old} missing from the manual"
    for flag in ("--http-bind", "--http-metrics", "--http-pprof", "--man", "--help"):
        assert flag in text
    assert 'Default: "10s"' in text  # --period, in the duration form manifests use
    # Every helper has it.
    other = subprocess.run(
        [*podkit_argv(), "log-shipper", "--man"], capture_output=True, text=True, timeout=60
    )
    assert other.returncode == 0 and other.stdout.startswith("NAME\n    podkit log-shipper")
