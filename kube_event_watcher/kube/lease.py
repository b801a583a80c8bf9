"""Leader election on a coordination.k8s.io/v1 Lease, in the manner of client-go's.

Every candidate reads the Lease every retry period. The holder renews it (writes its
`renewTime`); a standby takes it over when the holder has not changed it for
`leaseDurationSeconds` *as measured on the standby's own clock from when it saw the last
change* (client-go's `observedTime`), so clock skew between hosts does not matter, only
clock rate. Every write carries the `resourceVersion` it read, so of two candidates racing
for an expired lease exactly one wins; the other gets 409 Conflict and reads again.

A leader steps down when it has not renewed for `renew_deadline`, counted from *before* the
last successful renewal was sent; a standby can only take over `lease_duration` after it
saw that renewal, which is later still. renew_deadline < lease_duration keeps the two
leaders apart in time. https://pkg.go.dev/k8s.io/client-go/tools/leaderelection
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp
import structlog

from kube_event_watcher.clock import Clock
from kube_event_watcher.kube.errors import ApiError
from kube_event_watcher.kube.http import KubeHttp

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class LeadershipLost(Exception):
    """This replica is no longer the leader: it must stop watching and sending at once."""


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The Lease's spec fields that decide leadership, and the version they were read at."""

    holder: str  # "" when released
    duration: float  # leaseDurationSeconds
    renew_time: str | None
    acquire_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or 0),
            renew_time=spec.get("renewTime"),
            acquire_time=spec.get("acquireTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=meta.get("resourceVersion"),
        )

    def same_term(self, other: LeaseRecord) -> bool:
        """Equal apart from the resourceVersion (a label change is not a renewal)."""
        return (self.holder, self.duration, self.renew_time, self.acquire_time) == (
            other.holder,
            other.duration,
            other.renew_time,
            other.acquire_time,
        ) and self.transitions == other.transitions


@dataclass(frozen=True, slots=True)
class Observation:
    """The lease as this candidate last saw it change, and when (its own monotonic clock)."""

    record: LeaseRecord
    observed_at: float


class Action(Enum):
    CREATE = "create"  # no Lease yet
    TAKE_OVER = "take over"  # released or expired: write our identity over it
    RENEW = "renew"  # ours: write a fresh renewTime
    WAIT = "wait"  # someone else holds it and it has not expired


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    observation: Observation | None
    holder: str = ""
    expires_at: float | None = None  # WAIT: when the holder's lease runs out, by our clock


def decide(
    lease: LeaseRecord | None, previous: Observation | None, now: float, me: str
) -> Decision:
    """What this candidate should do with the lease it just read. Pure: `now` is monotonic.

    Expiry is judged from when *we* saw the record change (`previous.observed_at`), never from
    the holder's timestamps: their clock may be off from ours.
    """
    if lease is None:
        return Decision(Action.CREATE, None)
    if previous is not None and previous.record.same_term(lease):
        observation = Observation(lease, previous.observed_at)
    else:
        observation = Observation(lease, now)
    if lease.holder == me:
        return Decision(Action.RENEW, observation, me)
    if not lease.holder:
        return Decision(Action.TAKE_OVER, observation)
    expires_at = observation.observed_at + lease.duration
    if now >= expires_at:
        return Decision(Action.TAKE_OVER, observation, lease.holder)
    return Decision(Action.WAIT, observation, lease.holder, expires_at)


def micro_time(epoch: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_spec(
    lease: LeaseRecord | None, me: str, wall_now: float, lease_duration: float
) -> dict[str, Any]:
    """The spec that makes `me` the holder: keep acquireTime on a renewal, count transitions."""
    stamp = micro_time(wall_now)
    renewing = lease is not None and lease.holder == me
    transitions = 0 if lease is None else lease.transitions + (0 if renewing else 1)
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": math.ceil(lease_duration),
        "acquireTime": (lease.acquire_time if renewing and lease else None) or stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def release_spec(lease: LeaseRecord, wall_now: float) -> dict[str, Any]:
    """The spec a leader leaves on graceful shutdown: no holder, so a standby takes over at
    its next read instead of waiting for the lease to run out (client-go does the same)."""
    stamp = micro_time(wall_now)
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": lease.transitions,
    }


