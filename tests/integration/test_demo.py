"""`kube-event-watcher demo`'s parts that need no cluster: its config, its build step."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_event_watcher.config.loading import load_config
from kube_event_watcher.demo import CONTROLPLANE, DemoError, build, source_tree, write_config
from kube_event_watcher.notifiers.registry import config_models


def test_the_demo_config_is_valid_and_quick(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    loaded = load_config(str(write_config(kubeconfig, tmp_path)), config_models())
    config = loaded.config
    assert config.clusters[0].kubeconfig == str(kubeconfig)
    assert config.enrichment.enabled and config.enrichment.watch_objects
    # The stuck-Terminating Pod and the NotReady Node show up within the demo's minute.
    assert config.detectors.enabled and config.detectors.report_existing
    assert config.detectors.terminating_after <= 30
    assert config.detectors.node_condition_after <= 30
    assert config.aggregation.group.wait == 10
    assert config.state.backend == "memory"
    assert config.ops.listen == ""
    assert [r.type for r in config.receivers] == ["stdout"]


def test_the_demo_runs_from_this_checkout() -> None:
    assert (source_tree() / CONTROLPLANE / "build.sh").is_file()


def fake_tree(tmp_path: Path, script: str) -> Path:
    build_sh = tmp_path / CONTROLPLANE / "build.sh"
    build_sh.parent.mkdir(parents=True)
    build_sh.write_text(script)
    return tmp_path


async def test_build_reports_each_step_and_returns_the_bin_dir(tmp_path: Path) -> None:
    tree = fake_tree(
        tmp_path,
        "echo '[build.sh 10:00:00] kube-apiserver: building' >&2\n"
        "echo 'go: downloading x' >&2\n"
        "echo /cache/bin\n",
    )
    steps: list[str] = []
    assert await build(tree, steps.append) == Path("/cache/bin")
    assert steps == ["build: kube-apiserver: building"]


async def test_a_failed_build_says_why(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path, "echo '[build.sh 10:00:00] ERROR: no go' >&2\nexit 1\n")
    with pytest.raises(DemoError, match="ERROR: no go"):
        await build(tree, lambda _: None)
