"""`doctor` against a fake API server over real TLS: each broken setup gets the right
diagnosis and fix; a healthy one passes every step."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from kube_event_watcher.cli import main
from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.doctor import run_doctor
from kube_event_watcher.kube.diagnosis import Check, render_text
from kube_event_watcher.notifiers.registry import config_models
from tests.integration.doctor.doctor_fixtures import (
    DAY,
    Pki,
    StartServer,
    WriteKubeconfig,
    cert_user,
)


def at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


CLUSTER_STEPS = ["config", "dns", "tcp", "tls", "whoami", "rbac", "api", "watch"]


async def diagnose(
    kubeconfig: Path, raw: dict[str, Any] | None = None, clock: FakeClock | None = None
) -> dict[str, Check]:
    loaded = parse_config(raw or {}, "test", config_models(), env={})
    checks = await run_doctor(
        loaded, kubeconfig=str(kubeconfig), env={}, clock=clock or FakeClock(time.time())
    )
    steps = {c.step: c for c in checks if c.scope.startswith("cluster")}
    assert list(steps) == CLUSTER_STEPS, render_text(checks)
    return steps


def text(check: Check) -> str:
    return "\n".join((check.summary, *check.seen, *check.fix))


async def test_healthy_setup_passes_every_step(
    start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    server = await start_apiserver()
    kubeconfig = kubeconfig_for(server.port)
    steps = await diagnose(kubeconfig)
    assert {s: c.status for s, c in steps.items()} == dict.fromkeys(CLUSTER_STEPS, "ok")
    assert "context 'double'" in steps["config"].summary
    assert steps["config"].data["auth_method"] == "client certificate"
    assert steps["whoami"].summary == "authenticated as admin"
    assert "v1.31.0-fake" in steps["api"].summary
    assert steps["watch"].data["resource_version"] == "100"
    assert steps["watch"].data["lines"] == 1
    assert "agrees with the server" in text(steps["tls"])


async def test_wrong_ca_shows_both_issuers_and_points_at_ca_data(
    pki: Pki, start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    server = await start_apiserver()
    kubeconfig = kubeconfig_for(server.port, ca=pki.other_ca.cert_pem)
    steps = await diagnose(kubeconfig)
    tls = steps["tls"]
    assert tls.status == "fail"
    assert tls.data["case"] == "unknown_authority"
    assert "signed by an authority we do not trust (CN=test-cluster-ca)" in tls.summary
    assert (
        "configured CA (certificate-authority-data of cluster 'double'): subject "
        "CN=some-other-ca" in tls.seen
    )
    assert "certificate-authority-data" in tls.fix[0]
    assert any(f.startswith("UNSAFE, last resort") for f in tls.fix)
    assert steps["whoami"].status == "skip"


async def test_name_not_in_sans_lists_them_and_mentions_tls_server_name(
    start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    server = await start_apiserver()
    kubeconfig = kubeconfig_for(f"https://localhost:{server.port}")
    steps = await diagnose(kubeconfig)
    tls = steps["tls"]
    assert (tls.status, tls.data["case"]) == ("fail", "name_mismatch")
    assert "'localhost' is not among the names" in tls.summary
    assert "presented: names (SANs) DNS:kubernetes, IP:127.0.0.1" in tls.seen
    assert any("tls-server-name" in f for f in tls.fix)

    fixed = kubeconfig_for(f"https://localhost:{server.port}", tls_server_name="kubernetes")
    assert (await diagnose(fixed))["tls"].status == "ok"


async def test_expired_client_certificate_is_named_with_a_renewal_fix(
    pki: Pki, start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    server = await start_apiserver()
    now = time.time()
    expired = pki.ca.issue(
        "admin", client=True, not_before=at(now - 30 * DAY), not_after=at(now - 2 * DAY)
    )
    kubeconfig = kubeconfig_for(server.port, user=cert_user(expired))
    steps = await diagnose(kubeconfig)
    assert steps["config"].status == "fail"
    assert "the client certificate expired 2d" in text(steps["config"])
    tls = steps["tls"]
    assert (tls.status, tls.data["case"]) == ("fail", "client_certificate_rejected")
    assert "rejected our client certificate" in tls.summary
    assert any("kubeadm certs renew" in f for f in tls.fix)


async def test_expired_server_certificate_reports_expiry_and_clock_skew(
    pki: Pki, start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    now = int(time.time())
    serving = pki.ca.issue(
        "kube-apiserver",
        hosts=("127.0.0.1",),
        not_before=at(now - 10 * DAY),
        not_after=at(now - DAY),
    )
    server = await start_apiserver(serving, date=now)
    kubeconfig = kubeconfig_for(server.port)
    # This machine's clock runs 2 hours ahead of the server's.
    steps = await diagnose(kubeconfig, clock=FakeClock(now + 7200))
    tls = steps["tls"]
    assert (tls.status, tls.data["case"]) == ("fail", "expired")
    assert "certificate expired 1d 2h ago" in tls.summary
    assert tls.data["skew_seconds"] == 7200
    assert "this machine's clock is 2h ahead of the server's Date header" in text(tls)
    assert "kubeadm certs renew apiserver" in tls.fix[0]


async def test_skewed_local_clock_is_blamed_when_the_server_finds_its_cert_valid(
    pki: Pki, start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    now = int(time.time())
    # Valid from tomorrow: the server's clock says it is the day after, ours says today.
    serving = pki.ca.issue(
        "kube-apiserver",
        hosts=("127.0.0.1",),
        not_before=at(now + DAY),
        not_after=at(now + 30 * DAY),
    )
    server = await start_apiserver(serving, date=now + 2 * DAY)
    kubeconfig = kubeconfig_for(server.port)
    tls = (await diagnose(kubeconfig, clock=FakeClock(now)))["tls"]
    assert (tls.status, tls.data["case"]) == ("fail", "not_yet_valid")
    assert tls.summary.startswith("this machine's clock is 2d behind")
    assert "NTP" in tls.fix[0]


async def test_token_without_rbac_gets_the_denials_and_a_ready_to_apply_snippet(
    start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    user = "system:serviceaccount:monitoring:kew"
    server = await start_apiserver(tokens={"sa-token-1234567890": user}, deny_all_for={user})
    kubeconfig = kubeconfig_for(server.port, user={"token": "sa-token-1234567890"})
    # Only the event source here: enrichment's own rules are checked in test_diagnosis.
    raw = {"sources": [{"namespaces": ["team-a", "team-b"]}], "enrichment": {"enabled": False}}
    steps = await diagnose(kubeconfig, raw)
    assert steps["whoami"].summary == f"authenticated as {user}"
    rbac = steps["rbac"]
    assert rbac.status == "fail"
    assert "4 of 4 permissions the config needs are denied" in rbac.summary
    rows = [line.split()[:4] for line in rbac.seen]
    assert rows[0] == ["verb", "resource", "namespace", "allowed"]
    assert ["list", "events.k8s.io/events", "team-a", "DENIED"] in rows
    documents = list(yaml.safe_load_all(rbac.data["snippet"]))
    assert [(d["kind"], d["metadata"].get("namespace")) for d in documents] == [
        ("Role", "team-a"),
        ("RoleBinding", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "team-b"),
    ]
    assert documents[0]["rules"] == [
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list", "watch"]}
    ]
    assert documents[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "kew", "namespace": "monitoring"}
    ]
    assert rbac.data["snippet"] in rbac.fix
    assert {(r["verb"], r["namespace"]) for r in server.reviews} == {
        ("list", "team-a"),
        ("watch", "team-a"),
        ("list", "team-b"),
        ("watch", "team-b"),
    }


async def test_expired_jwt_token_gets_a_401_explained(
    start_apiserver: StartServer, kubeconfig_for: WriteKubeconfig
) -> None:
    server = await start_apiserver()
    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": "system:serviceaccount:a:b",
        "exp": int(time.time()) - 3 * 3600,
    }
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl"
    kubeconfig = kubeconfig_for(server.port, user={"token": token})
    steps = await diagnose(kubeconfig)
    whoami = steps["whoami"]
    assert whoami.status == "fail"
    assert "401 Unauthorized" in whoami.summary
    assert "the bearer token expired 3h" in text(whoami)
    assert "kubectl create token" in text(whoami)
    assert token not in text(whoami)
    assert steps["rbac"].status == "skip"


async def test_closed_port_is_refused_with_port_and_server_fixes(
    kubeconfig_for: WriteKubeconfig,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = kubeconfig_for(port, user={"token": "abcdefgh"})
    steps = await diagnose(kubeconfig)
    tcp = steps["tcp"]
    assert tcp.status == "fail"
    assert f"127.0.0.1:{port}: refused" in tcp.seen
    assert "nothing listens there" in tcp.summary
    assert "6443" in tcp.fix[0]
    assert steps["tls"].status == "skip"


async def test_unresolvable_host_fails_dns_and_skips_the_rest(
    kubeconfig_for: WriteKubeconfig,
) -> None:
    kubeconfig = kubeconfig_for("https://api.cluster.invalid:6443", user={"token": "abcdefgh"})
    steps = await diagnose(kubeconfig)
    assert steps["dns"].status == "fail"
    assert "api.cluster.invalid does not resolve" in steps["dns"].summary
    assert "VPN" in text(steps["dns"])
    assert {steps[s].status for s in CLUSTER_STEPS[2:]} == {"skip"}


async def test_failing_exec_plugin_output_is_shown(
    kubeconfig_for: WriteKubeconfig, tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import sys\nsys.stderr.write('error: token for prod expired; run cloud login\\n')\n"
        "sys.exit(1)\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    kubeconfig = kubeconfig_for("https://127.0.0.1:1", user=user)
    steps = await diagnose(kubeconfig)
    config = steps["config"]
    assert config.status == "fail"
    assert "exec credential plugin" in config.summary
    assert "token for prod expired; run cloud login" in text(config)
    assert (
        "context 'double' -> cluster 'double' (https://127.0.0.1:1), user 'tester'" in config.seen
    )
    assert any(f.startswith("run the plugin by hand") for f in config.fix)
    assert steps["dns"].status == "skip"


async def test_cli_json_output_and_exit_code(
    start_apiserver: StartServer,
    kubeconfig_for: WriteKubeconfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = await start_apiserver(tokens={"secret-token-abcdef": "bob"}, deny_all_for={"bob"})
    kubeconfig = kubeconfig_for(server.port, user={"token": "secret-token-abcdef"})
    # asyncio.run inside main needs its own thread: this test already runs in a loop. main
    # configures structlog to print to the (captured) stdout; undo that for later tests.
    saved = structlog.get_config()
    try:
        code = await asyncio.to_thread(
            main, ["doctor", "--kubeconfig", str(kubeconfig), "--output", "json"]
        )
    finally:
        structlog.configure(**saved)
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 1
    assert doc["ok"] is False
    rbac = next(c for c in doc["checks"] if c["step"] == "rbac")
    assert rbac["status"] == "fail"
    assert "ClusterRole" in rbac["data"]["snippet"]
    assert "secret-token-abcdef" not in out
