"""`kube-event-watcher test-notify RECEIVER`: send one sample alert straight through the
receiver's notifier (no spool, no retry) and show what the platform answered, verbatim, with
an explanation when the answer is a known error."""

from __future__ import annotations

import sys
import uuid
from typing import TextIO

from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.loading import LoadedConfig
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import Delivered, Notifier, PermanentFailure, ReceiverConfig
from kube_event_watcher.notifiers.http import parse_body
from kube_event_watcher.notifiers.registry import build_notifier, notifier_types
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.pipeline.model import Alert, stable_id

EXIT_DELIVERED = 0
EXIT_FAILED = 1
EXIT_UNKNOWN_RECEIVER = 2


TEST_NOTE = (
    "A test alert sent by `kube-event-watcher test-notify`; no action needed. "
    "A real alert looks like this one."
)


def trial_alert(now: float, run_id: str | None = None) -> Alert:
    """The shared sample alert, marked as a test, with a notification_id of its own for
    each run: platforms that drop repeats (webhook-id, Message-ID) take a re-run as new."""
    run_id = run_id or uuid.uuid4().hex
    return sample_alert(
        now,
        key=stable_id("test-notify"),
        notification_id=stable_id("test-notify", run_id),
        note=TEST_NOTE,
        labels={"test": "true"},
    )


def _status_and_body(answer: str) -> tuple[int, object] | None:
    head, _, body = answer.partition("\n")
    parts = head.split()
    if len(parts) == 2 and parts[0] == "HTTP" and parts[1].isdigit():
        return int(parts[1]), parse_body(body)
    return None


async def run_test_notify(
    loaded: LoadedConfig,
    receiver: str,
    out: TextIO | None = None,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    run_id: str | None = None,
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
    alert = trial_alert((clock or SystemClock()).now(), run_id)
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
