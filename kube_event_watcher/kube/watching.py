"""List + watch, owned end to end: the event source (events.k8s.io/v1) and the object caches
(Pods and Nodes, kube_event_watcher/kube/objects.py) run on this one loop, told apart by a
`Resource`.

We do not use the client library's `Watch` helper: it retries a 410 with the same stale
resourceVersion, reconnects without backoff and deserializes into slow model classes.
Here: paged list, watch from the list's resourceVersion with bookmarks, relist on 410 (an
ERROR event, an HTTP 410, an expired continue token, or an idle clean close), jittered
exponential backoff on anything else, reset after a healthy period.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import structlog

from kube_event_watcher.backoff import Backoff
from kube_event_watcher.kube.errors import ApiError, rbac_hint
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.wire import (
    DecodeError,
    FrameReader,
    Raw,
    WatchStatusError,
    decode_event,
    decode_list_page,
    decode_watch_line,
    read_event_frame,
)

log = structlog.get_logger(__name__)

EVENTS_API = "/apis/events.k8s.io/v1"
RESOURCE = "events.k8s.io/events"
T = TypeVar("T")
# A relist that keeps meeting an expired continue token is a sign of a too-small page size
# against a busy cluster; give up this attempt after this many restarts and back off.
MAX_LIST_RESTARTS = 5
_NAME_IN_PREFIX = re.compile(rb'"name"\s*:\s*"([^"]{1,253})"')
_NAMESPACE_IN_PREFIX = re.compile(rb'"namespace"\s*:\s*"([^"]{1,63})"')


@dataclass(frozen=True, slots=True)
class Resource:
    """What a watch lists and watches: where (`api` + `plural`), how its items and watch lines
    are decoded (only the fields read), and what an RBAC fix names (`rbac`)."""

    api: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    rbac: str  # "<group>/<plural>", as rbac_hint shows it
    decode_item: Callable[[Raw | bytes], Any]
    read_frame: FrameReader
    namespaced: bool = True
    # Events are served from etcd, not the watch cache, so they get no periodic bookmarks:
    # an idle resourceVersion is compacted within minutes, and a watch that closes without
    # delivering anything is treated as expired (relist). Pods and Nodes come from the watch
    # cache, which sends bookmarks; their idle close just watches again from where it was.
    relist_when_idle: bool = False

    def path(self, namespace: str | None) -> str:
        if namespace and self.namespaced:
            return f"{self.api}/namespaces/{namespace}/{self.plural}"
        return f"{self.api}/{self.plural}"


EVENTS = Resource(
    api=EVENTS_API,
    plural="events",
    rbac=RESOURCE,
    decode_item=decode_event,
    read_frame=read_event_frame,
    relist_when_idle=True,
)


@dataclass(frozen=True, slots=True)
class WatchScope:
    """One watch: a cluster, all namespaces (None) or one, a server-side field selector, and
    the resource watched (events unless told otherwise)."""

    cluster: str
    namespace: str | None
    field_selector: str | None
    resource: Resource = EVENTS

    @property
    def path(self) -> str:
        return self.resource.path(self.namespace)

    @property
    def id(self) -> str:
        """A file-name-safe, stable name for this scope's checkpoint."""
        return _scope_id(self)  # asked for at every commit: made once

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        if not self.resource.namespaced:
            where = "cluster-wide"
        sel = f", fieldSelector {self.field_selector}" if self.field_selector else ""
        what = "" if self.resource is EVENTS else f"{self.resource.plural}, "
        return f"{self.cluster}: {what}{where}{sel}"


@functools.lru_cache(maxsize=4096)
def _scope_id(scope: WatchScope) -> str:
    selector = hashlib.blake2b((scope.field_selector or "").encode(), digest_size=4).hexdigest()
    safe_cluster = re.sub(r"[^A-Za-z0-9_.-]", "_", scope.cluster)
    where = scope.namespace or "_all"
    if scope.resource is EVENTS:  # the name event checkpoints have always had
        return f"watch.{safe_cluster}.{where}.{selector}"
    return f"{scope.resource.plural}.{safe_cluster}.{where}.{selector}"


@dataclass(frozen=True, slots=True)
class WatchSettings:
    page_size: int = 500
    watch_timeout: float = 290.0
    stall_timeout: float = 330.0
    max_line_bytes: int = 2 * 1024 * 1024
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_jitter: float = 1.0
    healthy_after: float = 60.0


