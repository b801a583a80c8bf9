"""Per-receiver delivery settings: rate limit, queue, retries, circuit breaker, digest."""

from __future__ import annotations

from pydantic import Field

from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.model import StrictModel


class RateLimitConfig(StrictModel):
    """A receiver's send rate; the notifier's documented platform limit when not given."""

    per_minute: float = Field(gt=0, description="average sends per minute")
    burst: int = Field(default=1, ge=1, description="sends allowed back to back")


class DeliveryConfig(StrictModel):
    """How the notify stage treats one receiver (the defaults suit every platform)."""

    queue_size: int = Field(
        default=1000, ge=1, description="alerts held in memory; the rest wait in the spool"
    )
    send_timeout: Duration = Field(default=30.0, gt=0)
    retry_initial: Duration = Field(default=1.0, gt=0, description="first retry wait")
    retry_max: Duration = Field(default=300.0, gt=0, description="longest retry wait")
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive failures that open the circuit"
    )
    breaker_cooldown: Duration = Field(default=30.0, gt=0)
    digest_after: Duration | None = Field(
        default=300.0,
        description="combine queued alerts into one digest once the oldest waited this long",
    )
    digest_max: int = Field(default=50, ge=2, description="alerts combined into one digest at most")
