"""A loopback double of the API server's single-object reads, for enrichment tests and benches.

Serves GET of Pods, ReplicaSets/Deployments/StatefulSets/DaemonSets (apps/v1), Jobs/CronJobs
(batch/v1), Nodes, custom resources registered with `serve_custom` (with their discovery
document, GET /apis/<group>/<version>) and `pods/NAME/log` (previous=true, container,
tailLines, limitBytes) the way the API server answers: JSON objects, `Status` bodies for
404/403/400, text/plain logs. Counts requests per resource; can refuse (403), hang, or
delay a resource.

The real log endpoint is proxied by the API server to the Pod's kubelet; a control plane
without kubelets cannot serve it, so the log tail is tested against this double only.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.kube.client import ApiEndpoint
from tests.support.apidouble import status as status_body

PLURALS = {
    "Pod": "pods",
    "Node": "nodes",
    "ReplicaSet": "replicasets",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "CronJob": "cronjobs",
}
_GROUPS = {
    "replicasets": "apps",
    "deployments": "apps",
    "statefulsets": "apps",
    "daemonsets": "apps",
    "jobs": "batch",
    "cronjobs": "batch",
}


class FakeObjectsApi:
    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str], str] = {}
        self.requests: Counter[str] = Counter()
        self.forbidden: set[str] = set()
        self.hang: set[str] = set()
        self.delay = 0.0
        self.log_params: list[dict[str, str]] = []
        self.plurals = dict(PLURALS)
        # group/version → its APIResourceList's resources (custom resources only)
        self.custom: dict[str, list[dict[str, Any]]] = {}
        self._custom_groups: dict[str, str] = {}  # plural → group/version
        for obj in objects or []:
            self.add(obj)
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self._log)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._core_namespaced)
        app.router.add_get("/api/v1/nodes/{name}", self._node)
        app.router.add_get("/apis/{group}/{version}", self._discovery)
        app.router.add_get("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self._grouped)
        app.router.add_get("/apis/{group}/{version}/{plural}/{name}", self._cluster_scoped)
        self.server = TestServer(app, host="127.0.0.1")

    def serve_custom(self, api_version: str, kind: str, plural: str, namespaced: bool) -> None:
        """Serve `kind` as a custom resource (as an established CRD would be), with the
        subresources a CRD usually has listed in discovery beside it."""
        resources = self.custom.setdefault(api_version, [])
        entry = {"name": plural, "kind": kind, "namespaced": namespaced, "verbs": ["get"]}
        resources += [entry, {**entry, "name": f"{plural}/status"}]
        self.plurals[kind] = plural
        self._custom_groups[plural] = api_version

    def add(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(self.plurals[obj["kind"]], meta.get("namespace", ""), meta["name"])] = obj

    async def start(self) -> FakeObjectsApi:
        await self.server.start_server()
        return self

    async def close(self) -> None:
        await self.server.close()

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def endpoint(self, request_timeout: float = 5.0) -> ApiEndpoint:
        async def auth() -> str | None:
            return "Bearer fake-token-for-tests"

        return ApiEndpoint(
            cluster="fake",
            server=self.url,
            ssl_context=None,
            auth_header=auth,
            connect_timeout=2.0,
            request_timeout=request_timeout,
        )

    async def _gate(self, resource: str, name: str, namespace: str) -> web.Response | None:
        self.requests[resource] += 1
        if resource in self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if resource in self.forbidden:
            plural, _, sub = resource.partition("/")
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            message = (
                f'{plural} "{name}" is forbidden: User "system:serviceaccount:kew:kew" cannot get '
                f'resource "{plural}"' + (f' subresource "{sub}"' if sub else "") + where
            )
            return web.json_response(status_body(403, "Forbidden", message), status=403)
        return None

    def _object(self, plural: str, namespace: str, name: str) -> web.Response:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            body = status_body(404, "NotFound", f'{plural} "{name}" not found')
            return web.json_response(body, status=404)
        return web.json_response(obj)

    async def _core_namespaced(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return await self._gate("pods", name, ns) or self._object("pods", ns, name)

    async def _node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await self._gate("nodes", name, "") or self._object("nodes", "", name)

    async def _discovery(self, request: web.Request) -> web.Response:
        api_version = f"{request.match_info['group']}/{request.match_info['version']}"
        self.requests[f"discovery {api_version}"] += 1
        resources = self.custom.get(api_version)
        if resources is None:
            return _not_served()
        return web.json_response(
            {"kind": "APIResourceList", "groupVersion": api_version, "resources": resources}
        )

    def _served(self, request: web.Request, plural: str, namespaced: bool) -> bool:
        api_version = f"{request.match_info['group']}/{request.match_info['version']}"
        if plural in self._custom_groups:
            entry = next(r for r in self.custom[api_version] if r["name"] == plural)
            return self._custom_groups[plural] == api_version and entry["namespaced"] is namespaced
        return namespaced and _GROUPS.get(plural) == request.match_info["group"]

    async def _grouped(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        plural = request.match_info["plural"]
        if not self._served(request, plural, namespaced=True):
            return _not_served()
        return await self._gate(plural, name, ns) or self._object(plural, ns, name)

    async def _cluster_scoped(self, request: web.Request) -> web.Response:
        plural, name = request.match_info["plural"], request.match_info["name"]
        if not self._served(request, plural, namespaced=False):
            return _not_served()
        return await self._gate(plural, name, "") or self._object(plural, "", name)

    async def _log(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        refused = await self._gate("pods/log", name, ns)
        if refused is not None:
            return refused
        params = dict(request.query)
        self.log_params.append(params)
        if ("pods", ns, name) not in self.objects:
            return web.json_response(
                status_body(404, "NotFound", f'pods "{name}" not found'), status=404
            )
        container = params.get("container", "")
        text = self.logs.get((ns, name, container))
        if text is None or params.get("previous") != "true":
            message = f'previous terminated container "{container}" in pod "{name}" not found'
            return web.json_response(status_body(400, "BadRequest", message), status=400)
        lines = text.splitlines(keepends=True)
        if "tailLines" in params:
            lines = lines[-int(params["tailLines"]) :]
        data = "".join(lines).encode()
        if "limitBytes" in params:
            data = data[: int(params["limitBytes"])]  # counted from the start, like the API
        return web.Response(body=data, content_type="text/plain")


def _not_served() -> web.Response:
    body = status_body(404, "NotFound", "the server could not find the requested resource")
    return web.json_response(body, status=404)


def crashloop_cluster(pods: int, nodes: int, template: dict[str, Any]) -> list[dict[str, Any]]:
    """`pods` copies of a crash-looping Pod of Deployment shop/web (one ReplicaSet), spread
    over `nodes` Nodes, from the recorded objects `template` (kind → object)."""
    objects: list[dict[str, Any]] = [template["ReplicaSet"], template["Deployment"]]
    for n in range(nodes):
        node = copy.deepcopy(template["Node"])
        node["metadata"]["name"] = f"worker-{n}"
        objects.append(node)
    for p in range(pods):
        pod = copy.deepcopy(template["Pod"])
        pod["metadata"]["name"] = f"web-7d9f8c6b5-{p:05d}"
        pod["metadata"]["uid"] = f"pod-uid-{p}"
        pod["spec"]["nodeName"] = f"worker-{p % nodes}"
        objects.append(pod)
    return objects
