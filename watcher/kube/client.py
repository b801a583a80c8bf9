"""Cluster access: kubeconfig in kubectl's order, or the in-cluster ServiceAccount.

kubernetes-asyncio parses kubeconfigs and runs exec credential plugins; we keep its result
as an `ApiEndpoint` (base URL, TLS context, a credential source) and do the HTTP ourselves
with aiohttp, with timeouts on every request and raw JSON decoded by orjson.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubernetes_asyncio.config.config_exception import ConfigException

from watcher.config.schema import ClusterConfig
from watcher.config.secrets import registry as secrets
from watcher.kube.errors import ClusterAccessError

log = structlog.get_logger(__name__)

DEFAULT_KUBECONFIG = "~/.kube/config"
SA_TOKEN = "token"
SA_CA = "ca.crt"
# A rotated projected token is re-read at most this often (kubelet refreshes at 80% of TTL).
TOKEN_REREAD_SECONDS = 30.0

AuthHeader = Callable[[], Awaitable[str | None]]


@dataclass
class ApiEndpoint:
    """Everything needed to send a request to one cluster's API server."""

    cluster: str
    server: str
    ssl_context: ssl.SSLContext | None
    auth_header: AuthHeader
    origin: list[str] = field(default_factory=list)
    server_hostname: str | None = None
    insecure: bool = False
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    auth_method: str = "none"


