"""The pure explanations behind `doctor`: facts in, findings and fixes out."""

from __future__ import annotations

import base64
import json

import yaml
from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.kube import diagnosis as dx
from kube_event_watcher.kube.certificates import CertFacts, token_claims

NOW = 1_800_000_000.0


def cert(**kw: object) -> CertFacts:
    base: dict[str, object] = {
        "subject": "CN=kube-apiserver",
        "issuer": "CN=kubernetes",
        "not_before": NOW - 86400,
        "not_after": NOW + 86400,
    }
    base.update(kw)
    return CertFacts(**base)  # type: ignore[arg-type]


def test_human_duration_keeps_two_largest_units() -> None:
    assert dx.human_duration(0) == "0s"
    assert dx.human_duration(-93784) == "1d 2h"
    assert dx.human_duration(125) == "2m 5s"
    assert dx.human_duration(7200) == "2h"


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_human_duration_is_never_empty(seconds: float) -> None:
    assert dx.human_duration(seconds)


def test_name_in_sans_matches_like_openssl() -> None:
    facts = cert(dns_names=("*.example.com", "kubernetes"), ip_addresses=("10.0.0.1", "::1"))
    assert dx.name_in_sans("api.example.com", facts)
    assert not dx.name_in_sans("a.b.example.com", facts)  # one label only
    assert dx.name_in_sans("KUBERNETES.", facts)
    assert dx.name_in_sans("0:0::1", facts)
    assert not dx.name_in_sans("10.0.0.2", facts)


def test_expired_cert_with_agreeing_clocks_says_renew() -> None:
    check = dx.explain_tls_failure(
        "c",
        verify_code=dx.X509_EXPIRED,
        verify_message="certificate has expired",
        server_name="h",
        tls_server_name=None,
        presented=cert(not_after=NOW - 3600),
        configured_cas=[],
        ca_source="x",
        local_now=NOW,
        server_date=NOW,
    )
    assert check.summary == "the API server's certificate expired 1h ago (2027-01-15T07:00:00Z)"
    assert "agrees with the server's Date" in "\n".join(check.seen)


def test_expired_by_our_clock_only_blames_our_clock() -> None:
    check = dx.explain_tls_failure(
        "c",
        verify_code=dx.X509_EXPIRED,
        verify_message="",
        server_name="h",
        tls_server_name=None,
        presented=cert(not_before=NOW - 864000, not_after=NOW - 3600),
        configured_cas=[],
        ca_source="x",
        local_now=NOW,
        server_date=NOW - 86400 * 3,
    )
    assert check.summary.startswith("this machine's clock is 3d ahead")
    assert check.data["skew_seconds"] == 86400 * 3


def test_regenerated_ca_is_recognised_by_same_name_different_key() -> None:
    check = dx.explain_tls_failure(
        "c",
        verify_code=dx.X509_UNABLE_TO_VERIFY_LEAF,
        verify_message="unable to get local issuer certificate",
        server_name="h",
        tls_server_name=None,
        presented=cert(),
        configured_cas=[cert(subject="CN=kubernetes", issuer="CN=kubernetes", is_ca=True)],
        ca_source="certificate-authority-data",
        local_now=NOW,
        server_date=None,
    )
    assert check.fix[0] == "get a fresh kubeconfig for the rebuilt cluster"
    assert "regenerated" in "\n".join(check.seen)
    assert check.fix[-1] == dx.UNSAFE_LAST_RESORT


def test_connect_timeout_and_partial_reachability() -> None:
    timeout = dx.explain_connect(
        "c", "h", 6443, [dx.ConnectOutcome("10.0.0.1", "timeout", 5.0)], 5.0
    )
    assert timeout.summary == "connection to h:6443 timed out after 5s"
    assert "firewall" in timeout.fix[0]
    partial = dx.explain_connect(
        "c",
        "h",
        443,
        [
            dx.ConnectOutcome("::1", "unreachable", 0.0, "Network is unreachable"),
            dx.ConnectOutcome("127.0.0.1", "ok", 0.001),
        ],
        5.0,
    )
    assert partial.status == "warn"


def test_required_access_reads_optional_sections() -> None:
    sections = {
        "enrichment": {"log_tail": {"enabled": True}},
        "ha": {"enabled": True},
        "state": {"backend": "configmap", "namespace": "ops"},
    }
    needs = dx.required_access(sections, ["a"], "kew")
    names = {(n.verb, n.resource_name, n.namespace) for n in needs}
    assert ("watch", "events.k8s.io/events", "a") in names
    assert ("get", "nodes", None) in names
    assert ("get", "apps/replicasets", "a") in names
    assert ("get", "batch/jobs", "a") in names
    assert ("get", "pods/log", "a") in names
    assert ("update", "coordination.k8s.io/leases", "kew") in names
    assert ("create", "configmaps", "ops") in names
    bare = dx.required_access({"state": {"backend": "file"}}, [None], "kew")
    assert {(n.verb, n.namespace) for n in bare} == {("list", None), ("watch", None)}


def test_required_access_of_the_object_watches() -> None:
    """Detectors (or enrichment.watch_objects): list/watch on pods where the sources watch,
    on nodes cluster-wide; nothing of it when they are off."""
    for sections in ({"detectors": {"enabled": True}}, {"enrichment": {"watch_objects": True}}):
        needs = dx.required_access(sections, ["a", "b"], "kew")
        names = {(n.verb, n.resource_name, n.namespace) for n in needs}
        for verb in ("list", "watch"):
            assert {(verb, "pods", "a"), (verb, "pods", "b"), (verb, "nodes", None)} <= names
        assert next(n for n in needs if n.resource == "pods" and n.verb == "list").why == (
            "object cache: pods"
        )
    off = dx.required_access({"detectors": {"enabled": False}, "enrichment": {}}, [None], "kew")
    assert not [n for n in off if n.verb in ("list", "watch") and n.resource != "events"]


def test_snippet_puts_cluster_wide_and_cluster_scoped_needs_in_a_cluster_role() -> None:
    denied = [
        dx.AccessNeed("list", "events.k8s.io", "events", None, ""),
        dx.AccessNeed("get", "", "nodes", None, ""),
        dx.AccessNeed("get", "", "pods", "a", "", "log"),
    ]
    docs = list(yaml.safe_load_all(dx.rbac_snippet(denied, "jane", "default")))
    assert [d["kind"] for d in docs] == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    assert docs[0]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list"]},
    ]
    assert docs[2]["rules"] == [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    assert docs[1]["subjects"][0] == {
        "kind": "User",
        "name": "jane",
        "apiGroup": "rbac.authorization.k8s.io",
    }


def test_token_claims_reads_only_harmless_claims() -> None:
    payload = {"exp": 5, "sub": "x", "secret": "nope"}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    assert token_claims(f"h.{body}.s") == {"exp": 5, "sub": "x"}
    assert token_claims("opaque-token") == {}


def test_text_report_shows_fixes_only_under_problems_and_counts() -> None:
    checks = [
        dx.Check("cluster a", "dns", "ok", "fine", fix=("never shown",)),
        dx.Check("cluster a", "tcp", "fail", "refused", ("seen it",), ("do this",)),
    ]
    text = dx.render_text(checks)
    assert "never shown" not in text
    assert "    fix: do this" in text
    assert text.rstrip().endswith("1 ok, 0 warnings, 1 failed, 0 skipped")
    assert dx.exit_code(checks) == 1
    assert json.loads(dx.render_json(checks))["ok"] is False
