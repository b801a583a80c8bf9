"""The notifier interface: an alert in, one of three outcomes out.

A notifier talks to one platform and nothing else. It never sleeps or retries by itself:
it says `RetryAfter` and the notify stage (queue, rate limit, retry, spool) decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from kube_event_watcher.config.delivery import DeliveryConfig, RateLimitConfig
from kube_event_watcher.config.model import SecretsModel
from kube_event_watcher.pipeline.model import Alert


class ReceiverConfig(SecretsModel):
    """Keys every receiver has; a notifier's own model adds its platform's keys."""

    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    rate_limit: RateLimitConfig | None = None
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    send_resolved: bool | None = None
    """Send "resolved" notifications here; None: the platform's default (on for incident
    systems that close incidents with them, off for chat rooms)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Transient: try again, after `seconds` when the platform said so.

    `max_retries`, when set, caps how often the delivery lane retries this alert (counting
    every retry of it); after that it is dropped as a permanent failure. For answers a
    platform documents as worth only a few retries (WeCom's errcode -1: at most 3).
    """

    reason: str
    seconds: float | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """The platform rejected this alert for good (bad token, bad payload): report once, drop."""

    reason: str


DeliveryResult = Delivered | RetryAfter | PermanentFailure


class Notifier(ABC):
    """One receiver. Subclasses set `config_model` and implement `send`."""

    config_model: ClassVar[type[ReceiverConfig]] = ReceiverConfig
    # The platform's documented send limit, the delivery lane's token bucket unless the
    # receiver sets `rate_limit`; None = no limit (a local file, stdout).
    default_rate_limit: ClassVar[RateLimitConfig | None] = None
    # Whether several queued alerts may be combined into one digest message when the
    # receiver falls behind (False where each alert is an identity: PagerDuty, Alertmanager).
    can_digest: ClassVar[bool] = True
    # Resolved notifications are opt-in per receiver; incident systems (PagerDuty,
    # Alertmanager), webhooks and archives want them by default, chat rooms do not.
    resolved_by_default: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.name
        # The platform's answer to the last send, verbatim (for `test-notify`).
        self.last_answer: str | None = None
        # Where the notifier may keep what it needs across restarts (the spool directory,
        # set by the delivery stage); None: nothing outlives the process (test-notify).
        self.state_dir: Path | None = None

    @property
    def sends_resolved(self) -> bool:
        chosen = getattr(self.config, "send_resolved", None)
        return self.resolved_by_default if chosen is None else bool(chosen)

    def explain(self, status: int, body: object) -> str | None:
        """What a platform's error answer means and what to do about it, when it is known.

        `status` is the HTTP status (an SMTP reply code for e-mail); `body` the answer's
        body, parsed when it is JSON, else its text (`http.parse_body`).
        """
        return None

    async def start(self) -> None:
        """Open files or sessions; called once before the first `send`."""

    @abstractmethod
    async def send(self, alert: Alert) -> DeliveryResult: ...

    @property
    def takes_occurrences(self) -> bool:
        """Whether it publishes occurrences (`records: occurrences`, a fleet's edge): it gets
        every occurrence that passes the filters, before aggregation, and no alerts."""
        return getattr(self.config, "records", "alerts") == "occurrences"

    @property
    def batch_size(self) -> int:
        """Alerts one request may carry (`send_many`); 1 where the platform takes one
        message per request. A receiver's `batch_size` key sets it where it is offered."""
        return int(getattr(self.config, "batch_size", 1))

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        """The alerts of one request, one outcome for all of them: the lane sends every
        request through here; more than one alert only where `batch_size` allows it."""
        if len(alerts) == 1:
            return await self.send(alerts[0])
        raise NotImplementedError(f"{type(self).__name__} sends one alert per request")

    async def close(self) -> None:
        """Release what `start` opened; called once at shutdown."""
