"""`kube-event-watcher examples`: the example configs an installed daemon ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_event_watcher.cli import EXIT_CONFIG, main

CHECKOUT_CONFIGS = Path(__file__).resolve().parents[2] / "config"


def test_the_list_names_every_example_with_its_first_comment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["examples"]) == 0
    listed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert set(listed) == {p.stem for p in CHECKOUT_CONFIGS.glob("*.yaml")}
    assert (
        listed["minimal"] == "Warning events of the current kubeconfig context, readable on stdout."
    )


def test_an_example_prints_as_the_file_and_loads_as_a_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["examples", "minimal.yaml"]) == 0
    printed = capsys.readouterr().out
    assert printed == (CHECKOUT_CONFIGS / "minimal.yaml").read_text()
    saved = tmp_path / "config.yaml"
    saved.write_text(printed)
    capsys.readouterr()
    assert main(["check-config", "-c", str(saved)]) == 0
    assert "field_selector: type=Warning" in capsys.readouterr().out


def test_an_unknown_example_names_the_ones_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "minimall"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "no example 'minimall'" in err
    assert "minimal," in err
