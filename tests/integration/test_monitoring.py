"""deploy/monitoring: the alerting rules, their Prometheus Operator form, the ServiceMonitor
and the Grafana dashboard, checked by Prometheus' own promtool (Debian's `prometheus`
package) and against the metric set the daemon exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher.ops.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
_METRIC_NAME = re.compile(r"\b(kew_[a-z0-9_]+)")
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def run_promtool(*args: str, cwd: Path = MONITORING) -> str:
    done = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def load(name: str) -> Any:
    return yaml.safe_load((MONITORING / name).read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query on the dashboard."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_exprs() -> list[tuple[str, str]]:
    return [
        (rule["alert"], rule["expr"])
        for group in load("rules.yaml")["groups"]
        for rule in group["rules"]
    ]


def exported(name: str) -> bool:
    """A series name the daemon exports (a histogram's as its _bucket/_count/_sum)."""
    specs = {spec.name: spec for spec in METRICS.values()}
    if name in specs:
        return True
    for suffix in _HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and base in specs and specs[base].kind == "histogram":
            return True
    return False


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    assert "SUCCESS: 9 rules found" in run_promtool("check", "rules", "rules.yaml")
    assert "SUCCESS" in run_promtool("test", "rules", "rules-test.yaml")


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tested = {
        case["alertname"]
        for test in load("rules-test.yaml")["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {name for name, _ in rule_exprs()} == tested


def test_the_prometheusrule_holds_the_same_groups_as_rules_yaml() -> None:
    resource = load("prometheusrule.yaml")
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == load("rules.yaml")


def test_rules_and_dashboard_name_only_metrics_the_daemon_exports() -> None:
    named = {
        (where, name)
        for where, expr in [*rule_exprs(), *dashboard_exprs()]
        for name in _METRIC_NAME.findall(expr)
    }
    assert sorted((where, name) for where, name in named if not exported(name)) == []


def test_the_dashboard_shows_every_metric() -> None:
    shown = {name for _, expr in dashboard_exprs() for name in _METRIC_NAME.findall(expr)}
    shown |= {name.removesuffix(s) for name in shown for s in _HISTOGRAM_SERIES}
    assert sorted(spec.name for spec in METRICS.values() if spec.name not in shown) == []


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions when it checks rules: each query becomes a recording rule,
    # with the dashboard's $namespace variable as Grafana would fill in "All".
    rules = [
        {"record": f"kew:dashboard:{i}", "expr": expr.replace("$namespace", ".*")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool(
        "check", "rules", str(path), cwd=tmp_path
    )


def test_the_service_and_servicemonitor_reach_the_deployments_ops_port() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    template = deployment["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    service, monitor = load("service.yaml"), load("servicemonitor.yaml")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    # the rules select job="<the Service's name>", the job label a ServiceMonitor gives
    assert all('job="kube-event-watcher"' in expr for _, expr in rule_exprs() if "up{" in expr)
    assert service["metadata"]["name"] == "kube-event-watcher"
    annotations = template["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port["port"]
