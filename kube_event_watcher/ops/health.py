"""Is the event stream alive? Readiness and the self-alert decide from per-watch activity.

A watch is fresh when it saw an event, a bookmark, an opened watch or a successful relist
within `stale_after`. Exporters that only check "the process is up" report healthy while
delivering nothing (bitnami/charts#19406, kube-eventer#175); this looks at the stream.
Pure: every function takes `now` (monotonic seconds for activity, epoch for alert times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.durations import format_duration
from kube_event_watcher.pipeline.model import Alert, ObjectRef, stable_id

log = structlog.get_logger(__name__)

SELF_ALERT_REASON = "WatchStale"


@dataclass(frozen=True, slots=True)
class WatchStatus:
    """One watch as the ops layer sees it. `last_activity` is monotonic seconds (None: never);
    `established` turns true after the first successful list and stays true across reconnects
    (staleness, not a single reconnect, is what makes a watch unready)."""

    name: str
    cluster: str
    namespace: str | None
    scope: str
    established: bool
    last_activity: float | None


WatchStatuses = Callable[[], Sequence[WatchStatus]]
"""What the daemon hands to the ops layer: the current status of every watch."""


@dataclass(frozen=True, slots=True)
class WatchHealth:
    status: WatchStatus
    fresh: bool
    age: float | None
    problem: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "watch": self.status.name,
            "cluster": self.status.cluster,
            "scope": self.status.scope,
            "established": self.status.established,
            "last_activity_age_seconds": None if self.age is None else round(self.age, 3),
            "fresh": self.fresh,
            **({"problem": self.problem} if self.problem else {}),
        }


def assess(status: WatchStatus, now: float, stale_after: float) -> WatchHealth:
    age = None if status.last_activity is None else max(0.0, now - status.last_activity)
    if not status.established:
        return WatchHealth(
            status, False, age, "not established yet: the first list has not succeeded"
        )
    if age is None or age > stale_after:
        shown = "ever" if age is None else format_duration(round(age))
        limit = format_duration(stale_after)
        problem = f"stale: no event, bookmark or relist for {shown} (stale_after {limit})"
        return WatchHealth(status, False, age, problem)
    return WatchHealth(status, True, age, None)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    watches: tuple[WatchHealth, ...]
    stale_after: float

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ready": self.ready,
            "stale_after_seconds": self.stale_after,
            "watches": [w.as_json() for w in self.watches],
        }
        if not self.watches:
            body["problem"] = "no watch is running yet"
        else:
            body["stale"] = [w.status.name for w in self.watches if not w.fresh]
        return body


def readiness(statuses: Sequence[WatchStatus], now: float, stale_after: float) -> Readiness:
    """Ready when there is at least one watch and every watch is established and fresh."""
    health = tuple(assess(s, now, stale_after) for s in statuses)
    return Readiness(bool(health) and all(h.fresh for h in health), health, stale_after)


# --- the self-alert ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Failing:
    since_wall: float
    alerted: bool


class StaleWatchMonitor:
    """Decides when to alert about a stale watch and when to resolve it.

    A watch that never got established counts as stale once it has existed for `stale_after`
    (it was first seen by this monitor then); a fresh watch resolves an alert that was sent.
    """

    def __init__(self, stale_after: float, receiver: str) -> None:
        self.stale_after = stale_after
        self.receiver = receiver
        self._first_seen: dict[str, float] = {}
        self._failing: dict[str, _Failing] = {}

    def check(self, statuses: Sequence[WatchStatus], now: float, wall: float) -> list[Alert]:
        """The alerts to send now: firing for newly stale watches, resolved for recovered."""
        out: list[Alert] = []
        seen = set()
        for status in statuses:
            seen.add(status.name)
            first = self._first_seen.setdefault(status.name, now)
            health = assess(status, now, self.stale_after)
            failing = self._failing.get(status.name)
            if health.fresh:
                if failing is not None:
                    del self._failing[status.name]
                    if failing.alerted:
                        out.append(
                            self._alert(status, health, "resolved", failing.since_wall, wall)
                        )
                continue
            if not status.established and now - first <= self.stale_after:
                continue  # still starting up
            if failing is None:
                failing = self._failing[status.name] = _Failing(wall, False)
            if not failing.alerted:
                failing.alerted = True
                out.append(self._alert(status, health, "firing", failing.since_wall, wall))
        for gone in set(self._first_seen) - seen:  # a watch removed by a reload
            self._first_seen.pop(gone, None)
            self._failing.pop(gone, None)
        return out

    def _alert(
        self, status: WatchStatus, health: WatchHealth, state: str, since: float, wall: float
    ) -> Alert:
        key = stable_id("kube-event-watcher", "self", status.name, SELF_ALERT_REASON)
        if state == "firing":
            note = (
                f"The event watch for {status.scope} is {health.problem}. Alerts from this "
                "scope are not arriving. Check the daemon's log for 'watch interrupted' and "
                "whether the API server is reachable (kube-event-watcher doctor)."
            )
        else:
            note = f"The event watch for {status.scope} is receiving again."
        return Alert(
            key=key,
            notification_id=stable_id(key, state, repr(since)),
            status=state,  # type: ignore[arg-type]
            cluster=status.cluster,
            namespace=status.namespace or "",
            regarding=ObjectRef(
                kind="EventWatch", namespace=status.namespace or "", name=status.name, uid=""
            ),
            reason=SELF_ALERT_REASON,
            type="Warning" if state == "firing" else "Normal",
            note=note,
            count=1,
            first_seen=since,
            last_seen=wall,
            labels={"source": "kube-event-watcher"},
            facts={
                "watch": status.name,
                "scope": status.scope,
                "stale_after_seconds": self.stale_after,
                "last_activity_age_seconds": health.age,
                "receiver": self.receiver,
            },
        )


SendAlert = Callable[[Alert], Awaitable[None]]


async def run_self_alert_loop(
    monitor: StaleWatchMonitor,
    statuses: WatchStatuses,
    send: SendAlert,
    clock: Clock,
    stop: asyncio.Event,
    interval: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Check every `interval` until `stop`; a failed send is logged and retried next time."""
    pending: list[Alert] = []
    while not stop.is_set():
        pending.extend(monitor.check(statuses(), clock.monotonic(), clock.now()))
        while pending:
            alert = pending[0]
            try:
                await send(alert)
            except Exception as exc:  # the self-alert must not take the daemon down
                log.error(
                    "self-alert could not be sent; will retry",
                    receiver=monitor.receiver,
                    cluster=alert.cluster,
                    watch=alert.regarding.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                break
            pending.pop(0)
            log.warning(
                "self-alert sent",
                receiver=monitor.receiver,
                cluster=alert.cluster,
                watch=alert.regarding.name,
                status=alert.status,
            )
        await sleep(interval)
