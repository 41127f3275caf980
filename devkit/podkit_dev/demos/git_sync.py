"""`podkit demo` for git-sync: pushes published while nginx keeps serving the checkout."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podkit_dev.demo import Narrator

PAGES = 5


def page(version: int) -> str:
    # A page whose parts must agree: a mixed tree would show two versions at once.
    return f"<h1>version {version}</h1>\n" + f"<p>body of version {version}</p>\n" * 50


def demo(narrator: Narrator) -> None:
    from podkit_dev.servers import HOST, GitRepo, HelperProcess, NginxServer, free_port, wait_for

    repo = GitRepo(name="site")
    nginx: NginxServer | None = None
    try:
        repo.commit({"index.html": page(1)}, "version 1")
        root = repo.dir.path / "volume"
        link = root / "current"
        site_port = free_port()
        narrator.step(f"a bare repository {repo.url} with index.html (version 1)")
        narrator.step(
            f"start `podkit git-sync --repo={repo.url} --root={root} --period=1s "
            "--link=current` (git-sync v4's flags)"
        )
        process = HelperProcess(
            "git-sync", f"--repo={repo.url}", f"--root={root}", "--period=1s", "--link=current"
        )
        with narrator.helper(process) as helper:
            narrator.show("the shared volume", f"current -> {os.readlink(link)}")
            nginx = NginxServer(
                extra_http=f"server {{ listen {HOST}:{site_port}; location / {{ root {link}; }} }}"
            ).start()
            url = f"http://{HOST}:{site_port}/index.html"
            narrator.step(f"nginx serves the link read-only at {url}; a reader keeps reading")
            stop = threading.Event()
            served: list[int] = []
            problems: list[str] = []

            def reader() -> None:
                while not stop.is_set():
                    try:
                        with urllib.request.urlopen(url, timeout=5) as response:
                            body = response.read().decode()
                    except OSError as exc:
                        problems.append(str(exc))
                        continue
                    versions = {line.split("version ")[1].split("<")[0]
                                for line in body.splitlines() if "version" in line}  # fmt: skip
                    if len(versions) != 1 or body.count("\n") != 51:
                        problems.append(f"mixed or short page: {sorted(versions)}")
                        continue
                    served.append(int(versions.pop()))

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            for version in range(2, PAGES + 1):
                sha = repo.commit({"index.html": page(version)}, f"version {version}")
                if version == PAGES:
                    narrator.step(f"push version {version}, then POST /sync (no waiting)")
                    request = urllib.request.Request(f"{helper.admin}/sync", method="POST")
                    with urllib.request.urlopen(request, timeout=60) as response:
                        answer = json.loads(response.read())
                    narrator.show("POST /sync", json.dumps(answer))
                else:
                    narrator.step(f"push version {version} ({sha[:10]}); the next poll takes it")

                def serving(v: int = version) -> bool:
                    return bool(served) and served[-1] == v

                wait_for(serving, timeout=60, what=f"nginx serving version {version}")
            stop.set()
            thread.join(10)
            trees = sorted(os.listdir(root / ".worktrees"))
            narrator.show("the shared volume", f"current -> {os.readlink(link)}\n.worktrees: "
                          f"{', '.join(name[:10] for name in trees)} (.recycle: the previous "
                          "tree, kept to become the next one)")  # fmt: skip
            seen = sorted(set(served))
            narrator.show("reader", f"{len(served)} pages read, versions seen {seen}, "
                          f"{len(problems)} missing or mixed")  # fmt: skip
            narrator.result(
                not problems and seen == list(range(seen[0], PAGES + 1)),
                f"{PAGES - 1} pushes published while the reader read {len(served)} whole "
                "pages, none missing or mixed",
            )
    finally:
        if nginx is not None:
            nginx.cleanup()
        repo.cleanup()
