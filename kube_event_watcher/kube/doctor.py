"""`doctor` for one cluster: walk the connection path the way an operator would.

config source → DNS → TCP → TLS → who am I → RBAC → API and a watch smoke test. Each step
gathers facts with the same loader (`client.py`) and HTTP boundary (`http.py`) the daemon
uses, and `diagnosis.py` explains them. A step that cannot run because an earlier one failed
is reported as skipped rather than failing again with a confusing second error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.kube import diagnosis as dx
from kube_event_watcher.kube.certificates import (
    CertFacts,
    facts_from_der,
    facts_from_pem,
    token_claims,
)
from kube_event_watcher.kube.client import (
    DEFAULT_KUBECONFIG,
    SA_CA,
    SA_TOKEN,
    ApiEndpoint,
    in_cluster_endpoint,
    select_kubeconfig,
    selection_endpoint,
    uses_in_cluster,
)
from kube_event_watcher.kube.errors import ApiError, ClusterAccessError, ExecPluginError
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.probes import connect, resolve, tls_exchange, unverified_context
from kube_event_watcher.kube.watching import EVENTS_API

SELF_SUBJECT_REVIEW = "/apis/authentication.k8s.io/{version}/selfsubjectreviews"
ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MAX_ADDRESSES = 4
REVIEW_CONCURRENCY = 8


@dataclass
class ClusterDoctor:
    """Diagnoses one configured cluster. `clock` is "now" for certificate and skew checks."""

    config: ClusterConfig
    clock: Clock
    kubeconfig: str | None = None
    context: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    sections: Mapping[str, Any] = field(default_factory=dict)
    namespaces: Sequence[str | None] = (None,)
    default_namespace: str = "default"
    timer: Callable[[], float] = time.perf_counter
    checks: list[dx.Check] = field(default_factory=list)
    _exec_command: list[str] = field(default_factory=list)
    _cas: list[CertFacts] = field(default_factory=list)
    _ca_source: str = ""
    _client_cert: CertFacts | None = None

    @property
    def scope(self) -> str:
        return f"cluster {self.config.name}"

    def _add(self, check: dx.Check) -> dx.Check:
        self.checks.append(check)
        return check

    def _skip(self, steps: Sequence[str], because: str) -> None:
        for step in steps:
            self._add(dx.Check(self.scope, step, "skip", f"not checked: {because}"))

    async def run(self) -> list[dx.Check]:
        later = ["dns", "tcp", "tls", "whoami", "rbac", "api", "watch"]
        endpoint = await self._config_source()
        if endpoint is None:
            self._skip(later, "no usable cluster config")
            return self.checks
        parts = urlsplit(endpoint.server)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self._dns(host, port)
        if not addresses:
            self._skip(later[1:], f"{host} does not resolve")
            return self.checks
        address = await self._tcp(host, port, addresses, endpoint.connect_timeout)
        if address is None:
            self._skip(later[2:], f"cannot connect to {host}:{port}")
            return self.checks
        if not await self._tls(endpoint, host, port, address):
            self._skip(later[3:], "TLS to the API server failed")
            return self.checks
        http = KubeHttp(endpoint)
        try:
            username = await self._whoami(http, endpoint)
            if username is None:
                self._skip(later[4:], "the API server did not accept our credentials")
                return self.checks
            await self._rbac(http, username)
            await self._api(http)
            await self._watch(http)
        finally:
            await http.close()
        return self.checks

    # -- 1. config source -------------------------------------------------------------------

    def _sources_seen(self) -> list[str]:
        seen = []
        explicit = self.kubeconfig or self.config.kubeconfig
        seen.append(f"--kubeconfig / clusters[].kubeconfig: {explicit or '(not given)'}")
        seen.append(f"$KUBECONFIG: {self.env.get('KUBECONFIG') or '(not set)'}")
        default = Path(os.path.expanduser(DEFAULT_KUBECONFIG))
        seen.append(f"{DEFAULT_KUBECONFIG}: {'present' if default.is_file() else 'absent'}")
        service_host = self.env.get("KUBERNETES_SERVICE_HOST")
        seen.append(
            "KUBERNETES_SERVICE_HOST: "
            + (f"{service_host} (running in a pod)" if service_host else "(not set)")
        )
        return seen

    async def _config_source(self) -> ApiEndpoint | None:
        seen = self._sources_seen()
        if uses_in_cluster(self.config, self.kubeconfig, self.context, self.env):
            sa_dir = Path(self.config.service_account_dir)
            for name in (SA_TOKEN, SA_CA):
                seen.append(
                    f"{sa_dir / name}: {'present' if (sa_dir / name).is_file() else 'absent'}"
                )
            try:
                endpoint = in_cluster_endpoint(self.config, self.env)
            except ClusterAccessError as exc:
                self._add(
                    dx.Check(
                        self.scope,
                        "config",
                        "fail",
                        "in-cluster config is not usable",
                        (*seen, redact(str(exc))),
                        (
                            "run inside a pod with automountServiceAccountToken: true, or give a "
                            "kubeconfig (--kubeconfig or clusters[].kubeconfig)",
                        ),
                    )
                )
                return None
            self._ca_source = f"in-cluster {sa_dir / SA_CA}"
            self._load_trust(endpoint)
            why = "in_cluster: true" if self.config.in_cluster else "no kubeconfig found"
            self._add(
                dx.Check(
                    self.scope,
                    "config",
                    "ok",
                    f"in-cluster ServiceAccount ({why}), server {endpoint.server}",
                    (*seen, *endpoint.origin, f"auth: {endpoint.auth_method}"),
                    data={
                        "source": "in-cluster",
                        "server": endpoint.server,
                        "auth_method": endpoint.auth_method,
                    },
                )
            )
            return endpoint
        try:
            selection = select_kubeconfig(self.config, self.kubeconfig, self.context, self.env)
        except ClusterAccessError as exc:
            self._add(
                dx.Check(
                    self.scope,
                    "config",
                    "fail",
                    "no usable kubeconfig",
                    (*seen, redact(str(exc))),
                    (
                        "pass --kubeconfig FILE, set $KUBECONFIG, or check the context name with "
                        "`kubectl config get-contexts`",
                    ),
                )
            )
            return None
        self._exec_command = selection.exec_command
        self._ca_source = selection.ca_source
        seen += selection.origin
        seen += [
            f"files read: {', '.join(selection.paths)}",
            f"context {selection.context!r} -> cluster {selection.cluster!r} "
            f"({selection.server}), user {selection.user or '(none)'!r}",
            f"auth: {selection.auth_method}",
            f"CA: {selection.ca_source}",
        ]
        data = {
            "source": "kubeconfig",
            "files": selection.paths,
            "context": selection.context,
            "cluster": selection.cluster,
            "user": selection.user,
            "server": selection.server,
            "auth_method": selection.auth_method,
        }
        try:
            endpoint = await selection_endpoint(selection)
        except ExecPluginError as exc:
            check = dx.explain_exec_failure(self.scope, selection.exec_command, redact(str(exc)))
            self._add(
                dx.Check(
                    check.scope,
                    check.step,
                    check.status,
                    check.summary,
                    (*seen, *check.seen),
                    check.fix,
                    {**data, **check.data},
                )
            )
            return None
        except ClusterAccessError as exc:
            self._add(
                dx.Check(
                    self.scope,
                    "config",
                    "fail",
                    "the kubeconfig entry is not usable",
                    (*seen, redact(str(exc))),
                    (
                        "fix the files the kubeconfig points at (certificate, key, token file) or "
                        "get a fresh kubeconfig",
                    ),
                    data,
                )
            )
            return None
        status: dx.Status = "ok"
        fix: tuple[str, ...] = ()
        if endpoint.insecure:
            status = "warn"
            seen.append("insecure-skip-tls-verify is on: the server's identity is NOT checked")
            fix = (
                "set clusters[].cluster.certificate-authority-data to the cluster CA and "
                "remove insecure-skip-tls-verify",
            )
        self._load_trust(endpoint)
        if self._client_cert is not None:
            cert_status, cert_seen, cert_fix = dx.explain_client_cert(
                self._client_cert, self.clock.now()
            )
            seen += cert_seen
            fix += tuple(cert_fix)
            if cert_status != "ok" and status != "fail":
                status = "warn" if cert_status == "warn" else "fail"
        summary = (
            f"kubeconfig context {selection.context!r}, user {selection.user or '(none)'!r}, "
            f"auth {selection.auth_method}"
        )
        self._add(dx.Check(self.scope, "config", status, summary, tuple(seen), fix, data))
        return endpoint

    def _load_trust(self, endpoint: ApiEndpoint) -> None:
        if endpoint.ca_file:
            try:
                self._cas = facts_from_pem(Path(endpoint.ca_file).read_bytes())
            except OSError:
                self._cas = []
        if endpoint.client_cert_file:
            try:
                certs = facts_from_pem(Path(endpoint.client_cert_file).read_bytes())
            except OSError:
                certs = []
            self._client_cert = certs[0] if certs else None

    # -- 2. DNS and TCP ---------------------------------------------------------------------

    async def _dns(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            self._add(dx.Check(self.scope, "dns", "ok", f"{host} is an IP address: no DNS needed"))
            return [host]
        try:
            addresses = await resolve(host, port, self.config.connect_timeout)
        except OSError as exc:
            self._add(dx.explain_dns_failure(self.scope, host, exc.errno, str(exc)))
            return []
        except TimeoutError:
            self._add(dx.explain_dns_failure(self.scope, host, None, "no answer in time"))
            return []
        self._add(
            dx.Check(
                self.scope,
                "dns",
                "ok",
                f"{host} resolves to {', '.join(addresses)}",
                data={"host": host, "addresses": addresses},
            )
        )
        return addresses

    async def _tcp(self, host: str, port: int, addresses: list[str], timeout: float) -> str | None:
        outcomes = await asyncio.gather(
            *(connect(a, port, timeout, self.timer) for a in addresses[:MAX_ADDRESSES])
        )
        self._add(dx.explain_connect(self.scope, host, port, outcomes, timeout))
        return next((o.address for o in outcomes if o.kind == "ok"), None)

    # -- 3. TLS -----------------------------------------------------------------------------

    async def _tls(self, endpoint: ApiEndpoint, host: str, port: int, address: str) -> bool:
        if endpoint.ssl_context is None:
            self._add(
                dx.Check(
                    self.scope,
                    "tls",
                    "warn",
                    "plain HTTP: the connection is not encrypted",
                    (f"server {endpoint.server}",),
                    (
                        "use the API server's https:// address; plain HTTP is for local test "
                        "servers only",
                    ),
                )
            )
            return True
        name = endpoint.server_hostname or host
        netloc = urlsplit(endpoint.server).netloc
        timeout = endpoint.connect_timeout
        exchange = await tls_exchange(address, port, endpoint.ssl_context, name, timeout, netloc)
        now = self.clock.now()
        if exchange.verify_message:
            presented = await tls_exchange(
                address, port, unverified_context(), name, timeout, netloc
            )
            self._add(
                dx.explain_tls_failure(
                    self.scope,
                    verify_code=exchange.verify_code,
                    verify_message=exchange.verify_message,
                    server_name=host,
                    tls_server_name=endpoint.server_hostname,
                    presented=facts_from_der(presented.peer_der) if presented.peer_der else None,
                    configured_cas=self._cas,
                    ca_source=self._ca_source,
                    local_now=now,
                    server_date=presented.server_date,
                )
            )
            return False
        rejected = exchange.handshake_error or exchange.read_error
        if rejected and self._client_cert is not None and _is_alert(rejected):
            self._add(dx.explain_client_rejected(self.scope, rejected, self._client_cert, now))
            return False
        if exchange.handshake_error:
            self._add(
                dx.Check(
                    self.scope,
                    "tls",
                    "fail",
                    "the TLS handshake failed",
                    (exchange.handshake_error,),
                    (
                        "check that the server URL points at the API server's TLS port, not a "
                        "plain-HTTP port or another service",
                    ),
                )
            )
            return False
        presented_facts = facts_from_der(exchange.peer_der) if exchange.peer_der else None
        seen = [
            f"verified against {self._ca_source or 'the configured CA'} ({exchange.tls_version})"
        ]
        status: dx.Status = "warn" if endpoint.insecure else "ok"
        fix: list[str] = []
        if presented_facts is not None:
            seen += [
                f"server certificate: subject {presented_facts.subject}, "
                f"issuer {presented_facts.issuer}",
                f"valid until {dx.iso(presented_facts.not_after)}",
            ]
            if presented_facts.not_after - now < dx.CERT_RENEW_WARN_SECONDS:
                status = "warn"
                seen.append(
                    "the server certificate expires in "
                    f"{dx.human_duration(presented_facts.not_after - now)}"
                )
                fix.append("renew the API server's certificate before it expires")
        skew = dx.clock_skew(now, exchange.server_date)
        seen.append(dx.skew_line(skew))
        if skew is not None and abs(skew) > dx.SKEW_WARN_SECONDS:
            status = "warn"
            fix.append(
                "enable NTP on this machine (`timedatectl set-ntp true`): token and "
                "certificate lifetimes are judged by the server's clock"
            )
        if endpoint.insecure:
            fix.append("verification is off (insecure-skip-tls-verify); set the cluster CA")
        self._add(
            dx.Check(
                self.scope,
                "tls",
                status,
                "TLS verified" if not endpoint.insecure else "TLS NOT verified (insecure)",
                tuple(seen),
                tuple(fix),
                {"skew_seconds": skew, "tls_version": exchange.tls_version},
            )
        )
        return True

    # -- 4. who am I ------------------------------------------------------------------------

    async def _whoami(self, http: KubeHttp, endpoint: ApiEndpoint) -> str | None:
        answer: Any = None
        for version in ("v1", "v1beta1"):
            body = {"apiVersion": f"authentication.k8s.io/{version}", "kind": "SelfSubjectReview"}
            try:
                answer = await http.request_json(
                    "POST", SELF_SUBJECT_REVIEW.format(version=version), body=body
                )
                break
            except ApiError as exc:
                if exc.status == 401:
                    await self._unauthorized(endpoint, exc.message)
                    return None
                if exc.status != 404:
                    self._add(
                        dx.Check(
                            self.scope,
                            "whoami",
                            "fail",
                            f"SelfSubjectReview failed: {redact(str(exc))}",
                        )
                    )
                    return ""
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._add(_request_failed(self.scope, "whoami", exc))
                return None
        if answer is None:
            self._add(
                dx.Check(
                    self.scope,
                    "whoami",
                    "warn",
                    "SelfSubjectReview is not served (Kubernetes < 1.27): identity unknown",
                    fix=("RBAC below is still checked; upgrade the cluster to see who you are",),
                )
            )
            return ""
        user_info = (answer.get("status") or {}).get("userInfo") or {}
        check = self._add(dx.explain_whoami(self.scope, user_info))
        return None if check.status == "fail" else str(user_info.get("username") or "")

    async def _unauthorized(self, endpoint: ApiEndpoint, message: str) -> None:
        claims: Mapping[str, object] = {}
        try:
            header = await endpoint.auth_header()
        except (ClusterAccessError, OSError, ValueError):
            header = None
        if header and header.lower().startswith("bearer "):
            claims = token_claims(header.split(" ", 1)[1])
        self._add(
            dx.explain_unauthorized(
                self.scope,
                auth_method=endpoint.auth_method,
                message=redact(message),
                exec_command=self._exec_command,
                token_claims=claims,
                client=self._client_cert,
                configured_cas=self._cas,
                local_now=self.clock.now(),
            )
        )

    # -- 5. RBAC ----------------------------------------------------------------------------

    async def _rbac(self, http: KubeHttp, username: str) -> None:
        needs = dx.required_access(self.sections, self.namespaces, self.default_namespace)
        limit = asyncio.Semaphore(REVIEW_CONCURRENCY)

        async def review(need: dx.AccessNeed) -> dx.AccessAnswer:
            async with limit:
                answer = await http.request_json("POST", ACCESS_REVIEW, body=need.review_body())
            status = answer.get("status") or {}
            return dx.AccessAnswer(need, bool(status.get("allowed")), str(status.get("reason", "")))

        try:
            answers = await asyncio.gather(*(review(n) for n in needs))
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            self._add(_request_failed(self.scope, "rbac", exc))
            return
        self._add(dx.explain_rbac(self.scope, answers, username, self.default_namespace))

    # -- 6. API and watch -------------------------------------------------------------------

    async def _api(self, http: KubeHttp) -> None:
        seen: list[str] = []
        data: dict[str, Any] = {}
        try:
            version = await http.request_json("GET", "/version")
            data["version"] = version.get("gitVersion") if isinstance(version, dict) else None
            seen.append(f"server version {data['version']}")
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            seen.append(f"GET /version failed: {redact(str(exc))}")
        try:
            discovery = await http.request_json("GET", EVENTS_API)
        except ApiError as exc:
            if exc.status == 404:
                self._add(
                    dx.Check(
                        self.scope,
                        "api",
                        "fail",
                        "events.k8s.io/v1 is not served",
                        tuple(seen),
                        ("events.k8s.io/v1 needs Kubernetes 1.19 or newer; upgrade the cluster",),
                        data,
                    )
                )
                return
            self._add(_request_failed(self.scope, "api", exc))
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._add(_request_failed(self.scope, "api", exc))
            return
        resources = {r.get("name"): r for r in (discovery or {}).get("resources") or []}
        events = resources.get("events")
        if not events or not {"list", "watch"} <= set(events.get("verbs") or []):
            self._add(
                dx.Check(
                    self.scope,
                    "api",
                    "fail",
                    "events.k8s.io/v1 does not offer list/watch on events",
                    (*seen, f"resources served: {', '.join(map(str, resources)) or '(none)'}"),
                    (
                        "an aggregated API or proxy in front of the API server hides them; "
                        "talk to the API server directly",
                    ),
                    data,
                )
            )
            return
        seen.append("events.k8s.io/v1 serves events with list and watch")
        self._add(
            dx.Check(
                self.scope,
                "api",
                "ok",
                f"events.k8s.io/v1 served (server {data.get('version')})",
                tuple(seen),
                (),
                data,
            )
        )

    async def _watch(self, http: KubeHttp) -> None:
        namespace = self.namespaces[0] if self.namespaces else None
        path = (
            f"{EVENTS_API}/namespaces/{namespace}/events" if namespace else f"{EVENTS_API}/events"
        )
        started = self.timer()
        try:
            listed = await http.request_json("GET", path, {"limit": "1"})
            resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
            listed_ms = (self.timer() - started) * 1000
            started = self.timer()
            params = {
                "watch": "1",
                "resourceVersion": resource_version,
                "timeoutSeconds": "1",
                "allowWatchBookmarks": "true",
            }
            lines = 0
            async with http.stream(path, params, read_timeout=10.0) as response:
                opened_ms = (self.timer() - started) * 1000
                async for _ in response.content:
                    lines += 1
        except ApiError as exc:
            fix = ("see the rbac step above",) if exc.status == 403 else ()
            self._add(
                dx.Check(
                    self.scope,
                    "watch",
                    "fail",
                    f"list/watch of events failed: {redact(str(exc))}",
                    (),
                    fix,
                )
            )
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._add(_request_failed(self.scope, "watch", exc))
            return
        where = f"namespace {namespace}" if namespace else "all namespaces"
        self._add(
            dx.Check(
                self.scope,
                "watch",
                "ok",
                f"watch opened in {opened_ms:.0f} ms ({where})",
                (
                    f"list limit=1 answered in {listed_ms:.0f} ms, "
                    f"resourceVersion {resource_version}",
                    f"watch opened from it in {opened_ms:.0f} ms; {lines} line(s) in its 1 s",
                ),
                data={
                    "resource_version": resource_version,
                    "list_ms": round(listed_ms, 1),
                    "watch_open_ms": round(opened_ms, 1),
                    "lines": lines,
                },
            )
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_alert(error: str) -> bool:
    lowered = error.lower()
    return "alert" in lowered or "certificate" in lowered or "closed by the server" in lowered


def _request_failed(scope: str, step: str, exc: BaseException) -> dx.Check:
    return dx.Check(
        scope,
        step,
        "fail",
        f"request failed: {redact(str(exc)) or type(exc).__name__}",
        fix=("see the earlier steps; rerun with the same flags to confirm",),
    )
