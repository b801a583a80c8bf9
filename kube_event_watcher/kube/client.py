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
import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubernetes_asyncio.config.config_exception import ConfigException

from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.config.secrets import registry as secrets
from kube_event_watcher.kube.errors import ClusterAccessError, ExecPluginError

log = structlog.get_logger(__name__)

DEFAULT_KUBECONFIG = "~/.kube/config"
SA_TOKEN = "token"
SA_CA = "ca.crt"
SA_NAMESPACE = "namespace"
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
    # Where the trust and identity come from, for `doctor` to inspect (paths, never contents).
    ca_file: str | None = None
    client_cert_file: str | None = None
    context: str | None = None
    kubeconfig_cluster: str | None = None
    kubeconfig_user: str | None = None


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


# File references in a kubeconfig entry, resolved against the directory of the file that
# defined the entry (client-go's ResolveLocalPaths), as kubectl does.
_CLUSTER_FILES = ("certificate-authority",)
_USER_FILES = ("client-certificate", "client-key", "tokenFile")
_SECTIONS = (
    ("clusters", "cluster", _CLUSTER_FILES),
    ("users", "user", _USER_FILES),
    ("contexts", "context", ()),
)


def _resolved(entry: Mapping[str, Any], base: str, files: tuple[str, ...], kind: str) -> Any:
    body = entry.get(kind)
    if not isinstance(body, dict):
        return dict(entry)
    body = dict(body)
    for key in files:
        value = body.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            body[key] = os.path.normpath(os.path.join(base, value))  # filepath.Join cleans
    exec_config = body.get("exec")
    if kind == "user" and isinstance(exec_config, dict):
        command = exec_config.get("command")
        # Only a command given as a path is resolved; a bare name is looked up on $PATH.
        if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
            body["exec"] = {**exec_config, "command": os.path.normpath(os.path.join(base, command))}
    return {**entry, kind: body}


def merge_kubeconfigs(paths: list[str]) -> dict[str, Any]:
    """The files merged the way kubectl merges $KUBECONFIG (client-go's loading rules): the
    first file to define a cluster, user or context name wins that whole entry (a later
    file's entry of the same name is dropped, even its other fields); `current-context` comes
    from the first file that sets one; relative file paths are resolved against the file
    that defined them. Raises ClusterAccessError for a file that is not a kubeconfig."""
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "",
    }
    seen: dict[str, set[str]] = {section: set() for section, _, _ in _SECTIONS}
    for path in paths:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ClusterAccessError(f"kubeconfig {path}: cannot read it: {exc}") from None
        except yaml.YAMLError as exc:
            raise ClusterAccessError(f"kubeconfig {path}: not YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ClusterAccessError(f"kubeconfig {path}: expected a mapping (a Config)")
        base = os.path.abspath(os.path.dirname(path))
        if not merged["current-context"] and isinstance(doc.get("current-context"), str):
            merged["current-context"] = doc["current-context"]
        for section, kind, files in _SECTIONS:
            for entry in doc.get(section) or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise ClusterAccessError(
                        f"kubeconfig {path}: an entry of {section} without a name"
                    )
                if entry["name"] in seen[section]:
                    continue
                seen[section].add(entry["name"])
                merged[section].append(_resolved(entry, base, files, kind))
    return merged


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


def own_namespace(config: ClusterConfig, env: Mapping[str, str] = os.environ) -> str:
    """The daemon's own namespace (where its Lease and state ConfigMap live unless configured):
    $POD_NAMESPACE, else the mounted ServiceAccount's namespace, else `default`."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        text = (Path(config.service_account_dir) / SA_NAMESPACE).read_text().strip()
    except OSError:
        text = ""
    return text or "default"


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
        ca_file=str(ca_path),
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


@dataclass
class KubeconfigSelection:
    """The kubeconfig entries kubectl would use, before any credential is fetched: enough to
    say which context, cluster and user were chosen even when the exec plugin then fails."""

    config: ClusterConfig
    loader: kube_config.KubeConfigLoader
    paths: list[str]
    origin: list[str]
    context: str
    cluster: str
    user: str
    auth_method: str
    server: str
    exec_command: list[str] = field(default_factory=list)
    ca_source: str = ""


def select_kubeconfig(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> KubeconfigSelection:
    """Read the kubeconfig files in kubectl's order and pick the context; runs nothing."""
    paths, why = kubeconfig_paths(kubeconfig or config.kubeconfig, env)
    if not paths:
        raise ClusterAccessError(
            f"cluster {config.name!r}: no kubeconfig found ({'; '.join(why)}); "
            "pass --kubeconfig, set $KUBECONFIG, or run in a pod with in_cluster: true"
        )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ClusterAccessError(f"cluster {config.name!r}: kubeconfig {missing[0]} does not exist")
    chosen_context = context or config.context
    try:
        merged = merge_kubeconfigs(paths)
        loader = kube_config.KubeConfigLoader(
            config_dict=merged, config_base_path=None, active_context=chosen_context
        )
    except (ConfigException, AssertionError, KeyError, TypeError, ValueError) as exc:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, AssertionError | KeyError) or "contexts list" in detail:
            detail = (
                f"context {chosen_context!r} not found in {', '.join(paths)}"
                if chosen_context
                else f"no usable current-context in {', '.join(paths)}"
            )
        raise ClusterAccessError(
            f"cluster {config.name!r}: cannot use kubeconfig: {detail}"
        ) from None
    except OSError as exc:
        raise ClusterAccessError(f"cluster {config.name!r}: kubeconfig: {exc}") from None

    context_value = loader.current_context or {}
    context_name = str(context_value.get("name", "?")) if isinstance(context_value, dict) else "?"
    names = context_value.get("context", {}) if isinstance(context_value, dict) else {}
    why.append(
        f"context {context_name!r}"
        + (" (given)" if chosen_context else " (the kubeconfig's current-context)")
    )
    user: Any = getattr(loader, "_user", None) or {}
    cluster: Any = getattr(loader, "_cluster", None) or {}
    exec_command: list[str] = []
    if "exec" in user:
        exec_value = user["exec"]
        exec_command = [str(exec_value.safe_get("command") or "")] + [
            str(a) for a in (exec_value.safe_get("args") or [])
        ]
    if cluster and "certificate-authority-data" in cluster:
        ca_source = f"certificate-authority-data of cluster {names.get('cluster')!r}"
    elif cluster and "certificate-authority" in cluster:
        ca_source = f"certificate-authority file {cluster['certificate-authority']}"
    else:
        ca_source = "system trust store (no certificate-authority in the kubeconfig)"
    return KubeconfigSelection(
        config=config,
        loader=loader,
        paths=paths,
        origin=why,
        context=context_name,
        cluster=str(names.get("cluster") or "?"),
        user=str(names.get("user") or ""),
        auth_method=_auth_method(loader),
        server=str(cluster.safe_get("server") or "") if cluster else "",
        exec_command=exec_command,
        ca_source=ca_source,
    )


