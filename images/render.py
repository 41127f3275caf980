"""Render images/<helper>.Containerfile from images/Containerfile.in for every helper.

A helper is every entry point in pyproject's `podkit.helpers` group; its image installs
the pyproject extra of the same name when there is one. So a new helper gets its image
from its registration alone: `images/build.sh render` (or `make images`) writes the file.

`python images/render.py` renders; `--check` exits 1 when a rendered file is stale;
`--list` prints `helper extras admin_port build build_requires` lines for images/build.sh
(`-` for an empty field), `--registry` where the images are published.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the published images live, and the repository their source label points at: every
# image is REGISTRY/podkit-HELPER:VERSION (images/build.sh, the manifests under k8s/, the
# docs). The release workflow pushes to the repository owner's ghcr.io namespace.
OWNER = "podkit-project"
REGISTRY = f"ghcr.io/{OWNER}"
SOURCE = f"https://github.com/{OWNER}/podkit"
TEMPLATE = ROOT / "images" / "Containerfile.in"
HEADER = "# GENERATED from images/Containerfile.in by `images/build.sh render`; do not edit.\n"


def image_name(helper: str, registry: str = REGISTRY) -> str:
    """The image of a helper, without its tag: ghcr.io/podkit-project/podkit-git-sync."""
    return f"{registry}/podkit-{helper}"


@dataclass(frozen=True)
class ImageSpec:
    helper: str
    extras: str
    admin_port: int
    description: str
    packages: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    build: str = ""
    build_requires: tuple[str, ...] = ()

    @property
    def containerfile(self) -> Path:
        return ROOT / "images" / f"{self.helper}.Containerfile"


def specs() -> list[ImageSpec]:
    from podkit.cli import helpers

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {}
    )
    return [
        ImageSpec(
            helper=name,
            extras=name if name in extras else "",
            admin_port=helper.admin_port,
            description=f"podkit {name}: {helper.summary}".replace('"', "'"),
            packages=tuple(getattr(helper, "image_packages", ())),
            files=tuple(getattr(helper, "image_files", ())),
            build=getattr(helper, "image_build", ""),
            build_requires=tuple(getattr(helper, "image_build_requires", ())),
        )
        for name, helper in sorted(helpers().items())
    ]


def packages_step(packages: tuple[str, ...]) -> str:
    """The Debian packages a helper runs, installed in its final stage (as root, before
    USER). A base that has them already (tests/e2e/base-image.sh base) needs no network."""
    return "# Debian packages the helper runs (Helper.image_packages).\n" + _install(packages)


def _install(packages: tuple[str, ...]) -> str:
    names = " ".join(packages)
    return (
        f"RUN dpkg-query -W {names} >/dev/null 2>&1 || {{ apt-get update -qq && \\\n"
        f"    apt-get install -y -qq --no-install-recommends {names} >/dev/null && \\\n"
        "    rm -rf /var/lib/apt/lists/* /var/cache/apt/*; }\n"
    )


# Copies each file named in $FILES (a glob for an architecture's directory), what a link
# points at, and the shared libraries a binary loads (ldd: the whole closure) to /keep
# under its canonical path: /lib is a link to /usr/lib, and /keep is copied onto / later.
KEEP_FILES = r"""RUN set -eu; \
    keep() { \
        local path canon; \
        for path in "$@"; do \
            canon="$(readlink -f "${path%/*}")/${path##*/}"; \
            if [ -e "/keep$canon" ] || [ -L "/keep$canon" ]; then continue; fi; \
            mkdir -p "/keep${canon%/*}"; \
            cp -P "$canon" "/keep$canon"; \
            if [ -L "$canon" ]; then keep "$(readlink -f "$canon")"; \
            else keep $(ldd "$canon" 2>/dev/null | sed -n 's|.*=> \(/[^ ]*\) .*|\1|p'); fi; \
        done; \
    }; \
    for pattern in $FILES; do \
        set -- $pattern; \
        [ -e "$1" ] || { echo "Helper.image_files: nothing at $pattern" >&2; exit 1; }; \
        keep "$@"; \
    done
"""

# In the base the image is built on: what the base has already (the C library, OpenSSL,
# ...) is dropped from /keep, and a file kept twice (Debian's /usr/lib/git-core/git is a
# copy of /usr/bin/git) becomes a link to the first.
DROP_WHAT_BASE_HAS = r"""RUN set -eu; cd /keep; \
    find . ! -type d | sort | while read -r path; do \
        path=${path#.}; \
        if [ -L "/keep$path" ]; then \
            if [ -L "$path" ] && [ "$(readlink "$path")" = "$(readlink "/keep$path")" ]; then \
                rm "/keep$path"; \
            fi; \
        elif [ -f "$path" ] && cmp -s "$path" "/keep$path"; then \
            rm "/keep$path"; \
        fi; \
    done; \
    find . -type f | sort | xargs -r sha256sum | sort -s -k1,1 | \
        while read -r sum path; do \
            if [ "$sum" = "${first_sum:-}" ]; then ln -sf "$first" "/keep${path#.}"; \
            else first_sum=$sum; first=${path#.}; fi; \
        done; \
    find . -depth -type d -empty -delete
"""


def _rule(title: str) -> str:
    """A stage's heading, as wide as the template's."""
    return f"# --- {title} ".ljust(91, "-") + "\n"


def packages_stages(spec: ImageSpec) -> str:
    """Two build stages for a helper that runs only some files of its Debian packages
    (Helper.image_files): the packages installed (PACKAGES_IMAGE may have them already:
    images/build.sh passes tests/e2e/base-image.sh's base of the helper), the files copied
    out with the libraries they load, then cut to what the base lacks. The final stage
    copies the rest; the packages' other files (perl, docs, the commands the helper never
    runs) stay behind."""
    return "".join([
        _rule("packages: the Debian packages the helper runs, to take files from"),
        "FROM ${PACKAGES_IMAGE} AS packages\n",
        "# Helper.image_packages (installed unless PACKAGES_IMAGE has them).\n",
        _install(spec.packages),
        "# Helper.image_files, with what they link to and load.\n",
        f'ARG FILES="{" ".join(spec.files)}"\n',
        KEEP_FILES,
        "\n" + _rule("keep: the files the helper runs of them, that the base lacks"),
        "FROM ${BASE_IMAGE} AS keep\n",
        "COPY --from=packages /keep /keep\n",
        DROP_WHAT_BASE_HAS,
        "\n",
    ])  # fmt: skip


# The builder of a helper that compiles (Helper.image_build): it needs a C compiler and the
# Python headers, which the base has not. The full python image has them, and the same
# Python at the same path as python:3.12-slim (the venv links to it); images/build.sh
# passes tests/e2e/base-image.sh's builder of the Debian base where there is one.
BUILDER_ARG = """\
# The builder of a helper that compiles part of itself: the base's Python at the same path,
# with a C compiler and its headers (images/build.sh: the base's -builder image).
ARG BUILDER_IMAGE=docker.io/library/python:3.12
"""


def build_step(spec: ImageSpec) -> str:
    """Helper.image_build run in the builder, with Helper.image_build_requires installed
    beside the venv for it (images/build.sh puts their wheels in wheels/<machine>/build/)
    and removed again: the venv keeps what it built, not the tools."""
    requires = " ".join(f'"{requirement}"' for requirement in spec.build_requires)
    return (
        "# Helper.image_build, with Helper.image_build_requires beside the venv, not in it.\n"
        "RUN set -eu; \\\n"
        "    /opt/podkit/bin/pip install --quiet --no-index --no-cache-dir --no-compile \\\n"
        '        --target /tmp/build-tools --find-links "/wheels/$(uname -m)/build" \\\n'
        f"        {requires}; \\\n"
        f"    PYTHONPATH=/tmp/build-tools /opt/podkit/bin/python -B -m {spec.build}; \\\n"
        "    rm -rf /tmp/build-tools\n"
    )


def check_stage(spec: ImageSpec) -> str:
    """A stage on the base itself that runs `Helper.image_build --check`: the venv made in
    the builder image must run on the base, and what was built load there (the final stage
    copies the venv from this stage, so the build fails where it would not)."""
    return "".join([
        _rule("check: the venv on the base, and what was built loads there"),
        "FROM ${BASE_IMAGE} AS check\n",
        "COPY --from=builder /opt/podkit /opt/podkit\n",
        f"RUN /opt/podkit/bin/python -B -m {spec.build} --check\n",
        "\n",
    ])  # fmt: skip


def render(spec: ImageSpec) -> str:
    text = TEMPLATE.read_text()
    text = text.replace("@BUILDER_ARG@\n", BUILDER_ARG if spec.build else "")
    text = text.replace("@BUILDER@", "${BUILDER_IMAGE}" if spec.build else "${BASE_IMAGE}")
    text = text.replace("@BUILD@\n", build_step(spec) if spec.build else "")
    text = text.replace("@CHECK_STAGE@\n", check_stage(spec) if spec.build else "")
    text = text.replace("@VENV_STAGE@", "check" if spec.build else "builder")
    if spec.files:
        stage = packages_stages(spec)
        step = "# Only the files of Debian packages that the helper runs (Helper.image_files).\n"
        step += "COPY --from=keep /keep/ /\n"
    else:
        stage = ""
        step = packages_step(spec.packages) if spec.packages else ""
    text = text.replace("@PACKAGES_STAGES@\n", stage)
    text = text.replace("@PACKAGES@\n", step)
    for key, value in {
        "@HELPER@": spec.helper,
        "@EXTRAS@": spec.extras,
        "@ADMIN_PORT@": str(spec.admin_port),
        "@DESCRIPTION@": spec.description,
        "@SOURCE@": SOURCE,
    }.items():
        text = text.replace(key, value)
    # The template's header comment explains the placeholders; skip it.
    return HEADER + text[text.index("ARG BASE_IMAGE") :]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--list", action="store_true", help="print one line per helper")
    parser.add_argument("--registry", action="store_true", help="print the image registry")
    args = parser.parse_args(argv)
    if args.registry:
        print(REGISTRY)
        return 0
    stale = []
    for spec in specs():
        if args.list:
            requires = ",".join(spec.build_requires)
            print(spec.helper, spec.extras or "-", spec.admin_port, spec.build or "-",
                  requires or "-")  # fmt: skip
            continue
        wanted = render(spec)
        current = spec.containerfile.read_text() if spec.containerfile.exists() else ""
        if current != wanted:
            stale.append(spec.containerfile.name)
            if not args.check:
                spec.containerfile.write_text(wanted)
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run images/build.sh render)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
