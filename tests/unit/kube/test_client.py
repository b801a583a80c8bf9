from __future__ import annotations

from pathlib import Path

import pytest

from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.kube.client import kubeconfig_paths, resolve_endpoint
from kube_event_watcher.kube.errors import ClusterAccessError
from tests.conftest import write_kubeconfig
from tests.support.tls import TestCA


def test_explicit_kubeconfig_wins(tmp_path: Path) -> None:
    paths, why = kubeconfig_paths("/a/config", {"KUBECONFIG": "/b"})
    assert paths == ["/a/config"]
    assert "explicitly" in why[0]


def test_env_list_keeps_order_and_skips_missing(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("{}")
    two.write_text("{}")
    paths, why = kubeconfig_paths(None, {"KUBECONFIG": f"{two}:{tmp_path / 'gone'}:{one}"})
    assert paths == [str(two), str(one)]
    assert "3 file(s), 2 present" in why[0]


def test_home_default_when_env_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    paths, _ = kubeconfig_paths(None, {})
    assert paths == [str(tmp_path / ".kube" / "config")]


async def test_merged_kubeconfigs_first_file_wins_context(tmp_path: Path, test_ca: TestCA) -> None:
    first = write_kubeconfig(
        tmp_path / "a", "https://127.0.0.1:1111", test_ca.cert_pem, {"token": "tok-a-123456"}
    )
    second = write_kubeconfig(
        tmp_path / "b", "https://127.0.0.1:2222", test_ca.cert_pem, {"token": "tok-b-123456"}
    )
    env = {"KUBECONFIG": f"{first}:{second}"}
    endpoint = await resolve_endpoint(ClusterConfig(name="c"), env=env)
    assert endpoint.server == "https://127.0.0.1:1111"
    assert await endpoint.auth_header() == "Bearer tok-a-123456"
    assert endpoint.auth_method == "bearer token"


async def test_unknown_context_is_a_clear_error(tmp_path: Path, test_ca: TestCA) -> None:
    kc = write_kubeconfig(
        tmp_path / "a", "https://127.0.0.1:1", test_ca.cert_pem, {"token": "t0123456"}
    )
    with pytest.raises(ClusterAccessError, match="context 'nope' not found"):
        await resolve_endpoint(ClusterConfig(name="c"), kubeconfig=str(kc), context="nope", env={})


async def test_no_kubeconfig_anywhere_explains_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterAccessError, match=r"no kubeconfig found .*~/.kube/config"):
        await resolve_endpoint(ClusterConfig(name="c"), env={})


async def test_in_cluster_reads_rotating_token(tmp_path: Path, test_ca: TestCA) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("first-token-abcdef")
    (sa / "ca.crt").write_bytes(test_ca.cert_pem)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    endpoint = await resolve_endpoint(
        ClusterConfig(name="c", in_cluster=True, service_account_dir=str(sa)), env=env
    )
    assert endpoint.server == "https://10.0.0.1:443"
    assert await endpoint.auth_header() == "Bearer first-token-abcdef"
    assert "in-cluster" in endpoint.origin[0]


async def test_in_cluster_without_service_env_says_so(tmp_path: Path) -> None:
    with pytest.raises(ClusterAccessError, match="KUBERNETES_SERVICE_HOST"):
        await resolve_endpoint(ClusterConfig(name="c", in_cluster=True), env={})


async def test_insecure_skip_verify_warns_at_start(tmp_path: Path) -> None:
    import yaml
    from structlog.testing import capture_logs

    path = tmp_path / "kc"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "x",
                "clusters": [
                    {
                        "name": "x",
                        "cluster": {
                            "server": "https://127.0.0.1:9",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "tok-123456"}}],
                "contexts": [{"name": "x", "context": {"cluster": "x", "user": "u"}}],
            }
        )
    )
    with capture_logs() as logs:
        endpoint = await resolve_endpoint(ClusterConfig(name="c"), kubeconfig=str(path), env={})
    assert endpoint.insecure
    assert any("TLS verification of the API server is OFF" in e["event"] for e in logs)
