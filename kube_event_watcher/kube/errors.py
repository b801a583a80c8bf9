"""Errors from talking to the API, with what the operator can do about them."""

from __future__ import annotations

from typing import Any


class ClusterAccessError(Exception):
    """The cluster cannot be reached as configured (no kubeconfig, bad context, bad files)."""


class ExecPluginError(ClusterAccessError):
    """The kubeconfig's exec credential plugin failed; the message carries its output."""


class ApiError(Exception):
    """A non-2xx answer from the API: `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str, url: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.url = url
        super().__init__(f"HTTP {status} {reason}: {message}" + (f" ({url})" if url else ""))

    @classmethod
    def from_status(cls, http_status: int, body: Any, url: str = "") -> ApiError:
        if isinstance(body, dict) and body.get("kind") == "Status":
            return cls(
                int(body.get("code") or http_status),
                str(body.get("reason") or ""),
                str(body.get("message") or ""),
                url,
            )
        text = body if isinstance(body, str) else repr(body)
        return cls(http_status, "", text[:500], url)


def rbac_hint(status: int, verb: str, resource: str, namespace: str | None) -> str:
    """What to do about a 401/403/404 on `verb resource`, written for the operator."""
    if status == 401:
        return (
            "the API server did not accept our credentials: the token or client certificate "
            "is missing, expired or not signed by a CA the server trusts "
            "(run `kube-event-watcher doctor` to check step by step)"
        )
    if status == 403:
        group, _, plural = resource.rpartition("/")
        scope = f"in namespace {namespace}" if namespace else "cluster-wide"
        role = "Role" if namespace else "ClusterRole"
        api_group = group or '""'
        grant = (
            "deploy/rbac-detectors.yaml grants list/watch on pods and nodes"
            if resource in ("pods", "nodes")
            else "deploy/rbac-cluster.yaml has the full set"
        )
        return (
            f"RBAC denied {verb} on {resource} {scope}; grant it with a {role} rule "
            f"{{apiGroups: [{api_group}], resources: [{plural}], verbs: [get, list, watch]}} "
            f"bound to this identity ({grant})"
        )
    if status == 404:
        if not resource.startswith("events.k8s.io/"):
            return f"{resource} is not served here, or the namespace does not exist"
        return (
            f"{resource} is not served here: events.k8s.io/v1 needs Kubernetes 1.19 or newer, "
            "or the namespace does not exist"
        )
    return ""
