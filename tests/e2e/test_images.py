"""Every helper image, built from this tree and run under podman (issue 8).

The checks are the contract of images/README.md: non-root numeric user, --help and
--version, a read-only root filesystem, SIGTERM drains and exits 0, nothing writable by
the helper's user outside the declared paths, and no build leftovers.
"""

from __future__ import annotations

import json
import re

import pytest

from images.render import specs
from tests.e2e.harness import BASE_IMAGE, SMOKE_ARGS, Podman, label

HELPERS = [spec.helper for spec in specs()]
# Helpers whose image compiles part of them in its builder stage (Helper.image_build).
COMPILED = [spec.helper for spec in specs() if spec.build]
PACKAGES = {spec.helper: spec.packages for spec in specs()}
ADMIN_PORTS = {spec.helper: spec.admin_port for spec in specs()}

# Walks the image's filesystem as the helper's user; prints what it could write to.
FIND_WRITABLE = """
import json, os, sys
allowed = tuple(p.rstrip("/") + "/" for p in sys.argv[1].split(","))
skip = ("/proc/", "/sys/", "/dev/")
found = []
for top, dirs, files in os.walk("/"):
    if (top.rstrip("/") + "/").startswith(skip + allowed):
        dirs[:] = []
        continue
    for name in dirs + files:
        path = os.path.join(top, name)
        if (path + "/").startswith(skip + allowed) or os.path.islink(path):
            continue
        if os.access(path, os.W_OK):
            found.append(path)
print(json.dumps(found))
"""

LEFTOVERS = """
import json, os, shutil, sys
paths = ["/wheels", "/root/.cache", "/tmp/pip", "/opt/podkit/bin/pip", "/state"]
# A tool the helper runs (Helper.image_packages: git-sync's git) is no leftover.
tools = ["pip", "pip3", "gcc", "cc", "make", "git", "cython", "cythonize"]
tools = [t for t in tools if t not in sys.argv[1:]]
found = [p for p in paths if os.path.exists(p)] + [t for t in tools if shutil.which(t)]
for top, dirs, _ in os.walk("/opt/podkit"):
    found += [os.path.join(top, d) for d in dirs
              if d in ("tests", "pip", "setuptools", "Cython", "pyximport")]
print(json.dumps(found))
"""


# What an image may add to the Python base it is built on (issue 33), in bytes as podman
# counts them (bench/bench_images.py prints the same figure).
SIZE_OVER_BASE = 30_000_000


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest, helper_images: dict[str, str]) -> tuple[str, str]:
    return request.param, helper_images[request.param]


def test_runs_as_numeric_non_root_user(podman: Podman, helper: tuple[str, str]) -> None:
    _, image = helper
    config = podman.inspect_image(image)["Config"]  # type: ignore[index]
    assert config["User"] == "65532:65532"
    ids = podman.out(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        image,
        "-c",
        "import os; print(os.getuid(), os.getgid())",
    )
    assert ids == "65532 65532"


def test_image_metadata(podman: Podman, helper: tuple[str, str]) -> None:
    name, image = helper
    info = podman.inspect_image(image)
    config = info["Config"]  # type: ignore[index]
    assert config["Entrypoint"] == ["podkit", name]
    assert config.get("StopSignal") == "SIGTERM"
    for key in ("source", "version", "description"):
        assert label(info, f"org.opencontainers.image.{key}"), key
    assert label(info, "org.opencontainers.image.version") == image.rsplit(":", 1)[1]
    assert label(info, "io.podkit.admin-port") == str(ADMIN_PORTS[name])


def test_help_and_version(podman: Podman, helper: tuple[str, str]) -> None:
    name, image = helper
    usage = podman.run("run", "--rm", "--read-only", "--network", "none", image, "--help")
    assert usage.stdout.startswith(f"usage: podkit {name}"), usage.stdout[:200]
    assert "--admin-addr" in usage.stdout
    # IMAGE --version (the entrypoint is `podkit ROLE`): the version, the revision baked
    # in by the build (the one the image's label names) and the image's Python.
    info = podman.inspect_image(image)
    revision = label(info, "org.opencontainers.image.revision") or "unknown"
    python = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
        "-c", "import platform; print(platform.python_version())",
    )  # fmt: skip
    version = podman.out("run", "--rm", "--read-only", "--network", "none", image, "--version")
    assert version == (
        f"podkit {name} {image.rsplit(':', 1)[1]} (revision {revision}, Python {python})"
    )


