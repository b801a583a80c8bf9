"""SIGHUP reload: a bad config is rejected with every problem logged and the running config
kept; a good one is handed over with a summary of what can change live."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from kube_event_watcher.config.loading import LoadedConfig, load_config, parse_config
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.ops.reload import (
    ReloadOutcome,
    diff_configs,
    reload_config,
    reload_on_sighup,
)
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.notifiers_support import until
from tests.support.daemon import EVENT_SOURCE_DEFAULTS, running_daemon
from tests.support.recording import RecordingNotifier

GOOD = """
receivers:
  - {name: oncall, type: stdout}
  - {name: archive, type: file, path: /tmp/kew-archive.jsonl}
routes:
  receiver: oncall
  routes:
    - {matchers: ['namespace=~"payments-.*"'], receiver: archive}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    return path


def test_bad_config_keeps_the_running_one_and_logs_each_problem(config_file: Path) -> None:
    running = load_config(str(config_file), config_models())
    config_file.write_text(
        GOOD.replace("receiver: archive", "receiver: archiv")
        + "ops: {self_alert_receiver: pager}\n"
    )
    with capture_logs() as logs:
        outcome = reload_config(str(config_file), running, config_models)
    assert not outcome.accepted
    assert outcome.loaded is running
    assert outcome.problems == (
        "routes.routes[0].receiver: no receiver named 'archiv' (known: oncall, archive)",
        "ops.self_alert_receiver: no receiver named 'pager' (known: oncall, archive)",
    )
    logged = [e["problem"] for e in logs if e["log_level"] == "error"]
    assert logged == list(outcome.problems)
    assert all(e["event"] == "config reload rejected; keeping the running config" for e in logs)


def test_unreadable_yaml_is_rejected(config_file: Path) -> None:
    running = load_config(str(config_file), config_models())
    config_file.write_text("routes: [unclosed\n")
    outcome = reload_config(str(config_file), running, config_models)
    assert not outcome.accepted
    assert "not valid YAML" in outcome.problems[0]


def test_good_config_says_what_is_live_and_what_needs_a_restart(config_file: Path) -> None:
    running = load_config(str(config_file), config_models())
    config_file.write_text(
        GOOD.replace("/tmp/kew-archive.jsonl", "/tmp/kew-other.jsonl")
        + "silences:\n  - {matchers: [kind=Pod], ends: '2030-01-01T00:00:00Z'}\n"
        + "sources:\n  - {namespaces: [payments]}\n"
    )
    outcome = reload_config(str(config_file), running, config_models)
    assert outcome.accepted
    assert outcome.loaded is not running
    assert outcome.changes.live == ("silences",)
    assert outcome.changes.restart == ("sources",)
    assert outcome.changes.receivers_changed == ("archive",)
    assert outcome.changes.summary() == (
        "applied live: silences; "
        "changed but needs a restart of the watches to take effect: sources, receivers (~archive)"
    )


def test_unchanged_config_reports_no_changes(config_file: Path) -> None:
    running = load_config(str(config_file), config_models())
    outcome = reload_config(str(config_file), running, config_models)
    assert outcome.accepted
    assert outcome.changes.empty
    assert outcome.changes.summary() == "no changes"


async def test_sighup_reloads_and_a_bad_edit_keeps_running(config_file: Path) -> None:
    current = load_config(str(config_file), config_models())
    applied: list[ReloadOutcome] = []
    reloaded = asyncio.Event()

    async def apply(outcome: ReloadOutcome) -> None:
        nonlocal current
        current = outcome.loaded
        applied.append(outcome)
        reloaded.set()

    def running() -> LoadedConfig:
        return current

    rejected = 0

    def counting_loader(path: str | None, models: object) -> LoadedConfig:
        nonlocal rejected
        try:
            return load_config(path, config_models())
        except Exception:
            rejected += 1
            raise

    stop = asyncio.Event()
    task = asyncio.create_task(
        reload_on_sighup(str(config_file), running, config_models, apply, stop, counting_loader)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)  # let it install the handler

    config_file.write_text("receivers: 3\n")
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(200):
        if rejected:
            break
        await asyncio.sleep(0.01)
    assert rejected == 1
    assert applied == []

    config_file.write_text(
        GOOD + "silences:\n  - {matchers: [kind=Pod], ends: '2030-01-01T00:00:00Z'}\n"
    )
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.wait_for(reloaded.wait(), 5)
    assert applied[0].changes.live == ("silences",)
    assert len(current.config.silences) == 1

    stop.set()
    await asyncio.wait_for(task, 5)
    structlog.reset_defaults()


async def test_a_receiver_added_by_a_reload_gets_the_alerts_routed_to_it(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    """The reload starts the new receiver's lane before its route applies: the next alert
    goes to it, and the receivers that were there go on as before."""
    recorder = RecordingNotifier("recorder")
    added = tmp_path / "pager.jsonl"
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
        await api_double.api.wait_watches(1)
        await api_double.api.create_event("shop", "BeforeReload", "web-0")
        await until(lambda: len(recorder.alerts) == 1, "the first alert")
        new = parse_config(
            {
                **EVENT_SOURCE_DEFAULTS,
                "receivers": [
                    {"name": "recorder", "type": "stdout"},
                    {"name": "pager", "type": "file", "path": str(added)},
                ],
                "routes": {
                    "receiver": "recorder",
                    "routes": [{"matchers": ["namespace=payments"], "receiver": "pager"}],
                },
            },
            "reloaded",
            config_models(),
            env={},
        )
        changes = diff_configs(daemon.loaded, new)
        assert changes.summary() == "applied live: routes, receivers (+pager)"
        await daemon.apply_reload(ReloadOutcome(new, True, (), changes))
        await api_double.api.create_event("payments", "Paged", "api-0")
        await api_double.api.create_event("shop", "StillRecorded", "web-1")
        await until(lambda: len(recorder.alerts) == 2, "the shop alert")
        pager = daemon.delivery.lanes["pager"]
        await until(lambda: pager.sent == 1, "the payments alert delivered to pager")
        metrics = daemon.metrics.render()[0].decode()
    assert [a.reason for a in recorder.alerts] == ["BeforeReload", "StillRecorded"]
    assert orjson.loads(added.read_bytes())["reason"] == "Paged"
    assert 'kew_notifications_total{outcome="delivered",receiver="pager"} 1.0' in metrics
