"""The documentation is for users: every YAML example in it works, and it carries no
internal history (issue numbers, commit hashes).

Every ```yaml block of every Markdown file in the repository is one of three kinds:

- a whole Kubernetes manifest (every document has apiVersion and kind). It is checked as
  the example pods under k8s/ are (tests/unit/test_k8s_manifests.py): the Kubernetes
  schemas (strict), restricted Pod Security, resources, probes and pinned tags; each
  podkit container's image must be one images/build.sh makes, and its `command`/`args`
  must pass the argument parser and settings validation of `podkit HELPER` as the image
  runs it (ConfigMaps and Secrets in the same block are mounted, as in the pod);
- containers to add to a pod, marked by a first line `# in a pod's spec.containers`: a
  YAML list of containers. They are put in the smallest pod every k8s/ example has around
  its containers (restricted securityContext, no service account token, an emptyDir for
  each volume they mount) and checked as a whole manifest, so each container must be
  complete (securityContext, resources, probes, preStop);
- a helper's settings file, marked by a first line `# podkit HELPER --config FILE`: it
  must pass that helper's settings validation as `podkit HELPER --config FILE` does.

Any other fragment of a manifest fails: make it whole or one of the marked kinds, so that
what a user copies is checked.
A setting naming a file that exists only in the user's pod (a Secret not in the block, a
token) cannot be read here; that one error is accepted, as `podkit` would only fail on
it in a pod that lacks the file.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from podkit.config import ConfigError, build_parser, load_settings
from tests.e2e.manifests import ROOT, pod_specs, podkit_helper
from tests.unit.test_k8s_manifests import (
    HELPERS,
    SCHEMA_VERSIONS,
    manifest_problems,
    podkit_settings,
    schema_check,
)

SKIPPED_DIRS = {".venv", ".git", "build", "node_modules"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
CONFIG_MARK = re.compile(r"^#\s*podkit (?P<helper>[a-z0-9-]+) --config\b")
CONTAINERS_MARK = re.compile(r"^#\s*in a pod's spec\.containers\b")
# A file a setting names that is not on this machine (see the module's docstring).
MISSING_FILE = re.compile(r"\bfile \S+ does not exist\b|: file does not exist")


def doc_files() -> list[Path]:
    """Every Markdown file of the repository: all are read by users. Hidden folders
    (.venv, .git, caches) and build output are not the repository's."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        found += [Path(folder, name) for name in files if name.endswith(".md")]
    return sorted(found)


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file (indented ones too, as in lists)."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        blocks.append(Block(path, index + 1, opening["lang"].lower(), "\n".join(body) + "\n"))
        index = end + 1
    return blocks


def yaml_blocks() -> list[Block]:
    return [b for p in doc_files() for b in code_blocks(p) if b.lang in ("yaml", "yml")]


YAML_BLOCKS = yaml_blocks()


def is_manifest(docs: list[Any]) -> bool:
    return bool(docs) and all(
        isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs
    )


def accept_missing_file(error: ConfigError) -> None:
    if not MISSING_FILE.search(str(error)):
        raise error


