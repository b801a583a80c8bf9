"""Kubeconfig loading matches kubectl's: the same files, merged the same way, give the same
context, server, CA, credentials and namespace. kubectl is the one built from the control
plane's k8s.io/kubernetes; each case runs through it and through our loader.

The rules (client-go's loading rules, as kubectl documents them): --kubeconfig alone is read
as the only file; $KUBECONFIG is a list in which empty entries and missing files are
skipped; the first file to define a cluster, user or context name wins that whole entry;
`current-context` comes from the first file that sets one; --context overrides it; relative
file references resolve against the directory of the file that defined them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.kube.client import kubeconfig_endpoint, select_kubeconfig
from kube_event_watcher.kube.errors import ClusterAccessError
from kube_event_watcher.kube.http import KubeHttp
from tests.e2e.controlplane.cluster import ControlPlane


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Three kubeconfigs in three directories, overlapping in names, with relative paths."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ca.crt").write_text("CA OF A\n")
    (tmp_path / "b" / "certs").mkdir(parents=True)
    (tmp_path / "b" / "certs" / "b.crt").write_text("CERT OF B\n")
    (tmp_path / "b" / "certs" / "b.key").write_text("KEY OF B\n")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "token").write_text("token-from-c-file\n")
    a = write(
        tmp_path / "a" / "config",
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "ctx-a",
            "clusters": [
                {
                    "name": "shared",
                    "cluster": {
                        "server": "https://a.example:6443",
                        "certificate-authority": "ca.crt",
                    },
                }
            ],
            "contexts": [
                {
                    "name": "ctx-a",
                    "context": {"cluster": "shared", "user": "alice", "namespace": "team-a"},
                }
            ],
            "users": [{"name": "alice", "user": {"token": "a-token"}}],
        },
    )
    b = write(
        tmp_path / "b" / "config",
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "ctx-b",
            "clusters": [
                {"name": "shared", "cluster": {"server": "https://b.example:6443"}},
                {
                    "name": "only-b",
                    "cluster": {
                        "server": "https://only-b.example:6443",
                        "insecure-skip-tls-verify": True,
                    },
                },
            ],
            "contexts": [
                {"name": "ctx-b", "context": {"cluster": "only-b", "user": "bob"}},
                {"name": "ctx-shared-b", "context": {"cluster": "shared", "user": "alice"}},
            ],
            "users": [
                {
                    "name": "bob",
                    "user": {"client-certificate": "certs/b.crt", "client-key": "certs/b.key"},
                },
                {"name": "alice", "user": {"token": "b-token"}},
            ],
        },
    )
    c = write(
        tmp_path / "c" / "config",
        {
            "apiVersion": "v1",
            "kind": "Config",
            "contexts": [
                {
                    "name": "ctx-c",
                    "context": {"cluster": "shared", "user": "carol", "namespace": "team-c"},
                }
            ],
            "users": [{"name": "carol", "user": {"tokenFile": "token"}}],
        },
    )
    return {"a": a, "b": b, "c": c, "missing": tmp_path / "nowhere" / "config"}


@dataclass(frozen=True)
class Resolved:
    context: str
    server: str
    namespace: str
    insecure: bool
    ca: str  # the CA's content ("" for none)
    token: str
    token_file: str  # the path (no case here has one)
    client_cert: str  # content
    client_key: str  # content


def _content(data: Any, path: Any, base: Path | None = None) -> str:
    if data:
        return base64.b64decode(str(data)).decode()
    if path:
        return Path(str(path)).read_text()
    return ""


def by_kubectl(
    kubectl: Path, env_list: str | None, explicit: Path | None, context: str | None
) -> Resolved:
    args = [str(kubectl), "config", "view", "--minify", "--flatten", "-o", "json"]
    if explicit is not None:
        args += ["--kubeconfig", str(explicit)]
    if context:
        args += ["--context", context]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if env_list is not None:
        env["KUBECONFIG"] = env_list
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True, timeout=30)
    view = json.loads(done.stdout)
    ctx = view["contexts"][0]
    cluster = view["clusters"][0]["cluster"]
    user = view["users"][0]["user"] if view.get("users") else {}
    return Resolved(
        context=ctx["name"],
        server=cluster["server"],
        namespace=ctx["context"].get("namespace", ""),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        ca=_content(cluster.get("certificate-authority-data"), None),
        token=user.get("token", ""),
        # --flatten inlines certificates only; a tokenFile stays a path as written, so
        # its resolution is checked in tests/unit/kube/test_kubeconfig_merge.py instead.
        token_file=user.get("tokenFile", ""),
        client_cert=_content(user.get("client-certificate-data"), None),
        client_key=_content(user.get("client-key-data"), None),
    )


def _get(node: Any, key: str) -> Any:
    return node.safe_get(key) if hasattr(node, "safe_get") else node.get(key)


def by_us(env_list: str | None, explicit: Path | None, context: str | None) -> Resolved:
    env = {} if env_list is None else {"KUBECONFIG": env_list}
    selection = select_kubeconfig(
        ClusterConfig(name="parity"), str(explicit) if explicit else None, context, env
    )
    loader: Any = selection.loader
    cluster, user = loader._cluster, loader._user
    ctx = loader.current_context["context"]
    return Resolved(
        context=selection.context,
        server=selection.server,
        namespace=str(_get(ctx, "namespace") or ""),
        insecure=bool(_get(cluster, "insecure-skip-tls-verify")),
        ca=_content(
            _get(cluster, "certificate-authority-data"),
            _get(cluster, "certificate-authority"),
        ),
        token=str(_get(user, "token") or ""),
        token_file=str(_get(user, "tokenFile") or ""),
        client_cert=_content(
            _get(user, "client-certificate-data"), _get(user, "client-certificate")
        ),
        client_key=_content(_get(user, "client-key-data"), _get(user, "client-key")),
    )


CASES = [
    # (name, $KUBECONFIG as file keys or None, --kubeconfig key, --context, expected context)
    ("a then b: current-context and entries of a", ["a", "b"], None, None, "ctx-a"),
    (
        "b then a: b's current-context, its client cert relative to b",
        ["b", "a"],
        None,
        None,
        "ctx-b",
    ),
    ("empty entry and missing file skipped", ["", "missing", "b"], None, None, "ctx-b"),
    ("current-context only in the second file", ["c", "a"], None, None, "ctx-a"),
    (
        "--context picks b's context; shared cluster from the first (b)",
        ["b", "a"],
        None,
        "ctx-a",
        "ctx-a",
    ),
    (
        "b's alice is dropped: the first file's alice wins whole",
        ["a", "b"],
        None,
        "ctx-shared-b",
        "ctx-shared-b",
    ),
    ("--kubeconfig is the only file read", ["a"], "b", None, "ctx-b"),
]


@pytest.mark.parametrize(
    ("listed", "explicit", "context", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_same_kubeconfigs_resolve_as_kubectl_resolves_them(
    kubectl: Path,
    files: dict[str, Path],
    listed: list[str] | None,
    explicit: str | None,
    context: str | None,
    expected: str,
) -> None:
    env_list = (
        None if listed is None else os.pathsep.join(str(files[k]) if k else "" for k in listed)
    )
    explicit_path = files[explicit] if explicit else None
    theirs = by_kubectl(kubectl, env_list, explicit_path, context)
    ours = by_us(env_list, explicit_path, context)
    assert ours == theirs
    assert ours.context == expected


def test_a_missing_explicit_kubeconfig_is_an_error_as_in_kubectl(
    kubectl: Path, files: dict[str, Path]
) -> None:
    missing = files["missing"]
    done = subprocess.run(
        [str(kubectl), "get", "--raw", "/version", "--kubeconfig", str(missing)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "no such file" in done.stderr
    with pytest.raises(ClusterAccessError, match="does not exist"):
        by_us(None, missing, None)


async def test_with_kubeconfig_a_then_b_the_daemon_talks_to_as_cluster(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """b's current-context points at a dead port; a's (the real apiserver) must win."""
    dead = write(
        tmp_path / "b" / "config",
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "dead",
            "clusters": [{"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "nobody"}}],
            "users": [{"name": "nobody", "user": {"token": "x"}}],
        },
    )
    env = {"KUBECONFIG": f"{control_plane.kubeconfig}{os.pathsep}{dead}"}
    endpoint = await kubeconfig_endpoint(ClusterConfig(name="e2e"), None, None, env)
    http = KubeHttp(endpoint)
    try:
        version = await http.request_json("GET", "/version", timeout=10)
    finally:
        await http.close()
    assert isinstance(version, dict) and version["gitVersion"] == "v1.37.2"
