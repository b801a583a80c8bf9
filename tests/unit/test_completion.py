"""`kube-event-watcher completion bash|zsh`: the scripts a shell loads, tried in that shell."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kube_event_watcher.cli import main


def script(shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    assert main(["completion", shell]) == 0
    path = tmp_path / f"kube-event-watcher.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def bash_complete(loaded: Path, words: list[str], cwd: Path) -> list[str]:
    """What bash offers for the last of `words`, as it would after a Tab."""
    line = " ".join(words)
    program = (
        f"source {loaded}\n"
        f"COMP_WORDS=({line})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE='{line}'\n"
        f"COMP_POINT={len(line)}\n"
        "_shtab_kube_event_watcher\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_subcommands_options_and_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    loaded = script("bash", capsys, tmp_path)
    (tmp_path / "routing.yaml").write_text("{}\n")
    assert bash_complete(loaded, ["kube-event-watcher", "ch"], tmp_path) == ["check-config"]
    assert "--kubeconfig" in bash_complete(loaded, ["kube-event-watcher", "run", "--"], tmp_path)
    assert "--objects" in bash_complete(loaded, ["kube-event-watcher", "replay", "--"], tmp_path)
    # -c takes a file: the file in the working directory is offered
    assert "routing.yaml" in bash_complete(
        loaded, ["kube-event-watcher", "run", "-c", "rout"], tmp_path
    )


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script_as_a_completion_function(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    loaded = script("zsh", capsys, tmp_path)
    site = tmp_path / "site-functions"
    site.mkdir()
    (site / "_kube-event-watcher").write_text(loaded.read_text())
    # what a user does: the file on $fpath, compinit, then zsh knows whom to ask
    program = (
        f"fpath=({site} $fpath)\n"
        "autoload -Uz compinit && compinit -u -d " + str(tmp_path / "zcompdump") + "\n"
        'print -r -- "${_comps[kube-event-watcher]}"\n'
    )
    done = subprocess.run(
        ["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "_kube-event-watcher"
    assert "check-config" in loaded.read_text()


def test_an_unknown_shell_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["completion", "fish"])
    assert exited.value.code == 2
    assert "choose from 'bash', 'zsh'" in capsys.readouterr().err
