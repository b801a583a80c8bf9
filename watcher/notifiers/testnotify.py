"""`kube-event-watcher test-notify RECEIVER`: send one sample alert straight through the
receiver's notifier (no spool, no retry) and show what the platform answered, verbatim, with
an explanation when the answer is a known error."""

from __future__ import annotations

import sys
from typing import TextIO

from watcher.clock import Clock, SystemClock
from watcher.config.loading import LoadedConfig
from watcher.config.secrets import redact
from watcher.notifiers.base import Delivered, Notifier, PermanentFailure, ReceiverConfig
from watcher.notifiers.registry import build_notifier, notifier_types
from watcher.pipeline.model import Alert, ObjectRef, Occurrence, stable_id

EXIT_DELIVERED = 0
EXIT_FAILED = 1
EXIT_UNKNOWN_RECEIVER = 2


def sample_alert(now: float) -> Alert:
    """A realistic alert (a crash-looping Pod) with a fresh id, so no platform drops it."""
    regarding = ObjectRef(kind="Pod", namespace="default", name="kube-event-watcher-test", uid="")
    occurrence = Occurrence(
        cluster="test-notify",
        uid=stable_id("test-notify", str(now)),
        name="kube-event-watcher-test.test",
        namespace="default",
        resource_version="1",
        type="Warning",
        reason="BackOff",
        note="Back-off restarting failed container app in pod kube-event-watcher-test "
        "(a test alert sent by kube-event-watcher test-notify)",
        action="",
        regarding=regarding,
        reporting_controller="kubelet",
        reporting_instance="",
        count=1,
        total=1,
        first_seen=now,
        last_seen=now,
    )
    return Alert.from_occurrence(occurrence)


def _status_and_body(answer: str) -> tuple[int, str] | None:
    head, _, body = answer.partition("\n")
    parts = head.split()
    if len(parts) == 2 and parts[0] == "HTTP" and parts[1].isdigit():
        return int(parts[1]), body
    return None


async def run_test_notify(
    loaded: LoadedConfig,
    receiver: str,
    out: TextIO | None = None,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
) -> int:
    """Send the sample alert to `receiver`; print the answer. Exit code 0 when delivered."""
    out = out or sys.stdout
    config = loaded.receivers.get(receiver)
    if notifier is None:
        if not isinstance(config, ReceiverConfig):
            known = ", ".join(sorted(loaded.receivers)) or "none"
            out.write(f"no receiver named {receiver!r} in {loaded.source} (known: {known})\n")
            return EXIT_UNKNOWN_RECEIVER
        notifier = build_notifier(config, notifier_types())
    alert = sample_alert((clock or SystemClock()).now())
    await notifier.start()
    try:
        result = await notifier.send(alert)
    except Exception as exc:
        result = PermanentFailure(f"the notifier raised {type(exc).__name__}: {exc}")
    finally:
        await notifier.close()
    out.write(f"receiver: {receiver} ({type(notifier).__name__})\n")
    out.write(f"result: {type(result).__name__}")
    reason = getattr(result, "reason", "") or getattr(result, "detail", "")
    seconds = getattr(result, "seconds", None)
    out.write(f" — {redact(reason)}" if reason else "")
    out.write(f" (retry after {seconds:g}s)" if seconds is not None else "")
    out.write("\n")
    if notifier.last_answer is not None:
        out.write("platform answered:\n")
        out.write(redact(notifier.last_answer).rstrip("\n") + "\n")
        parsed = _status_and_body(notifier.last_answer)
        if parsed is not None:
            explanation = notifier.explain(*parsed)
            if explanation:
                out.write(f"what it means: {explanation}\n")
    return EXIT_DELIVERED if isinstance(result, Delivered) else EXIT_FAILED