class WatchConsumer(Protocol[T]):
    """What the watch hands its objects to, in order. Each call returns when the object is
    processed; the watch reads the next line only then (back-pressure, and a checkpoint that
    never runs ahead of processing)."""

    async def on_list_start(self) -> None: ...

    async def on_listed(self, objects: list[T], resource_version: str) -> None: ...

    async def on_list_done(self, resource_version: str) -> None: ...

    async def on_change(self, change: str, obj: T, resource_version: str) -> None: ...

    async def on_bookmark(self, resource_version: str) -> None: ...

    async def on_watch_open(self, resource_version: str) -> None: ...


class ResourceExpired(Exception):
    """The resourceVersion (or continue token) is gone: relist."""


class WatchDropped(Exception):
    """The stream ended in a way that calls for a reconnect with backoff."""


class LineTooLong(Exception):
    pass


Sleep = Callable[[float], Awaitable[None]]


class ListWatch(Generic[T]):
    """Runs one scope's list+watch until cancelled; its objects are whatever the scope's
    resource decodes them to (`T`)."""

    def __init__(
        self,
        http: KubeHttp,
        scope: WatchScope,
        consumer: WatchConsumer[T],
        settings: WatchSettings = WatchSettings(),
        resource_version: str | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.scope = scope
        self.consumer = consumer
        self.settings = settings
        self.resource_version = resource_version
        self._sleep = sleep
        self._monotonic = monotonic
        self._backoff = Backoff(
            settings.backoff_initial, settings.backoff_max, settings.backoff_jitter
        )
        self._reported: set[int] = set()
        self.resource = scope.resource
        self._events = scope.resource.read_frame is read_event_frame
        self.log = log.bind(
            cluster=scope.cluster,
            namespace=scope.namespace or "*",
            **({} if scope.resource is EVENTS else {"resource": scope.resource.plural}),
        )
        # Counters the ops layer reads; plain ints keep the hot path free of metric calls.
        self.relists = 0
        self.reconnects = 0
        self.skipped_lines = 0
        self.events_by_type: dict[str, int] = {}

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        attempt = 0
        while True:
            started = self._monotonic()
            try:
                await self._session()
                attempt = 0
                continue
            except ResourceExpired as exc:
                self.log.info("resourceVersion expired, relisting", detail=str(exc))
                self.resource_version = None
                self.relists += 1
                attempt = 0
                continue
            except ApiError as exc:
                self._report_api_error(exc)
                failure: Exception = exc
            except (aiohttp.ClientError, TimeoutError, OSError, WatchDropped) as exc:
                failure = exc
            if self._monotonic() - started >= self.settings.healthy_after:
                attempt = 0
            attempt += 1
            self.reconnects += 1
            delay = self._backoff.delay(attempt)
            self.log.warning(
                "watch interrupted, reconnecting",
                error=_describe(failure),
                attempt=attempt,
                retry_in=round(delay, 2),
            )
            await self._sleep(delay)

    def _report_api_error(self, exc: ApiError) -> None:
        if exc.status in (401, 403, 404) and exc.status not in self._reported:
            self._reported.add(exc.status)
            self.log.error(
                f"the API server refused the {self.resource.plural[:-1]} watch",
                status=exc.status,
                message=exc.message,
                fix=rbac_hint(
                    exc.status,
                    "list/watch",
                    self.resource.rbac,
                    self.scope.namespace if self.resource.namespaced else None,
                ),
            )

    async def _session(self) -> None:
        if self.resource_version is None:
            await self._list()
        delivered = await self._watch()
        if delivered == 0:
            # Events watches are served from etcd, not the watch cache, so they get no
            # periodic bookmarks: an idle resourceVersion is compacted within minutes.
            # Treat an empty clean close as expired and relist for a fresh one.
            raise ResourceExpired("the watch closed without delivering anything")

    # -- list -------------------------------------------------------------------------------

    async def _list(self) -> None:
        restarts = 0
        await self.consumer.on_list_start()
        continue_token: str | None = None
        while True:
            params = {"limit": str(self.settings.page_size)}
            if self.scope.field_selector:
                params["fieldSelector"] = self.scope.field_selector
            if continue_token:
                params["continue"] = continue_token
            try:
                page = decode_list_page(
                    await self.http.get_bytes(self.scope.path, params, purpose="list")
                )
            except DecodeError as exc:
                raise WatchDropped(
                    f"list answered with something not a {self.resource.plural} list: {exc}"
                ) from None
            except ApiError as exc:
                if exc.status == 410 and continue_token and restarts < MAX_LIST_RESTARTS:
                    restarts += 1
                    self.relists += 1
                    self.log.info("list continue token expired, listing again", restart=restarts)
                    continue_token = None
                    await self.consumer.on_list_start()
                    continue
                raise
            meta = page.get("metadata") or {}
            list_rv = meta.get("resourceVersion") or ""
            await self.consumer.on_listed(self._listed(page.get("items") or ()), list_rv)
            continue_token = meta.get("continue") or None
            if not continue_token:
                if not list_rv:
                    raise WatchDropped("list answered without a resourceVersion")
                self.resource_version = list_rv
                self._reported.clear()
                await self.consumer.on_list_done(list_rv)
                return

    def _listed(self, items: Iterable[Raw]) -> list[T]:
        """A page's items decoded; a malformed one is logged and skipped, not the page."""
        decode = self.resource.decode_item
        objects: list[T] = []
        for item in items:
            try:
                objects.append(decode(item))
            except DecodeError as exc:
                self.skipped_lines += 1
                self.log.error(
                    f"malformed listed {self.resource.plural[:-1]} skipped",
                    error=str(exc),
                    item=bytes(item)[:200].decode("utf-8", "replace"),
                )
        return objects

    # -- watch ------------------------------------------------------------------------------

    async def _watch(self) -> int:
        assert self.resource_version is not None
        params = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self.settings.watch_timeout)),
        }
        if self.scope.field_selector:
            params["fieldSelector"] = self.scope.field_selector
        delivered = 0
        try:
            async with self.http.stream(
                self.scope.path, params, read_timeout=self.settings.stall_timeout
            ) as response:
                self._reported.clear()
                await self.consumer.on_watch_open(self.resource_version)
                async for line in self._lines(response):
                    delivered += await self._handle_line(line)
        except ApiError as exc:
            if exc.status == 410:
                raise ResourceExpired(exc.message) from None
            raise
        except TimeoutError:
            raise WatchDropped(
                f"the watch stalled: nothing for {self.settings.stall_timeout:.0f}s"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            if delivered:
                raise WatchDropped(f"stream cut after {delivered} objects: {exc}") from None
            raise WatchDropped(f"stream cut: {exc}") from None
        return delivered

    async def _lines(self, response: aiohttp.ClientResponse) -> Any:
        limit = self.settings.max_line_bytes
        buffer = bytearray()
        skipping: bytes | None = None
        async for chunk in response.content.iter_any():
            buffer += chunk
            start = 0
            while True:
                end = buffer.find(b"\n", start)
                if end < 0:
                    break
                if skipping is not None:
                    self._skip_long_line(skipping, end - start + limit)
                    skipping = None
                elif end - start > limit:
                    self._skip_long_line(bytes(buffer[start : start + 4096]), end - start)
                elif end > start:
                    yield bytes(buffer[start:end])
                start = end + 1
            if start:
                del buffer[:start]
            if len(buffer) > limit:
                if skipping is None:
                    skipping = bytes(buffer[:4096])
                buffer.clear()
        if buffer.strip() and skipping is None:
            yield bytes(buffer)

    def _skip_long_line(self, prefix: bytes, size: int) -> None:
        self.skipped_lines += 1
        name = _NAME_IN_PREFIX.search(prefix)
        namespace = _NAMESPACE_IN_PREFIX.search(prefix)
        self.log.error(
            "watch line too long, object skipped",
            limit_bytes=self.settings.max_line_bytes,
            size_bytes_at_least=size,
            object_name=name.group(1).decode("utf-8", "replace") if name else "?",
            object_namespace=namespace.group(1).decode("utf-8", "replace") if namespace else "?",
            fix="raise sources[].max_line_bytes if such events are expected",
        )

    async def _handle_line(self, line: bytes) -> int:
        obj: Any  # an event's RawEvent, or what the resource decodes
        try:
            if self._events:
                # read_event_frame, inline: the hot path of the event source, where one more
                # call and tuple per line is ~10% of the decode (bench/RESULTS.md).
                frame = decode_watch_line(line)
                change, obj = frame.type, frame.object
                if change == "ERROR":
                    raise WatchStatusError(obj.code, obj.message or "")
                meta = obj.metadata
                rv = meta.resource_version if meta else None
            else:
                change, obj, rv = self.resource.read_frame(line)
        except DecodeError as exc:
            self.skipped_lines += 1
            self.log.error(
                "malformed watch line skipped",
                error=str(exc),
                line=line[:200].decode("utf-8", "replace"),
            )
            return 0
        except WatchStatusError as exc:
            if exc.code == 410:
                raise ResourceExpired(exc.message) from None
            raise WatchDropped(f"watch ERROR {exc.code}: {exc.message}") from None
        if not rv:
            self.skipped_lines += 1
            self.log.error("watch object without resourceVersion skipped", change=change)
            return 0
        counts = self.events_by_type
        counts[change] = counts.get(change, 0) + 1
        if change == "BOOKMARK":
            self.resource_version = rv
            await self.consumer.on_bookmark(rv)
            return 1
        await self.consumer.on_change(change, obj, rv)
        self.resource_version = rv
        return 1


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
