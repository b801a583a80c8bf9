"""Several queued alerts combined into one message, for a receiver that fell behind."""

from __future__ import annotations

from collections.abc import Sequence

from kube_event_watcher.notifiers.rendering import alert_line
from kube_event_watcher.pipeline.model import Alert, ObjectRef, stable_id

DIGEST_REASON = "Digest"


def digest_alert(receiver: str, alerts: Sequence[Alert]) -> Alert:
    """One alert standing for `alerts` (in order): the note lists one line per alert.

    Its notification_id is derived from the combined ids, so re-sending the same digest after
    a crash carries the same idempotency key. `facts["digest_of"]` lists the combined ids.
    """
    if len(alerts) < 2:
        raise ValueError("a digest combines at least two alerts")
    clusters = {a.cluster for a in alerts}
    namespaces = {a.namespace for a in alerts}
    reasons = {a.reason for a in alerts}
    ids = [a.notification_id for a in alerts]
    namespace = namespaces.pop() if len(namespaces) == 1 else ""
    return Alert(
        key=stable_id("digest", receiver, *ids),
        notification_id=stable_id("digest", *ids),
        status="firing",
        cluster=clusters.pop() if len(clusters) == 1 else ",".join(sorted(clusters)),
        namespace=namespace,
        regarding=ObjectRef(
            kind="Digest", namespace=namespace, name=f"{len(alerts)} alerts", uid=""
        ),
        reason=reasons.pop() if len(reasons) == 1 else DIGEST_REASON,
        type="Warning" if any(a.type == "Warning" for a in alerts) else alerts[0].type,
        note="\n".join(alert_line(a) for a in alerts),
        count=sum(a.count for a in alerts),
        first_seen=min(a.first_seen for a in alerts),
        last_seen=max(a.last_seen for a in alerts),
        occurrences=tuple(o for a in alerts for o in a.occurrences),
        labels={"digest": "true"},
        facts={"digest_of": ids, "digest_size": len(alerts)},
    )