def kubeconfig_paths(
    explicit: str | list[str] | None, env: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The kubeconfig files kubectl would read, and a note of why, in kubectl's order:
    --kubeconfig (or the config's `kubeconfig`), $KUBECONFIG (a list, merged), ~/.kube/config."""
    why: list[str] = []
    if explicit:
        paths = explicit if isinstance(explicit, list) else [explicit]
        why.append(f"kubeconfig given explicitly: {', '.join(paths)}")
        return [os.path.expanduser(p) for p in paths], why
    env_value = env.get("KUBECONFIG", "")
    if env_value:
        listed = [p for p in env_value.split(os.pathsep) if p]
        present = [os.path.expanduser(p) for p in listed if Path(p).expanduser().is_file()]
        why.append(
            f"$KUBECONFIG lists {len(listed)} file(s), {len(present)} present, merged in order"
        )
        return present, why
    default = os.path.expanduser(DEFAULT_KUBECONFIG)
    why.append(f"$KUBECONFIG is not set; using {DEFAULT_KUBECONFIG}")
    return ([default] if Path(default).is_file() else []), why


def make_ssl_context(
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    verify: bool,
) -> ssl.SSLContext:
    context = (
        ssl.create_default_context(cafile=ca_file)
        if verify
        else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    )
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class _ServiceAccountToken:
    """The projected token file, re-read as the kubelet rotates it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token: str | None = None
        self._read_at = -1e18
        self._mtime = 0.0

    async def __call__(self) -> str | None:
        now = time.monotonic()
        if now - self._read_at >= TOKEN_REREAD_SECONDS or self._token is None:
            self._read_at = now
            try:
                mtime = self.path.stat().st_mtime
                if mtime != self._mtime or self._token is None:
                    token = self.path.read_text().strip()
                    if token:
                        self._token, self._mtime = token, mtime
                        secrets.register(token)
            except OSError as exc:
                log.warning("service account token unreadable", path=str(self.path), error=str(exc))
        return f"Bearer {self._token}" if self._token else None


def in_cluster_endpoint(config: ClusterConfig, env: Mapping[str, str] = os.environ) -> ApiEndpoint:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ClusterAccessError(
            f"cluster {config.name!r}: in_cluster is set but KUBERNETES_SERVICE_HOST/PORT are not; "
            "run in a pod, or give a kubeconfig instead"
        )
    sa_dir = Path(config.service_account_dir)
    token_path, ca_path = sa_dir / SA_TOKEN, sa_dir / SA_CA
    for path in (token_path, ca_path):
        if not path.is_file():
            raise ClusterAccessError(
                f"cluster {config.name!r}: {path} is missing; is automountServiceAccountToken off?"
            )
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ApiEndpoint(
        cluster=config.name,
        server=f"https://{netloc}",
        ssl_context=make_ssl_context(str(ca_path), None, None, True),
        auth_header=_ServiceAccountToken(token_path),
        origin=[f"in-cluster: KUBERNETES_SERVICE_HOST={host}, token and CA from {sa_dir}"],
        connect_timeout=config.connect_timeout,
        request_timeout=config.request_timeout,
        auth_method="serviceaccount token",
    )


def _auth_method(loader: kube_config.KubeConfigLoader) -> str:
    user: Any = getattr(loader, "_user", None)
    if user is None:
        return "none"
    if "exec" in user:
        return f"exec plugin ({user['exec'].safe_get('command')})"
    if loader.provider:
        return f"auth-provider {loader.provider}"
    if "token" in user or "tokenFile" in user:
        return "bearer token"
    if "client-certificate" in user or "client-certificate-data" in user:
        return "client certificate"
    if "username" in user:
        return "basic auth"
    return "none"


async def kubeconfig_endpoint(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> ApiEndpoint:
    """Load a kubeconfig the way kubectl does; `kubeconfig`/`context` are CLI overrides."""
    paths, why = kubeconfig_paths(kubeconfig or config.kubeconfig, env)
    if not paths:
        raise ClusterAccessError(
            f"cluster {config.name!r}: no kubeconfig found ({'; '.join(why)}); "
            "pass --kubeconfig, set $KUBECONFIG, or run in a pod with in_cluster: true"
        )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ClusterAccessError(f"cluster {config.name!r}: kubeconfig {missing[0]} does not exist")
    configuration = type.__call__(Configuration)
    chosen_context = context or config.context
    try:
        loader = await kube_config.load_kube_config(
            config_file=os.pathsep.join(paths),
            context=chosen_context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, AssertionError, KeyError, TypeError, ValueError) as exc:
        detail = str(exc) or type(exc).__name__
        if chosen_context and (
            isinstance(exc, AssertionError | KeyError) or "contexts list" in detail
        ):
            detail = f"context {chosen_context!r} not found in {', '.join(paths)}"
        raise ClusterAccessError(
            f"cluster {config.name!r}: cannot use kubeconfig: {detail}"
        ) from None
    except OSError as exc:
        raise ClusterAccessError(f"cluster {config.name!r}: kubeconfig: {exc}") from None

    context_value = loader.current_context or {}
    context_name = context_value.get("name", "?") if isinstance(context_value, dict) else "?"
    why.append(
        f"context {context_name!r}"
        + (" (given)" if chosen_context else " (the kubeconfig's current-context)")
    )
    insecure = (not configuration.verify_ssl) or config.insecure_skip_tls_verify
    server: str = configuration.host
    ssl_context = None
    if server.startswith("https://"):
        ssl_context = make_ssl_context(
            configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file, not insecure
        )
    uses_exec = "exec" in (getattr(loader, "_user", None) or {})

    async def auth_header() -> str | None:
        if uses_exec:
            # Re-runs the plugin only when its credential has expired.
            await loader.load_from_exec_plugin()
            configuration.api_key["BearerToken"] = loader.token
        token = configuration.api_key.get("BearerToken")
        if token:
            secrets.register(str(token).split(" ", 1)[-1])
        return str(token) if token else None

    return ApiEndpoint(
        cluster=config.name,
        server=server.rstrip("/"),
        ssl_context=ssl_context,
        auth_header=auth_header,
        origin=why,
        server_hostname=getattr(configuration, "tls_server_name", None),
        insecure=insecure,
        connect_timeout=config.connect_timeout,
        request_timeout=config.request_timeout,
        auth_method=_auth_method(loader),
    )


async def resolve_endpoint(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> ApiEndpoint:
    """In-cluster when asked, or when no kubeconfig exists and we run in a pod (client-go's way)."""
    if config.in_cluster:
        endpoint = in_cluster_endpoint(config, env)
    else:
        paths, _ = kubeconfig_paths(kubeconfig or config.kubeconfig, env)
        if not paths and env.get("KUBERNETES_SERVICE_HOST") and not context:
            endpoint = in_cluster_endpoint(config, env)
        else:
            endpoint = await kubeconfig_endpoint(config, kubeconfig, context, env)
    if endpoint.insecure:
        log.warning(
            "TLS verification of the API server is OFF (insecure-skip-tls-verify); "
            "anyone on the path can read and forge the event stream",
            cluster=endpoint.cluster,
            server=endpoint.server,
        )
    return endpoint