def check_manifest(block: Block, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for version in SCHEMA_VERSIONS:
            schema_check(doc, version)
    problems = [p for doc in docs for p in manifest_problems(block.where, doc)]
    assert problems == []
    for doc in docs:
        for _, _, spec in pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                if podkit_helper(container):
                    try:
                        podkit_settings(container, spec, docs)
                    except ConfigError as error:
                        accept_missing_file(error)


def pod_around(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod a `# in a pod's spec.containers` block is checked in (see the docstring)."""
    mounted = {m["name"] for c in containers for m in c.get("volumeMounts", [])}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "example"},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            **(
                {"volumes": [{"name": n, "emptyDir": {}} for n in sorted(mounted)]}
                if mounted
                else {}
            ),
        },
    }


def check_settings_file(block: Block, helper_name: str) -> Any:
    helper = HELPERS.get(helper_name)
    assert helper is not None, f"{block.where}: no helper {helper_name!r}"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / f"{helper_name}.yaml"
        config.write_text(block.text)
        return load_settings(
            helper.load_settings_class(),
            ["--config", str(config)],
            {},
            prog=f"podkit {helper_name}",
            admin_default=f"0.0.0.0:{helper.admin_port}",
        )


def check_block(block: Block) -> None:
    docs = [d for d in yaml.safe_load_all(block.text) if d is not None]
    mark = CONFIG_MARK.match(block.text)
    if mark:
        try:
            check_settings_file(block, mark["helper"])
        except ConfigError as error:
            accept_missing_file(error)
    elif CONTAINERS_MARK.match(block.text):
        assert len(docs) == 1 and isinstance(docs[0], list), f"{block.where}: not a list"
        check_manifest(block, [pod_around(docs[0])])
    elif is_manifest(docs):
        check_manifest(block, docs)
    else:
        pytest.fail(
            f"{block.where}: a YAML example must be a whole manifest (apiVersion and kind) "
            "or marked by its first line: `# in a pod's spec.containers` (a list of "
            "containers) or `# podkit HELPER --config FILE` (a helper's settings file)"
        )


def test_the_docs_have_yaml_examples_of_every_kind() -> None:
    def kind(block: Block) -> str:
        if CONFIG_MARK.match(block.text):
            return "settings"
        return "containers" if CONTAINERS_MARK.match(block.text) else "manifest"

    assert {kind(b) for b in YAML_BLOCKS} == {"settings", "containers", "manifest"}


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_example(block: Block) -> None:
    check_block(block)


# --- the checker itself finds what it should ----------------------------------------------

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: example}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: stats-exporter
      image: REGISTRY/podkit-stats-exporter:VERSION
      args: ARGS
      ports: [{name: admin, containerPort: 9706}]
      resources:
        requests: {cpu: 25m, memory: 32Mi}
        limits: {cpu: 50m, memory: 64Mi}
      startupProbe: {httpGet: {path: /startupz, port: admin}}
      livenessProbe: {httpGet: {path: /livez, port: admin}}
      readinessProbe: {httpGet: {path: /readyz, port: admin}}
      lifecycle:
        preStop: {exec: {command: [podkit, ctl, drain, --admin, "http://127.0.0.1:9706"]}}
      securityContext:
        runAsUser: 65532
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
"""


def pod_block(args: str, image: str = "REGISTRY/podkit-stats-exporter:VERSION") -> Block:
    from images.render import REGISTRY
    from podkit import __version__

    text = POD.replace("REGISTRY/podkit-stats-exporter:VERSION", image).replace("ARGS", args)
    text = text.replace("REGISTRY", REGISTRY).replace("VERSION", __version__)
    return Block(ROOT / "README.md", 1, "yaml", text)


def test_checker_passes_a_good_pod() -> None:
    check_block(pod_block('["--nginx-scrape-uri", "http://127.0.0.1:8080/stub_status"]'))


def test_checker_fails_an_argument_the_image_does_not_take() -> None:
    """The image's entrypoint is `podkit stats-exporter`: repeating the role in args is an
    unknown argument, and the container would exit 2 at every start."""
    with pytest.raises(ConfigError, match="unrecognized arguments: stats-exporter"):
        check_block(pod_block('["stats-exporter", "--nginx-scrape-uri", "http://x/"]'))


def test_checker_fails_a_bad_setting_value() -> None:
    with pytest.raises(ConfigError, match="--shutdown-timeout"):
        check_block(pod_block('["--shutdown-timeout", "soon"]'))


def test_checker_fails_an_image_the_build_does_not_make() -> None:
    """Images are named as the release publishes them: REGISTRY/podkit-HELPER:VERSION."""
    with pytest.raises(AssertionError, match=r"not one images/build\.sh makes"):
        check_block(pod_block("[]", image="podkit/stats-exporter:VERSION"))
    with pytest.raises(AssertionError, match=r"not one images/build\.sh makes"):
        check_block(pod_block("[]", image="podkit-stats-exporter:VERSION"))
    with pytest.raises(AssertionError, match="no helper 'stats' is registered"):
        check_block(pod_block("[]", image="REGISTRY/podkit-stats:VERSION"))
    with pytest.raises(AssertionError, match=r"is not from ghcr\.io/"):
        check_block(pod_block("[]", image="quay.io/someone/podkit-stats-exporter:VERSION"))
    with pytest.raises(AssertionError, match=r"tag 0\.0\.9 is not the version"):
        check_block(pod_block("[]", image="REGISTRY/podkit-stats-exporter:0.0.9"))


def test_checker_fails_a_command_that_replaces_the_role() -> None:
    block = pod_block("[]")
    block.text = block.text.replace("      args: []\n", "      command: [podkit, log-adapter]\n")
    with pytest.raises(AssertionError, match="not the image's `podkit stats-exporter`"):
        check_block(block)


def test_checker_runs_the_schema() -> None:
    import kubernetes_validate

    block = pod_block("[]")
    block.text = block.text.replace("      args: []\n", "      argz: []\n")
    with pytest.raises(kubernetes_validate.ValidationError, match="argz"):
        check_block(block)


def test_checker_fails_a_fragment_and_checks_a_settings_file() -> None:
    fragment = Block(ROOT / "README.md", 1, "yaml", "containers:\n  - name: x\n")
    with pytest.raises(pytest.fail.Exception, match="whole manifest"):
        check_block(fragment)
    good = "# podkit stats-exporter --config /etc/podkit/stats.yaml\ntimeout: 2s\n"
    check_block(Block(ROOT / "README.md", 1, "yaml", good))
    with pytest.raises(ConfigError, match="no_such_setting"):
        check_block(Block(ROOT / "README.md", 1, "yaml", good + "no_such_setting: 1\n"))


def test_containers_are_checked_in_a_pod() -> None:
    (pod,) = yaml.safe_load(pod_block("[]").text)["spec"]["containers"]
    text = "# in a pod's spec.containers\n" + yaml.safe_dump([pod])
    check_block(Block(ROOT / "README.md", 1, "yaml", text))
    del pod["resources"]["limits"]
    text = "# in a pod's spec.containers\n" + yaml.safe_dump([pod])
    with pytest.raises(AssertionError, match=r"limits\.cpu missing"):
        check_block(Block(ROOT / "README.md", 1, "yaml", text))


def test_a_missing_secret_file_is_the_one_error_accepted() -> None:
    mark = "# podkit pg-ambassador --config /etc/podkit/pg.yaml\n"
    missing = mark + "password_file: /nonexistent/password\n"
    check_block(Block(ROOT / "README.md", 1, "yaml", missing))


def test_code_blocks_finds_indented_blocks() -> None:
    text = "intro\n\n1. a list\n\n   ```yaml\n   a: 1\n   ```\n\n```sh\nls\n```\n"
    blocks = code_blocks(ROOT / "x.md", text)
    assert [(b.lang, b.text, b.line) for b in blocks] == [("yaml", "a: 1\n", 5), ("sh", "ls\n", 9)]


def test_every_readme_is_found() -> None:
    found = {str(p.relative_to(ROOT)) for p in doc_files()}
    assert {"README.md", "k8s/README.md", "images/README.md", "docs/architecture.md"} <= found
    assert not any(part.startswith(".") for f in found for part in Path(f).parts)


# --- shell examples -----------------------------------------------------------------------

SHELL_LANGS = ("", "sh", "bash", "shell", "console")
PODKIT_COMMAND = re.compile(r"(?:^|\s)(?:\S*/)?podkit (?P<helper>[a-z0-9-]+)(?P<rest>(?:\s.*)?)$")


def podkit_commands(text: str) -> list[tuple[str, list[str]]]:
    """(helper, argv) of each `podkit HELPER ...` command line in a shell block, up to a
    pipe, redirection or comment (continuation lines joined)."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        match = PODKIT_COMMAND.search(line)
        if not match or match["helper"] not in HELPERS:
            continue
        lexer = shlex.shlex(match["rest"], posix=True, punctuation_chars=True)
        lexer.commenters = "#"
        lexer.whitespace_split = True
        argv = []
        for token in lexer:
            if token and set(token) <= set("|&;<>()"):
                break
            argv.append(token)
        found.append((match["helper"], argv))
    return found


SHELL_COMMANDS = [
    (block, helper, argv)
    for path in doc_files()
    for block in code_blocks(path)
    if block.lang in SHELL_LANGS
    for helper, argv in podkit_commands(block.text)
]


@pytest.mark.parametrize(
    ("block", "helper", "argv"),
    SHELL_COMMANDS,
    ids=[f"{b.where}:{h}" for b, h, _ in SHELL_COMMANDS],
)
def test_shell_example_arguments_exist(block: Block, helper: str, argv: list[str]) -> None:
    """Every flag a documented `podkit HELPER ...` command uses is one the helper takes
    (the values are not validated: they name files and hosts of the reader's)."""
    if {"--help", "-h", "--man"} & set(argv):
        return
    settings = HELPERS[helper].load_settings_class()
    build_parser(f"podkit {helper}", settings).parse_args(argv)


def test_podkit_commands_are_found_in_shell_text() -> None:
    text = (
        "podkit log-shipper --path '/var/log/*.log' \\\n    --output stdout | jq .\n"
        ".venv/bin/podkit stats-exporter --nope  # a comment\n"
        "podkit ctl drain --admin http://127.0.0.1:9701\n"
    )
    assert podkit_commands(text) == [
        ("log-shipper", ["--path", "/var/log/*.log", "--output", "stdout"]),
        ("stats-exporter", ["--nope"]),
    ]
    with pytest.raises(ConfigError, match="unrecognized arguments: --nope"):
        test_shell_example_arguments_exist(
            Block(ROOT / "README.md", 1, "sh", ""), "stats-exporter", ["--nope"]
        )


# --- no internal history in the documentation ---------------------------------------------

# "issue 12", "issues 3 and 4", "stop 5", "PR 7", or "#12" used as a reference (not
# "7476#7476" in an nginx log line, not a Markdown heading, not a colour).
ISSUE_REF = re.compile(
    r"\b(?:issues?|stops?|PRs?|pull requests?)\s+#?\d+\b|(?<![\w&#/])#\d+\b", re.IGNORECASE
)
# A git hash as people paste one: abbreviated (7 to 12 hex digits) or full (40), with a
# digit and a letter, standing alone (not part of a UUID, a longer digest or a word).
# Longer or other-length hex strings (request ids, sha256 digests) are not git hashes.
HEX = re.compile(r"(?<![\w#-])(?:[0-9a-f]{7,12}|[0-9a-f]{40})(?![\w-])")
# Notes for podkit's own developers, which mean nothing to a user of the repository.
INTERNAL_NOTE = re.compile(
    r"For the top README|\bseed(?:'s)?\b|\bfrom the [\w-]+ work\b|\bDESIGN\.md\b"
)
# Exact texts that look like a reference but are not one, each with its reason.
ALLOWED: dict[str, str] = {}


def internal_references(text: str) -> list[str]:
    found = [m.group(0) for m in ISSUE_REF.finditer(text)]
    found += [m.group(0) for m in INTERNAL_NOTE.finditer(text)]
    found += [
        m.group(0)
        for m in HEX.finditer(text)
        if re.search(r"\d", m.group(0)) and re.search(r"[a-f]", m.group(0))
    ]
    return [f for f in found if f not in ALLOWED]


DOCS = doc_files()


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_no_issue_numbers_commit_hashes_or_internal_notes(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {ref}"
        for number, line in enumerate(lines, 1)
        for ref in internal_references(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("as measured in issue 17, and issues 3", ["issue 17", "issues 3"]),
        ("fixed in #12.", ["#12"]),
        ("Before (main at 8db38c0), load 12", ["8db38c0"]),
        (
            "at commit 0123456789abcdef0123456789abcdef01234567",
            ["0123456789abcdef0123456789abcdef01234567"],
        ),
        ("the done-when of stop 4", ["stop 4"]),
        ("2026/12/01 13:25:46 [notice] 7476#7476: using epoll", []),
        ('"request_id":"e5b1f7a2-5d2c-9b6a-a1b2-c3d4e5f60718"', []),
        ("req_id 6135cc3c285529263be9a257f57935f5", []),
        ("sha256:" + "ab12" * 16, []),
        ("color: #ff00aa; #aabbcc12", []),
        ("## Heading\n", []),
        ("1796131581233 ms, deadbeef, cafe1", []),
        ("## For the top README", ["For the top README"]),
        ("the seed's env names (from the pg-auth work)", ["seed's", "from the pg-auth work"]),
        ("as in the seed pod", ["seed"]),
        ("see DESIGN.md", ["DESIGN.md"]),
    ],
)
def test_internal_references_finds_what_it_should(text: str, found: list[str]) -> None:
    assert internal_references(text) == found
