"""Which event loop the commands run on (ops/eventloop.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import uvloop

from kube_event_watcher.ops.eventloop import EventLoopChoiceError, loop_factory, run


def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    assert loop_factory({}) is uvloop.new_event_loop
    assert loop_factory({"KEW_EVENT_LOOP": "uvloop"}) is uvloop.new_event_loop
    assert loop_factory({"KEW_EVENT_LOOP": " Asyncio "}) is asyncio.new_event_loop


def test_an_unknown_loop_is_refused_naming_the_choices() -> None:
    with pytest.raises(
        EventLoopChoiceError, match=r"KEW_EVENT_LOOP='tokio': expected one of uvloop, asyncio"
    ):
        loop_factory({"KEW_EVENT_LOOP": "tokio"})


def test_without_uvloop_the_default_falls_back_and_an_explicit_choice_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory({}) is asyncio.new_event_loop
    with pytest.raises(EventLoopChoiceError, match="uvloop is not installed"):
        loop_factory({"KEW_EVENT_LOOP": "uvloop"})


def test_run_runs_the_coroutine_on_the_chosen_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    monkeypatch.setenv("KEW_EVENT_LOOP", "asyncio")
    assert run(which()) == "asyncio"
    monkeypatch.setenv("KEW_EVENT_LOOP", "uvloop")
    assert run(which()) == "uvloop"


def test_the_cli_reports_a_wrong_choice_as_a_config_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kube_event_watcher.cli", "doctor"],
        env={"KEW_EVENT_LOOP": "tokio", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "KEW_EVENT_LOOP='tokio': expected one of uvloop, asyncio" in done.stderr
