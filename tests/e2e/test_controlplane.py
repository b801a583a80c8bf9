"""The e2e control plane is real, its helpers work, and the API facts in API_FACTS.md hold.

These tests pin down what the real kube-apiserver does where the API double in
tests/integration has to copy it (pagination, 410 Gone, bookmarks, watch framing, field
selectors); if a Kubernetes upgrade changes one of them, the test says which.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import time
import uuid
from typing import Any

import pytest

from .controlplane.cluster import ApiError, ControlPlane

EVENTS = "/apis/events.k8s.io/v1"


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A fresh namespace per test (no controller-manager runs, so it is never deleted)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(name)
    return name


def pod_ref(namespace: str, name: str = "web-0") -> dict[str, str]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": namespace,
        "name": name,
        "uid": "u-1",
        "resourceVersion": "7",
        "fieldPath": "spec.containers{c}",
    }


def read_watch(
    plane: ControlPlane,
    path: str,
    params: dict[str, Any],
    *,
    count: int | None = None,
    timeout: float = 30,
) -> list[tuple[float, dict[str, Any]]]:
    """(seconds since the request, decoded line) for the first `count` lines of a watch
    stream, or for all of them until the server ends the stream; asserts HTTP 200."""
    start = time.monotonic()
    lines: list[tuple[float, dict[str, Any]]] = []
    with plane.stream(path, {"watch": True, **params}, timeout=timeout) as resp:
        assert resp.status == 200, resp.read()
        for raw in resp.lines():
            lines.append((time.monotonic() - start, json.loads(raw)))
            if count is not None and len(lines) == count:
                break
    return lines


def test_event_is_listed_with_its_series(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.create_event(namespace, "crash.1", pod_ref(namespace), "BackOff", "back-off 10s")
    control_plane.update_event_series(namespace, "crash.1", 2)

    items = control_plane.get(f"{EVENTS}/namespaces/{namespace}/events")["items"]

    assert [e["metadata"]["name"] for e in items] == ["crash.1"]
    event = items[0]
    assert (event["type"], event["reason"], event["note"]) == ("Warning", "BackOff", "back-off 10s")
    assert event["regarding"]["name"] == "web-0"
    assert event["reportingController"] == "kube-event-watcher.e2e/recorder"
    assert event["series"]["count"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["eventTime"])


def test_update_event_series_counts_repeats(control_plane: ControlPlane, namespace: str) -> None:
    created = control_plane.create_event(
        namespace, "pull.1", pod_ref(namespace), "Pulling", "pulling image", "Normal", 2
    )
    updated = control_plane.update_event_series(namespace, "pull.1", 5)

    assert created["series"]["count"] == 2
    assert updated["series"]["count"] == 5
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_list_pages_share_one_resource_version(control_plane: ControlPlane, namespace: str) -> None:
    # Fact for the API double: `limit` pages carry `metadata.continue` (an opaque token; today
    # base64url without padding of {"v":"meta.k8s.io/v1","rv":<list RV>,"start":"<name>\u0000"}),
    # `remainingItemCount`, and the same `resourceVersion` on every page (one snapshot).
    # The last page has neither `continue` nor `remainingItemCount`.
    for i in range(5):
        control_plane.create_event(namespace, f"ev.{i}", pod_ref(namespace), "BackOff", "x")
    path = f"{EVENTS}/namespaces/{namespace}/events"

    first = control_plane.get(path, {"limit": 2})
    second = control_plane.get(path, {"limit": 2, "continue": first["metadata"]["continue"]})
    last = control_plane.get(path, {"limit": 2, "continue": second["metadata"]["continue"]})

    meta = first["metadata"]
    assert meta["resourceVersion"].isdigit()
    assert meta["remainingItemCount"] == 3
    token = json.loads(base64.urlsafe_b64decode(meta["continue"] + "=="))
    assert token == {"v": "meta.k8s.io/v1", "rv": int(meta["resourceVersion"]), "start": "ev.1\0"}
    assert second["metadata"]["resourceVersion"] == meta["resourceVersion"]
    assert second["metadata"]["remainingItemCount"] == 1
    assert [e["metadata"]["name"] for e in first["items"] + second["items"] + last["items"]] == [
        f"ev.{i}" for i in range(5)
    ]
    assert "continue" not in last["metadata"]
    assert "remainingItemCount" not in last["metadata"]


def test_continue_token_expires_with_compaction(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Fact for the API double: an expired continue token is HTTP 410 with a Status of
    # reason "Expired" (Go: StatusReasonExpired / NewResourceExpired), code 410, and a fresh
    # `metadata.continue` (rv -1) that would continue inconsistently; clients should relist.
    for i in range(3):
        control_plane.create_event(namespace, f"ev.{i}", pod_ref(namespace), "BackOff", "x")
    path = f"{EVENTS}/namespaces/{namespace}/events"
    token = control_plane.get(path, {"limit": 1})["metadata"]["continue"]

    control_plane.compact_etcd()
    resp = control_plane.request("GET", path, params={"limit": 1, "continue": token})

    assert resp.status == 410
    status = resp.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert "continue parameter is too old" in status["message"]
    inconsistent = json.loads(base64.urlsafe_b64decode(status["metadata"]["continue"] + "=="))
    assert inconsistent["rv"] == -1


def test_watch_from_compacted_resource_version_is_gone(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Fact for the API double: a watch from a compacted resourceVersion is NOT an HTTP 410.
    # The server answers HTTP 200, streams one ERROR event whose object is a Status
    # {reason: "Expired", code: 410, message: "The resourceVersion for the provided watch is
    # too old."} and closes the stream. (Events are not in the watch cache, so this comes
    # straight from etcd's compaction.) A list at that resourceVersion with
    # resourceVersionMatch=Exact is a plain HTTP 410 Expired.
    path = f"{EVENTS}/namespaces/{namespace}/events"
    old_rv = control_plane.get(path)["metadata"]["resourceVersion"]
    control_plane.create_event(namespace, "after", pod_ref(namespace), "BackOff", "x")
    before = read_watch(control_plane, path, {"resourceVersion": old_rv}, count=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for _, e in before] == [("ADDED", "after")]

    control_plane.compact_etcd()
    lines = [line for _, line in read_watch(control_plane, path, {"resourceVersion": old_rv})]
    exact = control_plane.request(
        "GET", path, params={"resourceVersion": old_rv, "resourceVersionMatch": "Exact"}
    )

    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert status["message"] == "The resourceVersion for the provided watch is too old."
    assert exact.status == 410
    assert exact.json()["reason"] == "Expired"


def test_watch_stream_is_newline_delimited_json(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Fact for the API double: with `Accept: application/json` the watch answers HTTP 200,
    # `Content-Type: application/json` (not a JSON-seq or NDJSON type), chunked transfer
    # encoding, and one `{"type": ..., "object": ...}` JSON document per line, each line
    # ending in "\n".
    path = f"{EVENTS}/namespaces/{namespace}/events"
    rv = control_plane.get(path)["metadata"]["resourceVersion"]
    control_plane.create_event(namespace, "a", pod_ref(namespace), "BackOff", "x")
    control_plane.create_event(namespace, "b", pod_ref(namespace), "BackOff", "x")

    with control_plane.stream(path, {"watch": True, "resourceVersion": rv}) as resp:
        status, headers = resp.status, resp.headers
        lines = resp.lines()
        raw = [next(lines), next(lines)]

    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Transfer-Encoding"] == "chunked"
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in raw)
    decoded = [json.loads(line) for line in raw]
    assert [set(d) for d in decoded] == [{"type", "object"}] * 2
    assert [d["object"]["metadata"]["name"] for d in decoded] == ["a", "b"]


def test_events_watch_gets_no_periodic_bookmarks(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Fact for the API double: kube-apiserver keeps events out of its watch cache
    # (DefaultWatchCacheSizes sets events to 0), so an events watch goes straight to etcd
    # without progress notifications. With allowWatchBookmarks=true it still gets NO BOOKMARK:
    # neither the cacher's "2 s before timeoutSeconds" one nor the once-a-minute one. The
    # stream just ends at timeoutSeconds. A client's resourceVersion therefore only moves on
    # real events, and after a quiet spell longer than the apiserver's etcd compaction
    # interval (5 min by default) its next watch gets the 410 ERROR event.
    path = f"{EVENTS}/namespaces/{namespace}/events"
    rv = control_plane.get(path)["metadata"]["resourceVersion"]
    control_plane.create_event(namespace, "a", pod_ref(namespace), "BackOff", "x")

    lines = read_watch(
        control_plane,
        path,
        {"resourceVersion": rv, "allowWatchBookmarks": True, "timeoutSeconds": 4},
    )

    assert [e["type"] for _, e in lines] == ["ADDED"]
    assert lines[0][0] < 2  # the event came at once; the stream then ran to its timeout


def test_send_initial_events_ends_with_a_bookmark(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Fact for the API double: the one BOOKMARK an events watch does get is the end of the
    # initial events of a streaming list (sendInitialEvents=true, which requires
    # resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true; without the former the
    # answer is HTTP 422 Invalid). It follows the ADDED events, carries the annotation
    # k8s.io/initial-events-end: "true", and its object is an empty Event with only
    # metadata.resourceVersion set (note `eventTime: null`).
    path = f"{EVENTS}/namespaces/{namespace}/events"
    control_plane.create_event(namespace, "a", pod_ref(namespace), "BackOff", "x")
    list_rv = int(control_plane.get(path)["metadata"]["resourceVersion"])
    params: dict[str, Any] = {"sendInitialEvents": True, "allowWatchBookmarks": True}

    lines = read_watch(
        control_plane, path, {**params, "resourceVersionMatch": "NotOlderThan"}, count=2
    )
    refused = control_plane.request("GET", path, params={"watch": "true", **params})

    assert [e["type"] for _, e in lines] == ["ADDED", "BOOKMARK"]
    bookmark = lines[1][1]["object"]
    assert bookmark["kind"] == "Event"
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["metadata"]["resourceVersion"]) >= list_rv
    assert bookmark["eventTime"] is None
    assert refused.status == 422
    assert refused.json()["reason"] == "Invalid"


# From k8s.io/kubernetes pkg/apis/events/v1/conversion.go (AddFieldLabelConversionsForEvent).
SUPPORTED_FIELDS = {
    "type": "Warning",
    "reason": "BackOff",
    "regarding.kind": "Pod",
    "regarding.name": "web-0",
    "regarding.namespace": "NAMESPACE",
    "regarding.uid": "u-1",
    "regarding.apiVersion": "v1",
    "regarding.resourceVersion": "7",
    "regarding.fieldPath": "spec.containers{c}",
    "reportingController": "kube-event-watcher.e2e/recorder",
    "metadata.name": "warn",
    "metadata.namespace": "NAMESPACE",
}


@pytest.mark.parametrize("field", sorted(SUPPORTED_FIELDS))
def test_field_selector_is_supported(
    control_plane: ControlPlane, namespace: str, field: str
) -> None:
    control_plane.create_event(namespace, "warn", pod_ref(namespace), "BackOff", "x")
    control_plane.create_event(
        namespace,
        "normal",
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "name": "web"},
        "ScalingReplicaSet",
        "x",
        "Normal",
        reporting_controller="deployment-controller",
    )
    value = SUPPORTED_FIELDS[field].replace("NAMESPACE", namespace)

    items = control_plane.get(
        f"{EVENTS}/namespaces/{namespace}/events", {"fieldSelector": f"{field}={value}"}
    )["items"]

    expected = ["normal", "warn"] if field.endswith("namespace") else ["warn"]
    assert sorted(e["metadata"]["name"] for e in items) == expected


@pytest.mark.parametrize(
    "field", ["note", "action", "reportingInstance", "involvedObject.kind", "source"]
)
def test_unsupported_field_selector_is_a_bad_request(
    control_plane: ControlPlane, field: str
) -> None:
    # Fact for the API double: an unsupported field label is HTTP 400, Status reason
    # "BadRequest", message "field label not supported: <label>", for list and watch alike
    # (the watch is refused before streaming). The core/v1 names (involvedObject.kind,
    # source, reportingComponent) are not accepted on events.k8s.io/v1.
    for params in ({}, {"watch": "true", "timeoutSeconds": "1"}):
        resp = control_plane.request(
            "GET", f"{EVENTS}/events", params={"fieldSelector": f"{field}=x", **params}
        )
        assert resp.status == 400
        status = resp.json()
        assert (status["reason"], status["code"]) == ("BadRequest", 400)
        assert status["message"] == f"field label not supported: {field}"


def test_restart_apiserver_keeps_port_and_data(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.create_event(namespace, "kept", pod_ref(namespace), "BackOff", "x")
    server, port = control_plane.server, control_plane.apiserver_port
    path = f"{EVENTS}/namespaces/{namespace}/events"
    rv = control_plane.get(path)["metadata"]["resourceVersion"]

    with control_plane.stream(path, {"watch": True, "resourceVersion": rv}) as resp:
        control_plane.restart_apiserver()
        # The SIGKILLed server's open watch ends: EOF or a broken chunked stream.
        with contextlib.suppress(http.client.HTTPException, ConnectionError):
            assert resp.read() == b""

    assert (control_plane.server, control_plane.apiserver_port) == (server, port)
    names = [e["metadata"]["name"] for e in control_plane.get(path)["items"]]
    assert names == ["kept"]


def privileged_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }


def restricted_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def test_restricted_namespace_rejects_privileged_pod(control_plane: ControlPlane) -> None:
    name = f"e2e-restricted-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(name, {"pod-security.kubernetes.io/enforce": "restricted"})
    pods = f"/api/v1/namespaces/{name}/pods"

    with pytest.raises(ApiError) as rejected:
        control_plane.create_object(pods, privileged_pod("bad"))
    accepted = control_plane.create_object(pods, restricted_pod("good"))

    assert rejected.value.status == 403
    assert rejected.value.reason == "Forbidden"
    assert 'violates PodSecurity "restricted:latest"' in str(rejected.value)
    assert accepted["metadata"]["name"] == "good"


def test_patch_status_sets_pod_and_node_status(control_plane: ControlPlane, namespace: str) -> None:
    pod = f"/api/v1/namespaces/{namespace}/pods/p"
    control_plane.create_object(f"/api/v1/namespaces/{namespace}/pods", restricted_pod("p"))
    node = f"/api/v1/nodes/e2e-node-{uuid.uuid4().hex[:8]}"
    control_plane.create_object(
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.rsplit("/", 1)[1]}},
    )
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}}

    control_plane.patch_status(
        pod,
        {
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 7,
                        "state": waiting,
                    }
                ],
            }
        },
    )
    control_plane.patch_status(
        node,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "KubeletNotReady",
                        "message": "PLEG is not healthy",
                    }
                ]
            }
        },
    )

    got_pod, got_node = control_plane.get(pod), control_plane.get(node)
    assert got_pod["status"]["phase"] == "Running"
    assert got_pod["status"]["containerStatuses"][0]["restartCount"] == 7
    assert got_pod["status"]["containerStatuses"][0]["state"] == waiting
    assert got_node["status"]["conditions"][0]["reason"] == "KubeletNotReady"

    control_plane.delete(pod)
    control_plane.delete(node)
    with pytest.raises(ApiError) as gone:
        control_plane.get(node)
    assert gone.value.status == 404


def test_service_account_token_authenticates(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.create_object(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "watcher"}},
    )
    token = control_plane.create_service_account_token(namespace, "watcher")

    review = control_plane.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        token=token,
    )
    # RBAC is on: the new ServiceAccount may not list events until it is granted that.
    denied = control_plane.request("GET", f"{EVENTS}/namespaces/{namespace}/events", token=token)

    assert review.status == 201
    user = review.json()["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:watcher"
    assert "system:serviceaccounts" in user["groups"]
    assert denied.status == 403
    assert denied.json()["reason"] == "Forbidden"


def test_etcd_restart_keeps_data(control_plane: ControlPlane, namespace: str) -> None:
    # While etcd is down a request hangs until kube-apiserver's 60 s request timeout and then
    # answers HTTP 504 Timeout (seen by hand, too slow to test); once etcd is back the
    # apiserver reconnects by itself within a few seconds.
    control_plane.create_event(namespace, "kept", pod_ref(namespace), "BackOff", "x")

    control_plane.kill_etcd()
    control_plane.start_etcd()
    resp = control_plane.request("GET", f"{EVENTS}/namespaces/{namespace}/events", timeout=60)

    assert resp.status == 200
    assert [e["metadata"]["name"] for e in resp.json()["items"]] == ["kept"]
