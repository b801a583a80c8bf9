"""Alerts as lines on standard output: readable on a terminal, JSON for a log collector."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

import orjson

from watcher.notifiers.base import Delivered, DeliveryResult, Notifier, ReceiverConfig
from watcher.notifiers.rendering import alert_line, alert_record
from watcher.pipeline.model import Alert


class StdoutConfig(ReceiverConfig):
    format: Literal["auto", "text", "json"] = "auto"


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

    async def send(self, alert: Alert) -> DeliveryResult:
        if self.json:
            self.stream.write(orjson.dumps(alert_record(alert)).decode() + "\n")
        else:
            self.stream.write(alert_line(alert) + "\n")
        self.stream.flush()
        return Delivered()
