"""A protocol-level double of the kube-apiserver's events.k8s.io/v1 endpoints, and of the
core/v1 Pods and Nodes (list, watch and single GETs), with faults.

It speaks the real wire protocol: paged lists with opaque continue tokens, chunked watch
streams of newline-delimited JSON frames, bookmarks, `ERROR` frames with a 410 Status when a
resourceVersion is compacted, HTTP 410 for an expired continue token, bearer-token auth,
field selectors (and 400 for unsupported fields), TLS. Faults are queued per request kind
and consumed in order. Where the real server's behaviour was checked (tests/e2e), the same
scenario tests run against both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

EVENTS_GROUP = "events.k8s.io/v1"
SUPPORTED_FIELDS = {
    # The fields the API server indexes for events (pkg/registry/core/event/strategy.go).
    "metadata.name": lambda e: e["metadata"]["name"],
    "metadata.namespace": lambda e: e["metadata"]["namespace"],
    "type": lambda e: e.get("type", ""),
    "reason": lambda e: e.get("reason", ""),
    "reportingController": lambda e: e.get("reportingController", ""),
    "regarding.kind": lambda e: e.get("regarding", {}).get("kind", ""),
    "regarding.name": lambda e: e.get("regarding", {}).get("name", ""),
    "regarding.namespace": lambda e: e.get("regarding", {}).get("namespace", ""),
    "regarding.uid": lambda e: e.get("regarding", {}).get("uid", ""),
    "regarding.apiVersion": lambda e: e.get("regarding", {}).get("apiVersion", ""),
    "regarding.resourceVersion": lambda e: e.get("regarding", {}).get("resourceVersion", ""),
    "regarding.fieldPath": lambda e: e.get("regarding", {}).get("fieldPath", ""),
    "source": lambda e: e.get("reportingController", ""),
}


# What each core/v1 resource's field selectors may name (pkg/registry/core/*/strategy.go, the
# subset a test may use); anything else is a 400 as from the real server.
OBJECT_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"]["namespace"],
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
    },
    "nodes": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get("unschedulable"))).lower(),
    },
}
# A BOOKMARK's object, per resource: the real server encodes an empty object of the kind,
# with Go's zero values (a Pod's `spec.containers: null`, an Event's null times).
_KINDS = {"events": "Event", "pods": "Pod", "nodes": "Node"}


def micro_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class BadSelector(ValueError):
    pass


def parse_selector(
    text: str | None, supported: dict[str, Callable[[dict[str, Any]], str]] | None = None
) -> list[tuple[str, bool, str]]:
    fields = SUPPORTED_FIELDS if supported is None else supported
    terms = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            equal = False
        elif "==" in term:
            key, value = term.split("==", 1)
            equal = True
        elif "=" in term:
            key, value = term.split("=", 1)
            equal = True
        else:
            raise BadSelector(f'invalid selector: "{term}"')
        if key not in fields:
            raise BadSelector(f"field label not supported: {key}")
        terms.append((key, equal, value))
    return terms


def selector_matches(
    terms: list[tuple[str, bool, str]],
    event: dict[str, Any],
    supported: dict[str, Callable[[dict[str, Any]], str]] | None = None,
) -> bool:
    fields = SUPPORTED_FIELDS if supported is None else supported
    return all((fields[k](event) == v) == eq for k, eq, v in terms)


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next request of its kind."""

    # "http" | "disconnect_after" | "stall" | "malformed" | "long_line" | "error410" |
    # "bookmark" | "compact" (compact before serving this request) |
    # "malformed_item" (a list page's item number `lines` with a number for its reason)
    kind: str
    status: int = 0
    lines: int = 0
    size: int = 0
    resource: str = "events"  # whose list or watch takes it: "events", "pods" or "nodes"


@dataclass
class Stats:
    lists: int = 0
    watches: int = 0
    list_params: list[dict[str, str]] = field(default_factory=list)
    watch_params: list[dict[str, str]] = field(default_factory=list)
    # Per resource ("events", "pods", "nodes"): lists, watches opened, and single GETs.
    lists_of: dict[str, int] = field(default_factory=dict)
    watches_of: dict[str, int] = field(default_factory=dict)
    gets_of: dict[str, int] = field(default_factory=dict)