def test_read_only_root_livez_and_sigterm_drain(podman: Podman, helper: tuple[str, str]) -> None:
    name, image = helper
    port = ADMIN_PORTS[name]
    options = (
        "--read-only",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    )
    args = (*SMOKE_ARGS.get(name, ()), "--shutdown-timeout", "5s")
    with podman.container(image, *args, options=options) as container:
        podman.wait_ready(container, port, "/livez")
        code, body = podman.http_get(container, port, "/livez")
        assert code == 200, body
        assert json.loads(body)["status"] == "ok"
        code, metrics = podman.http_get(container, port, "/metrics")
        assert code == 200 and f'helper="{name}"' in metrics
        # podman stop sends the image's STOPSIGNAL and waits -t seconds before SIGKILL.
        podman.run("stop", "--time", "20", container, timeout=60)
        state = podman.state(container)
        logs = podman.run("logs", container).stderr
        assert state["ExitCode"] == 0, logs
        assert '"drain_requested"' in logs and '"source":"SIGTERM"' in logs, logs


def test_nothing_writable_outside_declared_paths(podman: Podman, helper: tuple[str, str]) -> None:
    _, image = helper
    declared = label(podman.inspect_image(image), "io.podkit.writable-paths")
    assert declared
    result = podman.out(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        image,
        "-c",
        FIND_WRITABLE,
        declared,
    )
    assert json.loads(result) == []
    # The declared state directory is the user's own.
    owner = podman.out(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "stat",
        image,
        "-c",
        "%u:%g %a",
        "/var/lib/podkit",
    )
    assert owner == "65532:65532 755", owner


def test_no_build_tools_caches_or_tests(podman: Podman, helper: tuple[str, str]) -> None:
    name, image = helper
    result = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", LEFTOVERS,
        *PACKAGES[name],
    )  # fmt: skip
    assert json.loads(result) == []


# What would compile C in an image: a compiler on PATH (or any cross gcc), Cython, the
# Python headers, and the build's leftovers (the tools' directory, generated C).
NO_COMPILER = """
import glob, importlib.util, json, os, shutil, sysconfig
found = [t for t in ("cc", "gcc", "c99", "cpp", "ld", "cython", "cythonize") if shutil.which(t)]
found += glob.glob("/usr/bin/*-gcc*") + glob.glob("/usr/local/bin/*-gcc*")
found += ["Cython"] if importlib.util.find_spec("Cython") else []
found += glob.glob(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
found += glob.glob("/tmp/build-tools") + glob.glob("/opt/podkit/**/*.c", recursive=True)
print(json.dumps(found))
"""


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_core_is_the_one_loaded_and_no_compiler_is_in_the_image(
    podman: Podman, helper_images: dict[str, str], name: str
) -> None:
    """pg-ambassador's hot path is compiled in the builder stage (Helper.image_build) and the
    image runs it: /status, the build_info metric and the `listening` line say `compiled`,
    no `core_not_compiled` warning, and the image has no compiler, Cython or headers."""
    image = helper_images[name]
    port = ADMIN_PORTS[name]
    options = ("--read-only", "--network", "none", "--cap-drop", "ALL")
    with podman.container(image, *SMOKE_ARGS.get(name, ()), options=options) as container:
        podman.wait_ready(container, port, "/livez")
        code, body = podman.http_get(container, port, "/status")
        assert code == 200, body
        assert json.loads(body)["figures"]["core"] == "compiled", body
        code, metrics = podman.http_get(container, port, "/metrics")
        assert code == 200 and 'pg_ambassador_build_info{core="compiled"} 1.0' in metrics
        logs = podman.run("logs", container).stderr
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert [e["core"] for e in events if e["event"] == "listening"] == ["compiled"], logs
    assert not [e for e in events if e["event"] == "core_not_compiled"], logs
    # The module itself is the extension, built from the source beside it (core.sums).
    loaded = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c",
        "import json; from podkit.ambassadors.postgres import core, protocol; print(json.dumps("
        "[protocol.__file__.rsplit('/', 1)[1], core.is_compiled(protocol), core.problem()]))",
    )  # fmt: skip
    so, compiled, problem = json.loads(loaded)
    assert re.fullmatch(r"protocol\.cpython-\d+-[\w-]+\.so", so) and compiled, loaded
    assert problem == "", problem
    found = podman.out(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", NO_COMPILER
    )
    assert json.loads(found) == []


