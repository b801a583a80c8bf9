"""The enrichment lookups against one cluster's API (implements pipeline.enrich.ObjectLookups).

Every request spends a token of the cluster's `ApiBudget` and has its own timeout. A 404 is
the answer "does not exist" (None, cached briefly by the caller). A 403 is logged once per
resource and namespace with the RBAC rule that would allow it, and that lookup is not tried
again for a while, so a missing rule costs one request, not one per alert.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.enrichment import EnrichmentConfig, RbacRule
from kube_event_watcher.kube.budget import ApiBudget
from kube_event_watcher.kube.errors import ApiError
from kube_event_watcher.kube.http import KubeHttp

log = structlog.get_logger(__name__)

T = TypeVar("T")

# kind → (API group, version, plural) for the owners the enrichment follows.
OWNER_RESOURCES: Mapping[str, tuple[str, str, str]] = {
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}
# After a 403, the same lookup is tried again this much later (RBAC may have been fixed).
FORBIDDEN_RECHECK_SECONDS = 600.0


# A group/version's resources are asked for again this much later: a CRD installed or
# upgraded while we run is found without a restart. One that is not served, sooner.
DISCOVERY_TTL_SECONDS = 600.0
DISCOVERY_MISSING_TTL_SECONDS = 60.0


class LookupFailed(Exception):
    """A lookup that did not give an answer; the message goes into facts["enrichment"]."""


# kind → (plural, namespaced) in one group/version.
Resources = dict[str, tuple[str, bool]]


def served_resources(document: Mapping[str, Any]) -> Resources:
    """The kinds an APIResourceList (GET /apis/<group>/<version>) serves, without the
    subresources (`rollouts/status`, `rollouts/scale`), which share their parent's kind."""
    resources: Resources = {}
    for entry in document.get("resources") or ():
        if not isinstance(entry, dict):
            continue
        name, kind = entry.get("name"), entry.get("kind")
        if isinstance(name, str) and isinstance(kind, str) and name and "/" not in name:
            resources.setdefault(kind, (name, bool(entry.get("namespaced"))))
    return resources


