"""Plain renderings of an alert shared by the simple sinks (stdout, file)."""

from __future__ import annotations

import time
from typing import Any

from kube_event_watcher.pipeline.cause import likely_cause
from kube_event_watcher.pipeline.model import Alert


def iso_time(epoch: float) -> str:
    # time.gmtime: 2.5x cheaper than a datetime, and this runs a few times per alert.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def alert_record(alert: Alert) -> dict[str, Any]:
    """The alert as a JSON-ready record; for one occurrence, the event's own fields."""
    first = alert.occurrences[0] if alert.occurrences else None
    record: dict[str, Any] = {
        "id": alert.notification_id,
        "key": alert.key,
        "status": alert.status,
        "cluster": alert.cluster,
        "namespace": alert.namespace,
        "type": alert.type,
        "reason": alert.reason,
        "note": alert.note,
        "count": alert.count,
        "first_seen": iso_time(alert.first_seen),
        "last_seen": iso_time(alert.last_seen),
        "regarding": {
            "kind": alert.regarding.kind,
            "namespace": alert.regarding.namespace,
            "name": alert.regarding.name,
            "uid": alert.regarding.uid,
            "fieldPath": alert.regarding.field_path,
        },
    }
    if first is not None:
        record["event"] = {
            "uid": first.uid,
            "name": first.name,
            "resourceVersion": first.resource_version,
            "total": first.total,
            # The occurrences this alert carries: the event's series counts
            # first_total..total. A consumer that keeps the highest total per event uid can
            # drop or trim a re-send, even one whose bumps a relist merged into one.
            "first_total": first.total - first.count + 1,
            "reportingController": first.reporting_controller,
        }
    if len(alert.occurrences) > 1:
        record["occurrences"] = len(alert.occurrences)
    if alert.group_key:
        record["group"] = {
            "key": alert.group_key,
            "sequence": alert.sequence,
            "objects": dict(alert.objects),
            "reasons": dict(alert.reasons),
            "member_count": alert.member_count,
            "new_members": alert.new_members,
            "workloads": list(alert.workloads),
            "members": [
                {
                    "kind": m.regarding.kind,
                    "namespace": m.regarding.namespace,
                    "name": m.regarding.name,
                    "reason": m.reason,
                    "count": m.count,
                    "first_seen": iso_time(m.first_seen),
                    "last_seen": iso_time(m.last_seen),
                    "firing": m.firing,
                }
                for m in alert.members
            ],
        }
    if alert.labels:
        record["labels"] = dict(alert.labels)
    if alert.facts:
        record["facts"] = dict(alert.facts)
        cause = likely_cause(alert.reason, alert.note, alert.facts)
        if cause is not None:
            record["likely_cause"] = {"code": cause.code, **cause.details}
    return record


def alert_line(alert: Alert) -> str:
    """One readable line: time, type, reason, object, count, note."""
    times = f" (x{alert.count})" if alert.count > 1 else ""
    status = "" if alert.status == "firing" else "[resolved] "
    note = " ".join(alert.note.split())
    what = alert.regarding.describe()
    if sum(alert.objects.values()) > 1:
        # A group: "3 Pods of shop/web" says more than the first member's name.
        counted = ", ".join(
            f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(alert.objects.items())
        )
        owner = alert.group_key.split("/", 1)[-1] if alert.group_key else alert.namespace
        what = f"{counted} of {owner}"
    reason = "/".join(alert.reasons) if len(alert.reasons) > 1 else alert.reason
    return (
        f"{iso_time(alert.last_seen)} {status}{alert.cluster} {alert.type} {reason} "
        f"{what}{times}: {note}"
    )
