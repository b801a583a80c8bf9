"""The one-line rendering used by the stdout sink (what `make run` shows on a terminal)."""

from __future__ import annotations

from kube_event_watcher.notifiers.rendering import alert_line
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.model import Alert
from tests.factories import T0, aggregation, occurrence


def test_a_single_event_names_its_object_and_count() -> None:
    line = alert_line(Alert.from_occurrence(occurrence("web-0", count=3)))
    assert line.endswith(
        "prod Warning BackOff Pod/shop/web-0 (x3): Back-off restarting failed container"
    )


def test_a_group_says_how_many_objects_of_which_workload_and_every_reason() -> None:
    agg = Aggregator(aggregation(group={"wait": "10s"}))
    for i in range(3):
        agg.add(occurrence(f"web-7d4b9c5f8-{i:05d}", at=T0 + i), T0 + i)
    agg.add(occurrence("web-7d4b9c5f8-00000", reason="Unhealthy", at=T0 + 3), T0 + 3)
    [alert] = agg.tick(T0 + 20)
    line = alert_line(alert)
    assert " 3 Pods of shop/web (x4): " in line
    assert " BackOff/Unhealthy " in line or " Unhealthy/BackOff " in line


async def test_stdout_message_format_prints_the_whole_message_with_facts() -> None:
    import io

    from kube_event_watcher.notifiers.sample import sample_alert
    from kube_event_watcher.notifiers.stdout import StdoutConfig, StdoutNotifier

    stream = io.StringIO()
    alert = sample_alert(1_700_000_000.0)
    notifier = StdoutNotifier(
        StdoutConfig(name="console", type="stdout", format="message"), stream=stream
    )
    await notifier.send(alert)
    text = stream.getvalue()
    assert text.startswith("=== [Warning] ")
    assert "Object:" in text and alert.regarding.name in text
    assert "Facts:" in text
    assert text.endswith("\n\n")