class ApiDiscovery:
    """Kind → resource per group/version from the API server's discovery documents, for the
    owners whose plural no table here knows (custom resources). One request per
    group/version in flight, however many owners ask at once; answers kept for
    `DISCOVERY_TTL_SECONDS`, a group/version that is not served for a minute."""

    def __init__(self, http: KubeHttp, *, budget: ApiBudget, timeout: float, clock: Clock) -> None:
        self.http = http
        self.budget = budget
        self.timeout = timeout
        self.clock = clock
        self.requests = 0
        self._known: dict[str, tuple[float, Resources]] = {}
        self._asking: dict[str, asyncio.Future[Resources]] = {}

    async def resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural, namespaced) of `kind` in `api_version`; None when it is not served."""
        known = self._known.get(api_version)
        if known is not None and self.clock.monotonic() < known[0]:
            return known[1].get(kind)
        asking = self._asking.get(api_version)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(api_version))
            self._asking[api_version] = asking
            asking.add_done_callback(lambda done: self._asked(api_version, done))
        # shield: one caller's deadline must not cancel the request the others wait on.
        return (await asyncio.shield(asking)).get(kind)

    def _asked(self, api_version: str, done: asyncio.Future[Resources]) -> None:
        self._asking.pop(api_version, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have left before it failed

    async def _ask(self, api_version: str) -> Resources:
        await self.budget.acquire()
        self.requests += 1
        try:
            document = await self.http.request_json(
                "GET", f"/apis/{api_version}", timeout=self.timeout, purpose="discovery"
            )
        except ApiError as exc:
            if exc.status != 404:
                raise LookupFailed(
                    f"discovery of {api_version}: HTTP {exc.status} {exc.reason}".rstrip()
                ) from exc
            document = {}
        except TimeoutError as exc:
            raise LookupFailed(
                f"discovery of {api_version}: no answer within {self.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"discovery of {api_version}: {type(exc).__name__}: {exc}") from exc
        resources = served_resources(document) if isinstance(document, dict) else {}
        ttl = DISCOVERY_TTL_SECONDS if resources else DISCOVERY_MISSING_TTL_SECONDS
        self._known[api_version] = (self.clock.monotonic() + ttl, resources)
        return resources


def _q(name: str) -> str:
    return quote(name, safe="")


class KubeObjectLookups:
    """Single-object GETs for enrichment; counts requests by resource for metrics/benches."""

    def __init__(
        self,
        http: KubeHttp,
        *,
        budget: ApiBudget,
        lookup_timeout: float,
        clock: Clock,
        owner_groups: Iterable[str] = (),
    ) -> None:
        self.http = http
        self.budget = budget
        self.lookup_timeout = lookup_timeout
        self.clock = clock
        self.owner_groups = frozenset(owner_groups)
        self.discovery = ApiDiscovery(http, budget=budget, timeout=lookup_timeout, clock=clock)
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._forbidden_until: dict[tuple[str, str], float] = {}
        self._reported: set[tuple[str, str]] = set()

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}"
        return await self._get(RbacRule("", ("pods",)), namespace, self._json(path))

    async def get_owner(
        self, kind: str, api_version: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        group = api_version.rpartition("/")[0]
        known = OWNER_RESOURCES.get(kind)
        if known is not None and (not api_version or group == known[0]):
            group, version, plural = known
            path = f"/apis/{group}/{version}/namespaces/{_q(namespace)}/{plural}/{_q(name)}"
            return await self._get(RbacRule(group, (plural,)), namespace, self._json(path))
        if group not in self.owner_groups:
            raise LookupFailed(f"no lookup for owner kind {kind} ({api_version or '?'})")
        resource = await self.discovery.resource(api_version, kind)
        if resource is None:
            raise LookupFailed(f"{api_version} serves no kind {kind} (API discovery)")
        plural, namespaced = resource
        base = f"/apis/{api_version}"
        path = (
            f"{base}/namespaces/{_q(namespace)}/{plural}/{_q(name)}"
            if namespaced
            else f"{base}/{plural}/{_q(name)}"
        )
        scope = namespace if namespaced else ""
        return await self._get(RbacRule(group, (plural,)), scope, self._json(path))

    async def get_node(self, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/nodes/{_q(name)}"
        return await self._get(RbacRule("", ("nodes",)), "", self._json(path))

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/namespaces/{_q(name)}"
        return await self._get(RbacRule("", ("namespaces",)), "", self._json(path))

    async def get_previous_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str | None:
        """The previous run's last lines. The API server asks the Pod's kubelet for them, so
        this fails (502/500) when the node is gone. None when there was no previous run."""
        path = f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(pod)}/log"
        params = {
            "previous": "true",
            "container": container,
            "tailLines": str(tail_lines),
            "limitBytes": str(limit_bytes),
        }

        async def fetch() -> str:
            return await self.http.request_text(
                path, params, timeout=self.lookup_timeout, purpose="logs"
            )

        try:
            return await self._get(RbacRule("", ("pods/log",)), namespace, fetch)
        except LookupFailed as exc:
            # 400: "previous terminated container ... not found" — it has not restarted yet.
            if isinstance(exc.__cause__, ApiError) and exc.__cause__.status == 400:
                return None
            raise

    def _json(self, path: str) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def fetch() -> dict[str, Any]:
            answer = await self.http.request_json(
                "GET", path, timeout=self.lookup_timeout, purpose="enrich"
            )
            if not isinstance(answer, dict):
                raise LookupFailed(f"GET {path}: expected a JSON object")
            return answer

        return fetch

    async def _get(
        self, rule: RbacRule, namespace: str, fetch: Callable[[], Awaitable[T]]
    ) -> T | None:
        resource = rule.resources[0]
        scope = (f"{rule.api_group}/{resource}", namespace)
        until = self._forbidden_until.get(scope)
        if until is not None and self.clock.monotonic() < until:
            raise LookupFailed(f"forbidden: get {resource} ({self._where(namespace)})")
        await self.budget.acquire()
        self.requests[resource] += 1
        try:
            return await fetch()
        except ApiError as exc:
            if exc.status == 404:
                return None
            self.errors[resource] += 1
            if exc.status == 403:
                self._deny(rule, namespace, scope)
                raise LookupFailed(f"forbidden: get {resource} ({self._where(namespace)})") from exc
            raise LookupFailed(f"get {resource}: HTTP {exc.status} {exc.reason}".rstrip()) from exc
        except TimeoutError as exc:
            self.errors[resource] += 1
            raise LookupFailed(
                f"get {resource}: no answer within {self.lookup_timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            self.errors[resource] += 1
            raise LookupFailed(f"get {resource}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _where(namespace: str) -> str:
        return f"namespace {namespace}" if namespace else "cluster-wide"

    def _deny(self, rule: RbacRule, namespace: str, scope: tuple[str, str]) -> None:
        self._forbidden_until[scope] = self.clock.monotonic() + FORBIDDEN_RECHECK_SECONDS
        if scope in self._reported:
            return
        self._reported.add(scope)
        log.warning(
            "enrichment lookup forbidden; alerts go out without these facts",
            cluster=self.http.endpoint.cluster,
            resource=scope[0],
            namespace=namespace or None,
            fix=(
                f"grant a ClusterRole rule {rule.inline()} to this identity "
                "(docs/enrichment.md lists the rules for each lookup), "
                "or switch it off (enrichment.log_tail.enabled / enrichment.enabled: false)"
            ),
            retry_in_seconds=FORBIDDEN_RECHECK_SECONDS,
        )


def enrichment_lookups(http: KubeHttp, config: EnrichmentConfig, clock: Clock) -> KubeObjectLookups:
    """The lookups for one cluster, with that cluster's own API budget."""
    budget = ApiBudget(config.api_budget.qps, config.api_budget.burst, clock)
    return KubeObjectLookups(
        http,
        budget=budget,
        lookup_timeout=config.api_budget.lookup_timeout,
        clock=clock,
        owner_groups=config.owner_groups,
    )