def default_identity(env: Mapping[str, str]) -> str:
    """$POD_NAME in a pod (unique, and one daemon per pod), else hostname_pid."""
    pod = env.get("POD_NAME")
    return pod if pod else f"{socket.gethostname()}_{os.getpid()}"


_TRANSIENT = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


class LeaderElector:
    """Acquires, holds and releases one Lease for one identity. Needs get, create and update
    on `leases` in `namespace` (coordination.k8s.io)."""

    def __init__(
        self,
        http: KubeHttp,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = http
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self._sleep = sleep
        self._observed: Observation | None = None
        self._renewed_at: float | None = None  # monotonic, taken before the renewal was sent
        self.holder: str | None = None  # the holder as last seen
        self.transitions = 0
        # A claim whose write answered too late to lead on (see try_acquire_or_renew): the
        # holder it was taken from, for the log line of the renewal that then leads.
        self._slow_claim_from: str | None = None
        self.log = log.bind(lease=f"{namespace}/{name}", identity=identity)

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def describe(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def leading(self) -> bool:
        """True while this replica may act as the leader (inside its renew deadline)."""
        return (
            self._renewed_at is not None
            and self.clock.monotonic() < self._renewed_at + self.timings.renew_deadline
        )

    async def _get(self) -> tuple[dict[str, Any] | None, LeaseRecord | None]:
        try:
            obj = await self.http.request_json("GET", self._path, purpose="lease")
        except ApiError as exc:
            if exc.status == 404:
                return None, None
            raise
        return obj, LeaseRecord.from_object(obj)

    async def try_acquire_or_renew(self) -> bool:
        """One round: read, decide, write. True when we hold the lease afterwards; False when
        someone else holds it or won a race (409). API errors propagate."""
        started = self.clock.monotonic()
        obj, record = await self._get()
        decision = decide(record, self._observed, started, self.identity)
        self._observed = decision.observation
        if decision.action is Action.WAIT:
            if self.holder != decision.holder:
                self.log.info(
                    "standing by: the lease is held by another replica", holder=decision.holder
                )
            self.holder = decision.holder
            return False
        spec = claim_spec(record, self.identity, self.clock.now(), self.timings.lease_duration)
        try:
            if obj is None:
                written = await self.http.request_json(
                    "POST",
                    f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases",
                    body={
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": spec,
                    },
                    purpose="lease",
                )
            else:
                # resourceVersion in the body makes this a compare-and-swap: 409 if it moved.
                written = await self.http.request_json(
                    "PUT",
                    self._path,
                    body={**obj, "spec": {**(obj.get("spec") or {}), **spec}},
                    purpose="lease",
                )
        except ApiError as exc:
            if exc.status == 409:  # another candidate wrote first (or created it first)
                self.log.info("lost a race for the lease; reading it again")
                return False
            raise
        new = LeaseRecord.from_object(written)
        self._observed = Observation(new, started)
        self._renewed_at = started
        self.holder = self.identity
        self.transitions = new.transitions
        claimed = decision.action is not Action.RENEW
        took = self.clock.monotonic() - started
        if claimed and took >= self.timings.renew_deadline:
            # The lease is ours in the API, but its renewal counts from before the write, and
            # the answer came after the renew deadline: leading now would mean stepping down
            # at once (and exiting). Renew it first, at the next try, then lead.
            self._slow_claim_from = decision.holder or ""
            self.log.warning(
                "the lease was claimed, but its write took longer than the renew deadline; "
                "renewing it before leading",
                seconds=round(took, 1),
                renew_deadline=self.timings.renew_deadline,
            )
            return False
        if claimed or self._slow_claim_from is not None:
            previous = decision.holder if claimed else self._slow_claim_from
            self._slow_claim_from = None
            self.log.info(
                "became the leader", previous=previous or None, transitions=new.transitions
            )
        return True

    async def acquire(self, stop: asyncio.Event, may_try: Callable[[], bool] | None = None) -> bool:
        """Try every retry period until we lead (True) or `stop` is set (False). `may_try`,
        when given, is asked before each try: a sharded replica that holds its share of the
        shards does not take more (it keeps watching for the share to change)."""
        while not stop.is_set():
            try:
                if (may_try is None or may_try()) and await self.try_acquire_or_renew():
                    return True
            except _TRANSIENT as exc:
                self.log.warning("cannot read or write the lease; will retry", error=str(exc))
            wait = self.timings.retry_period
            if self._observed is not None and self.holder:
                expires = self._observed.observed_at + self._observed.record.duration
                wait = min(wait, max(expires - self.clock.monotonic(), 0.0) + 0.01)
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._sleep(wait))]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        return False

    async def hold(self) -> None:
        """Renew every retry period; raise LeadershipLost when the renew deadline passes
        without a successful renewal, or when someone else holds the lease."""
        while True:
            assert self._renewed_at is not None, "hold() needs acquire() first"
            deadline = self._renewed_at + self.timings.renew_deadline
            await self._sleep(
                max(min(self.timings.retry_period, deadline - self.clock.monotonic()), 0.0)
            )
            while True:
                remaining = self._renewed_at + self.timings.renew_deadline - self.clock.monotonic()
                if remaining <= 0:
                    raise LeadershipLost(
                        f"could not renew {self.describe()} for "
                        f"{self.timings.renew_deadline:g}s; stepping down before another "
                        "replica may take it over"
                    )
                try:
                    async with asyncio.timeout(remaining):
                        if await self.try_acquire_or_renew():
                            break
                    raise LeadershipLost(
                        f"{self.describe()} is now held by {self.holder!r}; stepping down"
                    )
                except _TRANSIENT as exc:
                    self.log.warning("cannot renew the lease; will retry", error=str(exc))
                    await self._sleep(max(min(self.timings.retry_period / 4, remaining), 0.0))

    async def release(self) -> None:
        """Leave the lease free (graceful shutdown) if we still hold it; errors are logged:
        the lease then simply runs out."""
        if not self.leading():
            return
        self._renewed_at = None
        try:
            obj, record = await self._get()
            if obj is None or record is None or record.holder != self.identity:
                return
            spec = release_spec(record, self.clock.now())
            await self.http.request_json(
                "PUT",
                self._path,
                body={**obj, "spec": {**(obj.get("spec") or {}), **spec}},
                purpose="lease",
            )
            self.log.info("released the lease")
        except _TRANSIENT as exc:
            self.log.warning(
                "could not release the lease; a standby takes over when it runs out",
                error=str(exc),
            )


