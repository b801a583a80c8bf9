"""A notifier that records what it is given, and lets a test wait for it without sleeping."""

from __future__ import annotations

import asyncio

from kube_event_watcher.notifiers.base import Delivered, DeliveryResult, Notifier, ReceiverConfig
from kube_event_watcher.pipeline.model import Alert


class RecordingNotifier(Notifier):
    resolved_by_default = True

    def __init__(self, name: str = "recorder", send_resolved: bool | None = None) -> None:
        super().__init__(ReceiverConfig(name=name, type="recording", send_resolved=send_resolved))
        self.alerts: list[Alert] = []
        self._changed = asyncio.Condition()

    async def send(self, alert: Alert) -> DeliveryResult:
        async with self._changed:
            self.alerts.append(alert)
            self._changed.notify_all()
        return Delivered()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Alert]:
        """Wait until at least `count` alerts arrived; fail the test after `timeout`."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.alerts) >= count), timeout
            )
        return list(self.alerts)

    @property
    def event_uids(self) -> list[str]:
        return [a.occurrences[0].uid for a in self.alerts]