async def selection_endpoint(selection: KubeconfigSelection) -> ApiEndpoint:
    """Fetch the credential (running the exec plugin if there is one) and build the endpoint."""
    config, loader = selection.config, selection.loader
    configuration = type.__call__(Configuration)
    try:
        await loader.load_and_set(configuration)
    except (ConfigException, AssertionError, KeyError, TypeError, ValueError) as exc:
        detail = str(exc) or type(exc).__name__
        if selection.exec_command:
            raise ExecPluginError(
                f"cluster {config.name!r}: exec credential plugin "
                f"{selection.exec_command[0]!r} failed: {detail}"
            ) from None
        raise ClusterAccessError(
            f"cluster {config.name!r}: cannot use kubeconfig: {detail}"
        ) from None
    except OSError as exc:
        raise ClusterAccessError(f"cluster {config.name!r}: kubeconfig: {exc}") from None

    insecure = (not configuration.verify_ssl) or config.insecure_skip_tls_verify
    server: str = configuration.host
    ssl_context = None
    if server.startswith("https://"):
        ssl_context = make_ssl_context(
            configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file, not insecure
        )
    uses_exec = bool(selection.exec_command)

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
        origin=list(selection.origin),
        server_hostname=getattr(configuration, "tls_server_name", None),
        insecure=insecure,
        connect_timeout=config.connect_timeout,
        request_timeout=config.request_timeout,
        auth_method=selection.auth_method,
        ca_file=configuration.ssl_ca_cert,
        client_cert_file=configuration.cert_file,
        context=selection.context,
        kubeconfig_cluster=selection.cluster,
        kubeconfig_user=selection.user,
    )


async def kubeconfig_endpoint(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> ApiEndpoint:
    """Load a kubeconfig the way kubectl does; `kubeconfig`/`context` are CLI overrides."""
    return await selection_endpoint(select_kubeconfig(config, kubeconfig, context, env))


def uses_in_cluster(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> bool:
    """In-cluster when asked, or when no kubeconfig exists and we run in a pod (client-go's way)."""
    if config.in_cluster:
        return True
    paths, _ = kubeconfig_paths(kubeconfig or config.kubeconfig, env)
    return not paths and bool(env.get("KUBERNETES_SERVICE_HOST")) and not context


async def resolve_endpoint(
    config: ClusterConfig,
    kubeconfig: str | list[str] | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> ApiEndpoint:
    """The endpoint for one cluster: in-cluster or kubeconfig, as `uses_in_cluster` decides."""
    if uses_in_cluster(config, kubeconfig, context, env):
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