class LeaseCensus:
    """Counts the live holders of a set of Leases (the member slots of sharded replicas),
    judging each by when *we* saw it change, as `decide` does: a holder that stopped renewing
    drops out `leaseDurationSeconds` after its last renewal reached us. Needs get on leases."""

    def __init__(
        self, http: KubeHttp, namespace: str, names: list[str], identity: str, clock: Clock
    ) -> None:
        self.http = http
        self.namespace = namespace
        self.names = names
        self.identity = identity
        self.clock = clock
        self._observed: dict[str, Observation | None] = dict.fromkeys(names)
        self.live = 0

    async def count(self) -> int:
        """Read every slot; the number held by a live replica (us included). On an API error
        the last count stands (the census runs again next period)."""
        live = 0
        for name in self.names:
            path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{name}"
            try:
                obj = await self.http.request_json("GET", path, purpose="lease")
            except ApiError as exc:
                if exc.status != 404:
                    return self.live
                self._observed[name] = None
                continue
            except _TRANSIENT:
                return self.live
            record = LeaseRecord.from_object(obj)
            decision = decide(record, self._observed[name], self.clock.monotonic(), self.identity)
            self._observed[name] = decision.observation
            if decision.action in (Action.WAIT, Action.RENEW):
                live += 1
        self.live = live
        return live
