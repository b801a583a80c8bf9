"""How an alert becomes an OTLP log record: severity, body, the k8s.* names the collector's
k8s_events receiver and the resource conventions use, and ours under kube_event_watcher.*."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from kube_event_watcher.notifiers.otlp import ATTR_RECORD, export_request, log_record
from tests.factories import make_alert, numbered_alert


def attributes(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for kv in record["attributes"]:
        ((kind, value),) = kv["value"].items()
        out[kv["key"]] = int(value) if kind == "intValue" else value
    return out


def test_a_warning_about_a_pods_container_names_pod_container_node_and_owner() -> None:
    alert = make_alert(
        field_path="spec.containers{app}",
        facts={
            "node": "node-3",
            "owner_chain": ["ReplicaSet/web-7d4", "Deployment/web"],
            "restart_count": 4,
        },
        labels={"team": "shop"},
    )
    record = log_record(alert, observed=12.5)
    attrs = attributes(record)
    assert (record["severityNumber"], record["severityText"]) == (13, "WARN")
    assert record["body"] == {"stringValue": alert.note}
    assert record["observedTimeUnixNano"] == "12500000000"
    assert attrs["k8s.pod.name"] == "api-1"
    assert attrs["k8s.container.name"] == "app"
    assert attrs["k8s.node.name"] == "node-3"
    assert attrs["k8s.deployment.name"] == "web"
    assert attrs["k8s.replicaset.name"] == "web-7d4"
    assert attrs["k8s.container.restart_count"] == 4
    assert attrs["kube_event_watcher.label.team"] == "shop"
    assert orjson.loads(attrs[ATTR_RECORD])["id"] == alert.notification_id


def test_a_normal_event_is_info_and_an_unknown_kind_is_only_a_k8s_object() -> None:
    alert = make_alert(kind="Certificate", name="tls", type="Normal", status="resolved")
    record = log_record(alert, observed=0.0, include_record=False)
    attrs = attributes(record)
    assert (record["severityNumber"], record["severityText"]) == (9, "INFO")
    assert attrs["k8s.object.kind"] == "Certificate"
    assert not any(k.startswith("k8s.certificate.") for k in attrs)
    assert attrs["kube_event_watcher.alert.status"] == "resolved"
    assert ATTR_RECORD not in attrs


def test_a_group_has_a_summary_body_and_its_group_attributes() -> None:
    group = dataclasses.replace(
        make_alert(),
        group_key="prod/shop/web",
        objects={"Pod": 3},
        reasons={"BackOff": 5, "Unhealthy": 2},
        member_count=3,
        sequence=2,
        workloads=("Deployment/web",),
    )
    record = log_record(group, observed=0.0)
    attrs = attributes(record)
    assert "3 Pods of shop/web" in record["body"]["stringValue"]
    assert attrs["kube_event_watcher.group.key"] == "prod/shop/web"
    assert attrs["kube_event_watcher.group.sequence"] == 2
    assert attrs["kube_event_watcher.group.reasons"] == {
        "values": [{"stringValue": "BackOff"}, {"stringValue": "Unhealthy"}]
    }


def test_extra_resource_attributes_are_on_every_resource() -> None:
    request = export_request(
        [numbered_alert(1), numbered_alert(2, cluster="eu")],
        observed=0.0,
        resource={"deployment.environment.name": "prod"},
    )
    for resource_logs in request["resourceLogs"]:
        keys = {kv["key"] for kv in resource_logs["resource"]["attributes"]}
        assert {"k8s.cluster.name", "service.name", "deployment.environment.name"} <= keys
