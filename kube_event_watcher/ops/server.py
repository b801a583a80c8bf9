"""The ops HTTP endpoint: /healthz, /readyz, /metrics (aiohttp, one small app).

- /healthz: the process is alive and its event loop responsive (a heartbeat task measures
  how late its ticks run; a blocked loop cannot answer at all, a starved one answers red).
- /readyz: every watch is established and fresh (health.readiness); red names the stale watch.
  An HA standby (another replica holds the lease) is ready and says `"role": "standby"`.
- /metrics: the Prometheus exposition of kube_event_watcher.ops.metrics, plus per-watch freshness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.ops import OpsConfig
from kube_event_watcher.ops.health import WatchStatuses, assess, readiness
from kube_event_watcher.ops.metrics import Metrics

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class LoopHeartbeat:
    """Ticks every `interval`; `lag` is how much later than asked the last tick ran."""

    def __init__(self, clock: Clock, interval: float = 1.0, sleep: Sleep = asyncio.sleep) -> None:
        self.clock = clock
        self.interval = interval
        self._sleep = sleep
        self.last_tick = clock.monotonic()
        self.lag = 0.0

    async def run(self) -> None:
        while True:
            before = self.clock.monotonic()
            await self._sleep(self.interval)
            self.last_tick = self.clock.monotonic()
            self.lag = max(0.0, self.last_tick - before - self.interval)

    def behind(self) -> float:
        """Seconds the loop is behind now: the larger of the last lag and an overdue tick."""
        overdue = self.clock.monotonic() - self.last_tick - self.interval
        return max(self.lag, overdue, 0.0)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )


class OpsServer:
    """Serves the three endpoints; `statuses` reports the watches, `metrics` the counters."""

    def __init__(
        self,
        config: OpsConfig,
        statuses: WatchStatuses,
        metrics: Metrics,
        clock: Clock,
        heartbeat: LoopHeartbeat | None = None,
        standby: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.config = config
        self.statuses = statuses
        self.metrics = metrics
        self.clock = clock
        self.heartbeat = heartbeat or LoopHeartbeat(clock)
        self.standby = standby
        self._runner: web.AppRunner | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.port: int | None = None
        per_watch = ("cluster", "scope")
        metrics.bind("watch_last_activity_age_seconds", self, self._ages, key_label=per_watch)
        metrics.bind("watch_up", self, self._up, key_label=per_watch)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_view)
        return app

    # -- handlers ---------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        behind = self.heartbeat.behind()
        if behind > self.config.loop_lag_limit:
            return _json(
                {
                    "healthy": False,
                    "problem": f"the event loop is {behind:.1f}s behind "
                    f"(limit {self.config.loop_lag_limit:g}s): something blocks it",
                },
                503,
            )
        return _json({"healthy": True, "loop_lag_seconds": round(behind, 3)})

    async def readyz(self, request: web.Request) -> web.Response:
        standby = self.standby() if self.standby is not None else None
        if standby is not None:
            # Ready: a Deployment's rollout must not hang on replicas that are meant to wait.
            return _json(standby)
        result = readiness(self.statuses(), self.clock.monotonic(), self.config.stale_after)
        return _json(result.as_json(), 200 if result.ready else 503)

    async def metrics_view(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept"))
        # The content type carries the exposition version Prometheus negotiated.
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- metrics read at scrape time ----------------------------------------------------------

    def _ages(self) -> dict[tuple[str, ...], float]:
        now = self.clock.monotonic()
        return {
            (s.cluster, s.name): now - s.last_activity
            for s in self.statuses()
            if s.last_activity is not None
        }

    def _up(self) -> dict[tuple[str, ...], float]:
        now = self.clock.monotonic()
        return {
            (s.cluster, s.name): 1.0 if assess(s, now, self.config.stale_after).fresh else 0.0
            for s in self.statuses()
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `config.listen` (port 0 picks a free port, see `.port`) and start serving."""
        address = self.config.address
        self._heartbeat_task = asyncio.create_task(self.heartbeat.run(), name="ops-heartbeat")
        if address is None:
            log.info("ops endpoint disabled (ops.listen is empty)")
            return
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address.host, address.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise OSError(
                exc.errno,
                f"ops.listen {self.config.listen}: cannot listen ({exc.strerror}); "
                "pick a free port or set ops.listen",
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else address.port
        log.info("ops endpoint listening", address=f"{address.host}:{self.port}")

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.metrics.unbind(self)
