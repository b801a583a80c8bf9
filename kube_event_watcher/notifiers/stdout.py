"""Alerts as lines on standard output: readable on a terminal, JSON for a log collector."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

import orjson

from kube_event_watcher.notifiers.base import Delivered, DeliveryResult, Notifier, ReceiverConfig
from kube_event_watcher.notifiers.message import MessageRenderer
from kube_event_watcher.notifiers.rendering import alert_line, alert_record
from kube_event_watcher.pipeline.model import Alert


class StdoutConfig(ReceiverConfig):
    format: Literal["auto", "text", "json", "message"] = "auto"
    """text: one line per alert; json: one record per alert; message: the whole message a
    person gets (the plain-text e-mail template: owner, node, counts, facts, log tail)."""


class StdoutNotifier(Notifier):
    resolved_by_default = True
    config_model = StdoutConfig
    can_digest = False  # a log of alerts keeps one record per alert

    def __init__(self, config: StdoutConfig, stream: TextIO | None = None) -> None:
        super().__init__(config)
        self.stream = stream or sys.stdout
        fmt = config.format
        if fmt == "auto":
            fmt = "text" if self.stream.isatty() else "json"
        self.json = fmt == "json"
        self.renderer = (
            MessageRenderer("stdout", "email-text", "plain", "en") if fmt == "message" else None
        )

    async def send(self, alert: Alert) -> DeliveryResult:
        if self.json:
            self.stream.write(orjson.dumps(alert_record(alert)).decode() + "\n")
        elif self.renderer is not None:
            message = self.renderer.render(alert)
            self.stream.write(f"=== {message.title}\n{message.text.strip()}\n\n")
        else:
            self.stream.write(alert_line(alert) + "\n")
        self.stream.flush()
        return Delivered()