def test_every_image_adds_under_30_mb_to_the_base(
    podman: Podman, helper_images: dict[str, str]
) -> None:
    """Each image is the Python base plus its own layers, and those stay under 30 MB: the
    base and every image measured in one run. (git-sync's was built on a base of its own
    that carried Debian's git whole, perl and docs included: +105 MB.)"""
    base = podman.inspect_image(BASE_IMAGE)
    assert base is not None
    over = {}
    for name, image in sorted(helper_images.items()):
        info = podman.inspect_image(image)
        assert info is not None, image
        layers = info["RootFS"]["Layers"]
        assert layers[: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"], (
            f"{image} is not built on {BASE_IMAGE}"
        )
        over[name] = int(info["Size"]) - int(base["Size"])
    too_big = {name: f"{size / 1e6:.1f} MB" for name, size in over.items()
               if size >= SIZE_OVER_BASE}  # fmt: skip
    assert not too_big, f"over {SIZE_OVER_BASE / 1e6:.0f} MB over the base: {too_big}"


def test_rendered_containerfiles_are_current() -> None:
    """images/<helper>.Containerfile match the template (images/build.sh render)."""
    from images.render import render

    for spec in specs():
        assert spec.containerfile.read_text() == render(spec), (
            f"{spec.containerfile.name} is stale: run images/build.sh render"
        )


def test_only_a_helper_that_compiles_builds_on_the_builder_image() -> None:
    """Helper.image_build: that helper's builder stage is BUILDER_IMAGE (a compiler) and its
    venv reaches the final stage through a check on the base; the others' builder is the
    base itself, as before."""
    assert COMPILED == ["pg-ambassador"]
    for spec in specs():
        text = spec.containerfile.read_text()
        if spec.build:
            assert "FROM ${BUILDER_IMAGE} AS builder" in text
            assert f"RUN /opt/podkit/bin/python -B -m {spec.build} --check" in text
            assert "COPY --from=check /opt/podkit /opt/podkit" in text
        else:
            assert "BUILDER_IMAGE" not in text and "AS check" not in text
            assert "FROM ${BASE_IMAGE} AS builder" in text
            assert "COPY --from=builder /opt/podkit /opt/podkit" in text


INSTALLED = """
import importlib.util, json, os, subprocess, sys
from importlib.metadata import distributions
import podkit
site = os.path.dirname(os.path.dirname(podkit.__file__))
help = subprocess.run(["podkit", "--help"], capture_output=True, text=True).stdout
demo = subprocess.run(["podkit", "demo"], capture_output=True, text=True)
print(json.dumps({
    "listed": [l.split()[0] for l in help.split("helpers:\\n", 1)[1].splitlines()
               if l.startswith("  ")],
    "distributions": sorted(d.metadata["Name"].lower() for d in distributions()),
    "dev_kit": importlib.util.find_spec("podkit_dev") is not None
               or os.path.exists(os.path.join(site, "podkit_dev")),
    "demo": [demo.returncode, demo.stdout, demo.stderr],
}))
"""


def _extra_projects(extra: str) -> set[str]:
    """The projects that podkit's extra EXTRA names (this checkout's metadata)."""
    from importlib.metadata import requires

    found = set()
    for requirement in requires("podkit") or []:
        spec, _, marker = requirement.partition(";")
        if f'extra == "{extra}"' in marker:
            found.add(re.split(r"[\s\[<>=!~]", spec.strip(), maxsplit=1)[0].lower())
    return found


def test_image_installs_its_helper_extra_and_no_dev_kit(
    podman: Podman, helper: tuple[str, str]
) -> None:
    """Only podkit and its helper's extra are installed (nothing is removed afterwards):
    no dev kit, no other helper's packages, and `podkit --help` offers the helpers whose
    extra is there."""
    name, image = helper
    found = json.loads(
        podman.out("run", "--rm", "--network", "none", "--entrypoint", "python3", image,
                   "-c", INSTALLED)
    )  # fmt: skip
    own = _extra_projects(name)
    others = set().union(*(_extra_projects(h) for h in HELPERS)) - own
    assert found["dev_kit"] is False
    assert "podkit-dev" not in found["distributions"]
    assert "podkit" in found["distributions"] and own <= set(found["distributions"])
    assert others.isdisjoint(found["distributions"]), others & set(found["distributions"])
    assert "matplotlib" not in found["distributions"]
    assert found["listed"] == sorted(h for h in HELPERS if _extra_projects(h) <= own)
    assert name in found["listed"]
    assert found["demo"] == [
        2,
        "",
        "podkit: `podkit demo` needs podkit's dev kit, which is not installed here"
        " (in a checkout: ./dev setup)\n",
    ]
