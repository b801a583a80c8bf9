"""The likely cause of an alert, read off its reason, note and enrichment facts.

Pure: values in, a `Cause` out (a code and the details it names), or None when the facts
say nothing beyond the event itself. The notifiers phrase it in the receiver's language.
Rules are the ones an operator applies first, in order of how sure they are: the kubelet's
own termination reason beats an exit code, which beats the event's reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

CauseCode = Literal["oom", "killed", "image", "config", "crash", "unschedulable", "node", "evicted"]

_IMAGE = re.compile(r'image "([^"]+)"')
_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})
_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
_PULL_FAILED = re.compile(r'Failed to pull image(?: "[^"]*")?: (.+)', re.DOTALL)
_NODE_FIT = re.compile(r"nodes are available: (.+?)(?:\. preemption:|$)", re.DOTALL)


class Cause(NamedTuple):
    code: CauseCode
    details: dict[str, str]


def likely_cause(reason: str, note: str, facts: Mapping[str, Any]) -> Cause | None:
    """What most likely went wrong, from the facts enrichment found (or None)."""
    container = str(facts.get("container") or "")
    terminated = str(facts.get("last_terminated_reason") or "")
    waiting = str(facts.get("waiting_reason") or "")
    exit_code = facts.get("exit_code")
    if terminated == "OOMKilled" or reason == "OOMKilled":
        return Cause("oom", {"container": container, "exit_code": str(exit_code or 137)})
    if waiting in _PULL_REASONS or reason in ("ErrImagePull", "ImagePullBackOff"):
        return _image_cause(note, str(facts.get("waiting_message") or ""))
    if waiting in _CONFIG_REASONS:
        return Cause(
            "config",
            {"container": container, "error": str(facts.get("waiting_message") or note)},
        )
    if exit_code == 137 or facts.get("signal") == 9:
        return Cause("killed", {"container": container})
    if isinstance(exit_code, int) and exit_code != 0:
        return Cause(
            "crash",
            {
                "container": container,
                "exit_code": str(exit_code),
                "restarts": str(facts.get("restart_count") or 0),
                "terminated": terminated,
            },
        )
    if reason == "FailedScheduling":
        fit = _NODE_FIT.search(note)
        why = fit.group(1).strip().rstrip(".") if fit else note.strip()
        return Cause("unschedulable", {"why": why})
    if reason == "Evicted" or facts.get("pod_reason") == "Evicted":
        return Cause("evicted", {"why": note.strip()})
    ready = facts.get("node_ready")
    if ready is not None and ready != "True":
        return Cause(
            "node",
            {
                "node": str(facts.get("node") or ""),
                "ready": str(ready),
                "why": str(facts.get("node_ready_reason") or ""),
            },
        )
    return None


def _image_cause(note: str, waiting_message: str) -> Cause:
    # The registry's answer is in the kubelet's "Failed to pull image" event (a real kubelet
    # names the image there, kwok does not); the container's waiting message has the image
    # and, for ErrImagePull, the error too.
    found = _IMAGE.search(note) or _IMAGE.search(waiting_message)
    failed = _PULL_FAILED.search(note)
    error = failed.group(1) if failed else waiting_message or note
    return Cause(
        "image", {"image": found.group(1) if found else "", "error": " ".join(error.split())}
    )
