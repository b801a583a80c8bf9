"""A watch that goes stale makes the daemon alert about itself, and resolve when it recovers."""

from __future__ import annotations

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier


async def test_a_stale_watch_alerts_about_itself_then_resolves(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    clock = FakeClock()
    config = {
        "sources": [{"watch_timeout": "10s"}],
        "ops": {
            "listen": "",
            "stale_after": "11s",
            "self_alert_receiver": "recorder",
            "self_alert_interval": "100ms",
        },
    }
    api.watch_gate.clear()  # the list works, then the watch never opens: the stream is stale
    async with running_daemon(
        api_double.kubeconfig, MemoryStore(), recorder, config, clock=clock
    ) as daemon:
        await daemon.runners[0].listed.wait()
        assert recorder.alerts == []
        clock.advance(12)  # no event, bookmark or watch for longer than stale_after
        [firing] = await recorder.wait_for(1)
        assert daemon.watches[0].relists == 0
        api.watch_gate.set()
        await daemon.runners[0].wait_watching()
        alerts = await recorder.wait_for(2)
    assert (firing.status, firing.reason, firing.cluster) == ("firing", "WatchStale", "default")
    assert "Alerts from this scope are not arriving" in firing.note
    assert [a.status for a in alerts] == ["firing", "resolved"]
    assert alerts[1].key == firing.key