class ApiDouble:
    """State + HTTP app. Create events through the helpers; they appear in lists and watches."""

    def __init__(self, token: str = "test-token", now: Callable[[], float] | None = None) -> None:
        self.token = token
        self._now = now or (lambda: datetime.now(UTC).timestamp())
        self._rv = itertools.count(100)
        self.resource_version = next(self._rv)
        # Per resource, by (namespace, name) ("" for cluster-scoped): the live objects and
        # the resourceVersion each was created at. `events`/`created_rv` are the events'.
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r: {} for r in _KINDS}
        self.created: dict[str, dict[tuple[str, str], int]] = {r: {} for r in _KINDS}
        self.events = self.objects["events"]
        self.created_rv = self.created["events"]
        # (resourceVersion, change, object, resource), in order: what watches replay.
        self.history: list[tuple[int, str, dict[str, Any], str]] = []
        self.compacted = 0
        self.faults: dict[str, list[Fault]] = {"list": [], "watch": []}
        self.stats = Stats()
        self._changed = asyncio.Condition()
        self._closing = False
        self._closed = asyncio.Event()
        self._streams: set[web.StreamResponse] = set()
        self._watch_opened = asyncio.Condition()
        # While cleared, new watch requests wait, as against an unreachable API server.
        self.watch_gate = asyncio.Event()
        self.watch_gate.set()
        # How a compacted watch resourceVersion is refused: the real server sends a 200 stream
        # with one ERROR frame (code 410); some proxies/older servers answer HTTP 410.
        self.expired_watch_as_http = False
        # Resources whose list and watch RBAC refuses (403), e.g. {"nodes"}.
        self.forbidden: set[str] = set()
        # Leases and ConfigMaps (HA, sharding, configmap state) by (resource, namespace, name):
        # get, create and update with resourceVersion compare-and-swap; not watched.
        self.stored: dict[tuple[str, str, str], dict[str, Any]] = {}

    # -- object helpers (what recorders do) ---------------------------------------------------

    def _bump(self) -> str:
        self.resource_version = next(self._rv)
        return str(self.resource_version)

    async def _record(self, change: str, event: dict[str, Any], resource: str = "events") -> None:
        self.history.append((int(event["metadata"]["resourceVersion"]), change, event, resource))
        async with self._changed:
            self._changed.notify_all()

    async def create_event(
        self,
        namespace: str,
        reason: str,
        regarding_name: str,
        *,
        note: str = "",
        type: str = "Warning",
        kind: str = "Pod",
        name: str | None = None,
        regarding_uid: str | None = None,
        controller: str = "kubelet",
        event_time: float | None = None,
    ) -> dict[str, Any]:
        when = self._now() if event_time is None else event_time
        name = name or f"{regarding_name}.{uuid.uuid4().hex[:16]}"
        event = {
            "kind": "Event",
            "apiVersion": EVENTS_GROUP,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._bump(),
                "creationTimestamp": micro_time(when)[:19] + "Z",
            },
            "eventTime": micro_time(when),
            "reportingController": controller,
            "reportingInstance": f"{controller}-node-1",
            "action": "Sync",
            "reason": reason,
            "regarding": {
                "kind": kind,
                "namespace": namespace,
                "name": regarding_name,
                "uid": regarding_uid or str(uuid.uuid5(uuid.NAMESPACE_URL, regarding_name)),
                "apiVersion": "v1",
            },
            "note": note or f"{reason} on {regarding_name}",
            "type": type,
        }
        self.events[(namespace, name)] = event
        self.created_rv[(namespace, name)] = self.resource_version
        await self._record("ADDED", event)
        return event

    async def repeat_event(
        self, event: dict[str, Any], count: int, when: float | None = None
    ) -> None:
        """A recorder's series update: the same Event with series.count grown."""
        stored = self.events[(event["metadata"]["namespace"], event["metadata"]["name"])]
        updated = orjson.loads(orjson.dumps(stored))
        updated["series"] = {
            "count": count,
            "lastObservedTime": micro_time(self._now() if when is None else when),
        }
        updated["metadata"]["resourceVersion"] = self._bump()
        self.events[(namespace_name(updated))] = updated
        await self._record("MODIFIED", updated)

    async def touch_event(self, event: dict[str, Any]) -> None:
        """A modification that is not a new occurrence (e.g. a label change)."""
        stored = self.events[namespace_name(event)]
        updated = orjson.loads(orjson.dumps(stored))
        updated["metadata"].setdefault("labels", {})["touched"] = "yes"
        updated["metadata"]["resourceVersion"] = self._bump()
        self.events[namespace_name(updated)] = updated
        await self._record("MODIFIED", updated)

    async def delete_event(self, event: dict[str, Any]) -> None:
        stored = self.events.pop(namespace_name(event))
        gone = orjson.loads(orjson.dumps(stored))
        gone["metadata"]["resourceVersion"] = self._bump()
        await self._record("DELETED", gone)

    async def put_object(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update a Pod or Node (as its controller or kubelet would): a new
        resourceVersion, then ADDED or MODIFIED to the watches. Returns what is stored."""
        stored = orjson.loads(orjson.dumps(obj))
        meta = stored.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        objects = self.objects[resource]
        change = "MODIFIED" if key in objects else "ADDED"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = self._bump()
        objects[key] = stored
        if change == "ADDED":
            self.created[resource][key] = self.resource_version
        await self._record(change, stored, resource)
        return stored

    async def delete_object(self, resource: str, namespace: str, name: str) -> None:
        stored = self.objects[resource].pop((namespace, name))
        self.created[resource].pop((namespace, name), None)
        gone = orjson.loads(orjson.dumps(stored))
        gone["metadata"]["resourceVersion"] = self._bump()
        await self._record("DELETED", gone, resource)

    def compact(self) -> None:
        """Forget history up to now, as etcd compaction does: older resourceVersions give 410."""
        self.compacted = self.resource_version
        self.history = [h for h in self.history if h[0] > self.compacted]

    def inject(self, request_kind: str, fault: Fault) -> None:
        self.faults[request_kind].append(fault)

    def _take_fault(self, request_kind: str, resource: str = "events") -> Fault | None:
        queue = self.faults[request_kind]
        for i, fault in enumerate(queue):
            if fault.resource == resource:
                return queue.pop(i)
        return None

    async def wait_watches(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` watch streams have been opened in total."""
        async with self._watch_opened:
            await asyncio.wait_for(
                self._watch_opened.wait_for(lambda: self.stats.watches >= count), timeout
            )

    async def wait_watches_of(self, resource: str, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` watch streams of `resource` have been opened in total."""
        async with self._watch_opened:
            await asyncio.wait_for(
                self._watch_opened.wait_for(
                    lambda: self.stats.watches_of.get(resource, 0) >= count
                ),
                timeout,
            )

    def cut_watches(self) -> None:
        """Cut every open watch stream abruptly, as a restarting API server or a proxy does."""
        for stream in list(self._streams):
            transport = stream._req.transport if stream._req is not None else None
            if transport is not None:
                transport.close()
        self._streams.clear()

    async def close_watches(self) -> None:
        self._closing = True
        self._closed.set()
        async with self._changed:
            self._changed.notify_all()

    # -- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        events, pods, nodes = (self._collection(r) for r in ("events", "pods", "nodes"))
        app.router.add_get("/apis/events.k8s.io/v1/events", events)
        app.router.add_get("/apis/events.k8s.io/v1/namespaces/{namespace}/events", events)
        app.router.add_get("/api/v1/pods", pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", pods)
        app.router.add_get("/api/v1/nodes", nodes)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._single("pods"))
        app.router.add_get("/api/v1/nodes/{name}", self._single("nodes"))
        for resource, prefix in (
            ("leases", "/apis/coordination.k8s.io/v1"),
            ("configmaps", "/api/v1"),
        ):
            collection = f"{prefix}/namespaces/{{namespace}}/{resource}"
            app.router.add_post(collection, self._create(resource))
            app.router.add_get(collection + "/{name}", self._read_stored(resource))
            app.router.add_put(collection + "/{name}", self._update(resource))
        return app

    async def put_stored(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Write a Lease or ConfigMap as another client would (no compare-and-swap)."""
        stored = orjson.loads(orjson.dumps(obj))
        meta = stored.setdefault("metadata", {})
        previous = self.stored.get((resource, meta["namespace"], meta["name"]), {})
        meta.setdefault("uid", (previous.get("metadata") or {}).get("uid") or str(uuid.uuid4()))
        meta["resourceVersion"] = self._bump()
        self.stored[(resource, meta["namespace"], meta["name"])] = stored
        return stored

    def _create(self, resource: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _json(401, status(401, "Unauthorized", "Unauthorized"))
            body = await request.json()
            body.setdefault("metadata", {})["namespace"] = request.match_info["namespace"]
            name = body["metadata"]["name"]
            if (resource, request.match_info["namespace"], name) in self.stored:
                return _json(409, status(409, "AlreadyExists", f'{resource} "{name}" exists'))
            return _json(201, await self.put_stored(resource, body))

        return handle

    def _read_stored(self, resource: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _json(401, status(401, "Unauthorized", "Unauthorized"))
            name = request.match_info["name"]
            found = self.stored.get((resource, request.match_info["namespace"], name))
            if found is None:
                return _json(404, status(404, "NotFound", f'{resource} "{name}" not found'))
            return _json(200, found)

        return handle

    def _update(self, resource: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _json(401, status(401, "Unauthorized", "Unauthorized"))
            namespace, name = request.match_info["namespace"], request.match_info["name"]
            found = self.stored.get((resource, namespace, name))
            if found is None:
                return _json(404, status(404, "NotFound", f'{resource} "{name}" not found'))
            body = await request.json()
            meta = body.setdefault("metadata", {})
            wanted = meta.get("resourceVersion")
            if wanted and wanted != found["metadata"]["resourceVersion"]:
                what = f'Operation cannot be fulfilled on {resource} "{name}": modified'
                return _json(409, status(409, "Conflict", what))
            meta.update(namespace=namespace, name=name)
            return _json(200, await self.put_stored(resource, body))

        return handle

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _collection(self, resource: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _json(401, status(401, "Unauthorized", "Unauthorized"))
            if resource in self.forbidden:
                verb = "watch" if request.query.get("watch") in ("true", "1") else "list"
                return _json(
                    403,
                    status(
                        403,
                        "Forbidden",
                        f'{resource} is forbidden: User "tester" cannot {verb} resource '
                        f'"{resource}" in API group "" at the cluster scope',
                    ),
                )
            namespace = request.match_info.get("namespace")
            params = dict(request.query)
            try:
                terms = parse_selector(params.get("fieldSelector"), OBJECT_FIELDS.get(resource))
            except BadSelector as exc:
                return _json(400, status(400, "BadRequest", str(exc)))
            if params.get("watch") in ("true", "1"):
                return await self._watch(request, namespace, terms, params, resource)
            return await self._list(namespace, terms, params, resource)

        return handle

    def _single(self, resource: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _json(401, status(401, "Unauthorized", "Unauthorized"))
            gets = self.stats.gets_of
            gets[resource] = gets.get(resource, 0) + 1
            key = (request.match_info.get("namespace", ""), request.match_info["name"])
            found = self.objects[resource].get(key)
            if found is None:
                what = f'{resource} "{key[1]}" not found'
                return _json(404, status(404, "NotFound", what))
            return _json(200, {"kind": _KINDS[resource], "apiVersion": "v1", **found})

        return handle

    def _visible(
        self,
        namespace: str | None,
        terms: list[tuple[str, bool, str]],
        event: dict[str, Any],
        resource: str = "events",
    ) -> bool:
        if namespace and event["metadata"].get("namespace") != namespace:
            return False
        return selector_matches(terms, event, OBJECT_FIELDS.get(resource))

    async def _list(
        self,
        namespace: str | None,
        terms: list[tuple[str, bool, str]],
        params: dict[str, str],
        resource: str = "events",
    ) -> web.StreamResponse:
        if resource == "events":
            self.stats.lists += 1
            self.stats.list_params.append(params)
        lists = self.stats.lists_of
        lists[resource] = lists.get(resource, 0) + 1
        objects, created = self.objects[resource], self.created[resource]
        fault = self._take_fault("list", resource)
        if fault and fault.kind == "compact":
            self._bump()  # other writes happened since the list's snapshot, then compaction
            self.compact()
        if fault and fault.kind == "http":
            return _json(fault.status, status(fault.status, "InternalError", "injected"))
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        if token:
            state = orjson.loads(base64.urlsafe_b64decode(token))
            snapshot_rv, start_key = state["rv"], tuple(state["start"])
            if snapshot_rv < self.compacted:
                return _json(
                    410,
                    status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter.",
                    ),
                )
        else:
            snapshot_rv, start_key = self.resource_version, ("", "")
        keys = sorted(k for k in objects if not token or k > start_key)
        # A paged list reads one snapshot: objects created after it are not in later pages.
        items = [
            objects[k]
            for k in keys
            if created[k] <= snapshot_rv and self._visible(namespace, terms, objects[k], resource)
        ]
        page, more = (items[:limit], len(items) > limit) if limit else (items, False)
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot_rv)}
        if more:
            last = page[-1]["metadata"]
            start = [last.get("namespace", ""), last["name"]]
            metadata["continue"] = base64.urlsafe_b64encode(
                orjson.dumps({"rv": snapshot_rv, "start": start})
            ).decode()
            metadata["remainingItemCount"] = len(items) - len(page)
        listed = [_without_type_meta(i) for i in page]
        if fault and fault.kind == "malformed_item" and fault.lines < len(listed):
            listed[fault.lines] = {**listed[fault.lines], "reason": 42}
        body = {
            "kind": f"{_KINDS[resource]}List",
            "apiVersion": EVENTS_GROUP if resource == "events" else "v1",
            "metadata": metadata,
            "items": listed,
        }
        return _json(200, body)

    async def _watch(
        self,
        request: web.Request,
        namespace: str | None,
        terms: list[tuple[str, bool, str]],
        params: dict[str, str],
        resource: str = "events",
    ) -> web.StreamResponse:
        await self.watch_gate.wait()
        fault = self._take_fault("watch", resource)
        if fault and fault.kind == "compact":
            self.compact()
            fault = None
        if fault and fault.kind == "http":
            return _json(fault.status, status(fault.status, "InternalError", "injected"))
        since = int(params.get("resourceVersion") or self.resource_version)
        timeout = float(params.get("timeoutSeconds") or 1800)
        expired = since < self.compacted
        if expired and self.expired_watch_as_http:
            return _json(
                410, status(410, "Expired", f"too old resource version: {since} ({self.compacted})")
            )
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._streams.add(response)
        async with self._watch_opened:
            if resource == "events":
                self.stats.watches += 1
                self.stats.watch_params.append(params)
            watches = self.stats.watches_of
            watches[resource] = watches.get(resource, 0) + 1
            self._watch_opened.notify_all()
        if expired or (fault and fault.kind == "error410"):
            await _frame(
                response,
                "ERROR",
                status(410, "Expired", f"too old resource version: {since} ({self.compacted})"),
            )
            return response
        sent = 0
        position = since
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not self._closing:
                pending = [h for h in self.history if h[0] > position]
                for rv, change, event, of in pending:
                    position = rv
                    if of != resource or not self._visible(namespace, terms, event, resource):
                        continue
                    if fault and fault.kind == "disconnect_after" and sent >= fault.lines:
                        # An abrupt cut mid-stream: no terminating chunk.
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    if fault and fault.kind == "malformed" and sent == fault.lines:
                        await response.write(b'{"type":"ADDED","object":{"metadata":\n')
                        fault = None
                    if fault and fault.kind == "long_line" and sent == fault.lines:
                        filler = "x" * fault.size
                        await response.write(
                            orjson.dumps(
                                {
                                    "type": "ADDED",
                                    "object": {
                                        "metadata": {"name": "huge-event", "namespace": "default"},
                                        "note": filler,
                                    },
                                }
                            )
                            + b"\n"
                        )
                        fault = None
                    await _frame(response, change, event)
                    sent += 1
                if fault and fault.kind == "bookmark":
                    await _frame(response, "BOOKMARK", self._bookmark(resource))
                    position = self.resource_version
                    fault = None
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if fault and fault.kind == "stall":
                    # Say nothing until the server timeout (or until the double shuts down).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closed.wait(), remaining)
                    break
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        break
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._streams.discard(response)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _bookmark(self, resource: str) -> dict[str, Any]:
        meta = {"resourceVersion": str(self.resource_version), "creationTimestamp": None}
        if resource == "events":
            return {
                "kind": "Event",
                "apiVersion": EVENTS_GROUP,
                "metadata": meta,
                "eventTime": None,
                "reportingController": "",
                "reportingInstance": "",
            }
        body: dict[str, Any] = {"kind": _KINDS[resource], "apiVersion": "v1", "metadata": meta}
        body["spec"] = {"containers": None} if resource == "pods" else {}
        body["status"] = {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}, "nodeInfo": {}}
        if resource == "pods":
            body["status"] = {}
        return body


def namespace_name(event: dict[str, Any]) -> tuple[str, str]:
    return (event["metadata"]["namespace"], event["metadata"]["name"])


def _without_type_meta(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("kind", "apiVersion")}


def _json(code: int, body: Any) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


async def _frame(response: web.StreamResponse, change: str, obj: dict[str, Any]) -> None:
    await response.write(orjson.dumps({"type": change, "object": obj}) + b"\n")


def tls_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
