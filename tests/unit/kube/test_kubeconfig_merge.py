"""$KUBECONFIG merging by kubectl's rules (tests/e2e/test_kubeconfig_parity.py runs the same
files through the real kubectl); here the parts kubectl's `config view` cannot show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.kube.client import merge_kubeconfigs, select_kubeconfig
from kube_event_watcher.kube.errors import ClusterAccessError


def kubeconfig(path: Path, **doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **doc}))
    return path


def test_file_references_resolve_against_the_file_that_defined_them(tmp_path: Path) -> None:
    first = kubeconfig(
        tmp_path / "one" / "config",
        users=[
            {
                "name": "carol",
                "user": {
                    "tokenFile": "token",
                    "client-certificate": "/etc/abs.crt",
                    "exec": {"command": "./bin/get-token", "apiVersion": "x"},
                },
            },
            {"name": "dave", "user": {"exec": {"command": "aws", "apiVersion": "x"}}},
        ],
        clusters=[{"name": "c", "cluster": {"server": "https://x", "certificate-authority": "ca"}}],
    )
    merged = merge_kubeconfigs([str(first)])
    carol = merged["users"][0]["user"]
    assert carol["tokenFile"] == str(tmp_path / "one" / "token")
    assert carol["client-certificate"] == "/etc/abs.crt"  # absolute stays
    assert carol["exec"]["command"] == str(tmp_path / "one" / "bin" / "get-token")
    assert merged["users"][1]["user"]["exec"]["command"] == "aws"  # looked up on $PATH
    assert merged["clusters"][0]["cluster"]["certificate-authority"] == str(tmp_path / "one" / "ca")


def test_current_context_of_the_first_file_that_sets_one(tmp_path: Path) -> None:
    """The bug this replaced: kubernetes_asyncio's merger took the *last* file's."""
    server = {"server": "https://a.example"}
    a = kubeconfig(
        tmp_path / "a",
        **{"current-context": "ctx-a"},
        clusters=[{"name": "a", "cluster": server}],
        contexts=[{"name": "ctx-a", "context": {"cluster": "a", "user": ""}}],
    )
    b = kubeconfig(
        tmp_path / "b",
        **{"current-context": "ctx-b"},
        clusters=[{"name": "b", "cluster": {"server": "https://127.0.0.1:1"}}],
        contexts=[{"name": "ctx-b", "context": {"cluster": "b", "user": ""}}],
    )
    env = {"KUBECONFIG": f"{a}:{b}"}
    selection = select_kubeconfig(ClusterConfig(name="x"), None, None, env)
    assert (selection.context, selection.server) == ("ctx-a", "https://a.example")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "expected a mapping"),
        ("clusters:\n- cluster: {server: x}\n", "without a name"),
        ("clusters: [unclosed\n", "not YAML"),
    ],
)
def test_a_file_that_is_not_a_kubeconfig_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ClusterAccessError, match=message) as raised:
        merge_kubeconfigs([str(path)])
    assert str(path) in str(raised.value)
