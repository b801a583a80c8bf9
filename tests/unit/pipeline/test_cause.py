"""The likely cause, read off real kubelet and scheduler messages and enrichment facts."""

from __future__ import annotations

from typing import Any

import pytest

from kube_event_watcher.pipeline.cause import Cause, likely_cause

PULL_FAILED = (
    'Failed to pull image "registry.example/shop/web:v9": rpc error: code = NotFound desc = '
    'failed to pull and unpack image "registry.example/shop/web:v9": failed to resolve '
    'reference "registry.example/shop/web:v9": registry.example/shop/web:v9: not found'
)
UNSCHEDULABLE = (
    "0/3 nodes are available: 1 node(s) had untolerated taint "
    "{node-role.kubernetes.io/control-plane: }, 2 Insufficient memory. preemption: 0/3 nodes "
    "are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found "
    "for incoming pod."
)
CRASHED: dict[str, Any] = {"container": "app", "restart_count": 6, "container_state": "waiting"}


@pytest.mark.parametrize(
    ("reason", "note", "facts", "expected"),
    [
        (
            "BackOff",
            "Back-off restarting failed container app",
            CRASHED | {"last_terminated_reason": "OOMKilled", "exit_code": 137},
            Cause("oom", {"container": "app", "exit_code": "137"}),
        ),
        (
            "BackOff",
            "Back-off restarting failed container app",
            CRASHED | {"last_terminated_reason": "Error", "exit_code": 137},
            Cause("killed", {"container": "app"}),
        ),
        (
            "BackOff",
            "Back-off restarting failed container app",
            CRASHED | {"last_terminated_reason": "Error", "exit_code": 1},
            Cause(
                "crash",
                {"container": "app", "exit_code": "1", "restarts": "6", "terminated": "Error"},
            ),
        ),
        (
            "Failed",
            PULL_FAILED,
            {
                "container": "app",
                "waiting_reason": "ImagePullBackOff",
                "waiting_message": 'Back-off pulling image "registry.example/shop/web:v9"',
            },
            Cause(
                "image",
                {
                    "image": "registry.example/shop/web:v9",
                    "error": "rpc error: code = NotFound desc = failed to pull and unpack image "
                    '"registry.example/shop/web:v9": failed to resolve reference '
                    '"registry.example/shop/web:v9": registry.example/shop/web:v9: not found',
                },
            ),
        ),
        (
            "Failed",
            'Error: secret "db-password" not found',
            {
                "container": "app",
                "waiting_reason": "CreateContainerConfigError",
                "waiting_message": 'secret "db-password" not found',
            },
            Cause("config", {"container": "app", "error": 'secret "db-password" not found'}),
        ),
        (
            "FailedScheduling",
            UNSCHEDULABLE,
            {"pod_phase": "Pending"},
            Cause(
                "unschedulable",
                {
                    "why": "1 node(s) had untolerated taint "
                    "{node-role.kubernetes.io/control-plane: }, 2 Insufficient memory"
                },
            ),
        ),
        (
            "NodeNotReady",
            "Node is not ready",
            {"node": "node-3", "node_ready": "Unknown", "node_ready_reason": "NodeStatusUnknown"},
            Cause("node", {"node": "node-3", "ready": "Unknown", "why": "NodeStatusUnknown"}),
        ),
    ],
)
def test_the_cause_an_operator_would_name_first(
    reason: str, note: str, facts: dict[str, Any], expected: Cause
) -> None:
    assert likely_cause(reason, note, facts) == expected


def test_kwoks_pull_note_without_the_image_takes_it_from_the_container() -> None:
    cause = likely_cause(
        "Failed",
        "Failed to pull image: rpc error: code = NotFound desc = failed to pull and unpack "
        "image: not found",
        {
            "waiting_reason": "ErrImagePull",
            "waiting_message": "rpc error: code = NotFound desc = failed to pull and unpack "
            'image "registry.invalid/kew/app:does-not-exist": not found',
        },
    )
    assert cause == Cause(
        "image",
        {
            "image": "registry.invalid/kew/app:does-not-exist",
            "error": "rpc error: code = NotFound desc = failed to pull and unpack image: not found",
        },
    )


def test_no_facts_beyond_the_event_name_no_cause() -> None:
    assert likely_cause("BackOff", "Back-off restarting failed container app", {}) is None
    assert likely_cause("Unhealthy", "Readiness probe failed", {"node_ready": "True"}) is None
