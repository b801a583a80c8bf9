"""The notifier interface: an alert in, one of three outcomes out.

A notifier talks to one platform and nothing else. It never sleeps or retries by itself:
it says `RetryAfter` and the notify stage (queue, rate limit, retry, spool) decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from watcher.config.model import SecretsModel
from watcher.pipeline.model import Alert


class ReceiverConfig(SecretsModel):
    """Keys every receiver has; a notifier's own model adds its platform's keys."""

    name: str = Field(min_length=1)
    type: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Transient: try again, after `seconds` when the platform said so."""

    reason: str
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """The platform rejected this alert for good (bad token, bad payload): report once, drop."""

    reason: str


DeliveryResult = Delivered | RetryAfter | PermanentFailure


class Notifier(ABC):
    """One receiver. Subclasses set `config_model` and implement `send`."""

    config_model: ClassVar[type[ReceiverConfig]] = ReceiverConfig

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.name

    async def start(self) -> None:
        """Open files or sessions; called once before the first `send`."""

    @abstractmethod
    async def send(self, alert: Alert) -> DeliveryResult: ...

    async def close(self) -> None:
        """Release what `start` opened; called once at shutdown."""
