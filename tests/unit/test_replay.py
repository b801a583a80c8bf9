"""`replay`: recorded events through normalize → filter → aggregate on their own clock."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from kube_event_watcher.cli import main
from kube_event_watcher.config.schema import Config
from kube_event_watcher.replay import replay

FIXTURES = Path(__file__).parents[1] / "fixtures"
CRASHLOOP = FIXTURES / "crashloop-rollout.jsonl"
EXAMPLE = Path(__file__).parents[2] / "config" / "aggregation.yaml"


def config(**sections: object) -> Config:
    return Config.model_validate(sections)


def test_a_crash_looping_rollout_is_one_firing_and_one_resolved_per_workload() -> None:
    example = Config.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    result = replay(example, CRASHLOOP.read_bytes())
    assert [a.status for _, a in result.sent] == ["firing", "resolved"]
    firing, resolved = (a for _, a in result.sent)
    assert firing.key == resolved.key
    assert firing.objects == {"Pod": 20}
    assert firing.group_key == "default/shop/web"
    assert set(firing.reasons) == {"BackOff", "Unhealthy", "Failed"}
    assert resolved.count == result.occurrences
    # The resolve comes resolve_after (10m) after the last event of the rollout.
    last_event = max(a.last_seen for _, a in result.sent)
    assert result.sent[1][0] == pytest.approx(last_event + 600, abs=1)


def test_with_the_default_config_a_crash_loop_is_at_most_two_notifications() -> None:
    result = replay(config(), CRASHLOOP.read_bytes())
    assert [(a.group_key, a.status) for _, a in result.sent] == [
        ("default/shop/web", "firing"),
        ("default/shop/web", "resolved"),
    ]
    assert set(result.sent[0][1].reasons) == {"BackOff", "Unhealthy", "Failed"}


def test_grouping_by_reason_too_gives_a_group_per_reason() -> None:
    by_reason = {"group": {"by": ["cluster", "namespace", "owner", "reason"]}}
    result = replay(config(aggregation=by_reason), CRASHLOOP.read_bytes())
    by_group: dict[str, list[str]] = {}
    for _, alert in result.sent:
        by_group.setdefault(alert.group_key, []).append(alert.status)
    assert by_group == {
        "default/shop/web/BackOff": ["firing", "resolved"],
        "default/shop/web/Unhealthy": ["firing", "resolved"],
        "default/shop/web/Failed": ["firing", "resolved"],
    }


def test_series_updates_count_as_occurrences_not_watch_lines() -> None:
    lines = CRASHLOOP.read_bytes().splitlines()
    watch_changes = sum(1 for line in lines if b'"BOOKMARK"' not in line)
    result = replay(config(), CRASHLOOP.read_bytes())
    total = sum(a.count for _, a in result.sent if a.status == "resolved")
    # Every line in this recording grows a count by one, so they agree here...
    assert total == watch_changes
    # ...and a line seen twice (a relist) adds nothing.
    doubled = replay(config(), CRASHLOOP.read_bytes() + b"\n" + CRASHLOOP.read_bytes())
    assert sum(a.count for _, a in doubled.sent if a.status == "resolved") == total


def core_event(name: str, pod: str, reason: str, count: int, last: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": pod, "uid": f"u-{pod}"},
        "reason": reason,
        "message": f"{reason} on {pod}",
        "type": "Warning" if reason != "Pulled" else "Normal",
        "count": count,
        "firstTimestamp": "2026-03-02T10:00:00Z",
        "lastTimestamp": last,
        "source": {"component": "kubelet", "host": "node-1"},
    }


def test_kubectl_get_events_output_is_read_as_core_v1() -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            core_event("b", "web-7d4b9c5f8-b5v7q", "BackOff", 4, "2026-03-02T10:00:20Z"),
            core_event("a", "web-7d4b9c5f8-x2k9p", "BackOff", 7, "2026-03-02T10:00:10Z"),
            core_event("c", "web-7d4b9c5f8-x2k9p", "Pulled", 3, "2026-03-02T10:00:05Z"),
        ],
    }
    result = replay(config(), orjson.dumps(listing))
    [(_, firing), (_, resolved)] = result.sent
    assert firing.count == 11  # the events' own counts, Normal dropped by type=Warning
    assert firing.objects == {"Pod": 2}
    assert firing.note == "BackOff on web-7d4b9c5f8-b5v7q"
    member = firing.members[-1]
    assert (member.regarding.name, member.count) == ("web-7d4b9c5f8-x2k9p", 7)
    assert resolved.status == "resolved"


def test_filters_drop_before_aggregation() -> None:
    cfg = config(filters={"drop": [{"reason": "Unhealthy|Failed"}]})
    result = replay(cfg, CRASHLOOP.read_bytes())
    assert {a.reason for _, a in result.sent} == {"BackOff"}
    assert result.dropped > 0


def test_a_malformed_line_is_reported_with_its_line_number_and_skipped() -> None:
    good = CRASHLOOP.read_bytes().splitlines()
    data = b"\n".join([b'{"type": "BOOKMARK", "object": {}}', b"not json", *good[:3]])
    result = replay(config(), data)
    assert len(result.skipped) == 1
    assert result.skipped[0].startswith("line 2: not JSON")
    assert result.changes == 3  # the lines after it are read


def listing_items() -> list[dict[str, object]]:
    return [
        core_event("b", "web-7d4b9c5f8-b5v7q", "BackOff", 4, "2026-03-02T10:00:20Z"),
        core_event("a", "web-7d4b9c5f8-x2k9p", "BackOff", 7, "2026-03-02T10:00:10Z"),
    ]


def summary(data: bytes) -> list[tuple[str, str, int]]:
    return [(a.group_key, a.status, a.count) for _, a in replay(config(), data).sent]


def test_every_shape_of_recorded_events_gives_the_same_notifications() -> None:
    items = listing_items()
    shapes = {
        "List": orjson.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        "EventList, pretty": orjson.dumps(
            {"apiVersion": "v1", "kind": "EventList", "items": items}, option=orjson.OPT_INDENT_2
        ),
        "array": orjson.dumps(items),
        "JSON lines": b"\n".join(orjson.dumps(i) for i in items),
        "watch lines": b"\n".join(orjson.dumps({"type": "ADDED", "object": i}) for i in items),
        "pretty, one after another (kubectl get -w -o json)": b"\n".join(
            orjson.dumps(i, option=orjson.OPT_INDENT_2) for i in items
        ),
    }
    shapes["array, with a byte-order mark"] = b"\xef\xbb\xbf" + shapes["array"]
    found = {name: summary(data) for name, data in shapes.items()}
    assert found == {name: found["List"] for name in shapes}
    # Two Pods of one workload, 4 + 7 BackOffs: one firing and one resolved notification.
    assert [(status, count) for _, status, count in found["List"]] == [
        ("firing", 11),
        ("resolved", 11),
    ]


def test_a_malformed_event_in_an_array_or_list_is_named_by_its_index_and_skipped() -> None:
    items: list[object] = [*listing_items(), {"metadata": "not a mapping"}, 7]
    result = replay(config(), orjson.dumps(items))
    assert [p.split(" (")[0] for p in result.skipped] == [
        "line 1: [2]: not a usable Event",
        "line 1: [3]: expected a JSON object, got int",
    ]
    assert result.changes == 2 and len(result.sent) == 2
    listing = {"kind": "EventList", "items": [listing_items()[0], {"involvedObject": []}]}
    result = replay(config(), orjson.dumps(listing))
    assert [p.split(" (")[0] for p in result.skipped] == ["line 1: items[1]: not a usable Event"]


def test_cli_reads_standard_input_and_reports_what_it_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    data = orjson.dumps([*listing_items(), "garbage"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["replay", "-"]) == 0
    captured = capsys.readouterr()
    assert "FIRING" in captured.out and "1 malformed skipped" in captured.out
    assert captured.err == (
        "replay: (stdin): line 1: [2]: expected a JSON object, got str; skipped\n"
    )

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hello\nworld\n")))
    assert main(["replay", "-"]) == 2
    err = capsys.readouterr().err
    assert "replay: (stdin): line 1: not JSON" in err
    assert "replay: (stdin): line 2: not JSON" in err
    assert "no usable event in it" in err


def test_cli_prints_what_would_be_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "-c", str(EXAMPLE), str(CRASHLOOP)]) == 0
    out = capsys.readouterr().out
    assert "FIRING   default/shop/web #1: 20 Pods" in out
    assert "RESOLVED default/shop/web #2: 20 Pods" in out
    assert "-> 2 notifications (1 firing, 1 resolved)" in out
    # Members per Pod, each with all its reasons: no Pod twice, and the rest counted in Pods.
    [members] = [line for line in out.splitlines() if "members:" in line][:1]
    listed = [part.split(" (")[0] for part in members.split("members: ")[1].split("), ")]
    assert len(listed) == len(set(listed)) == 8
    assert "BackOff x" in members and "Unhealthy x" in members
    assert members.endswith("and 12 more")

    assert main(["replay", "--output", "json", str(CRASHLOOP)]) == 0
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["alert"]["status"] for r in records] == ["firing", "resolved"]
    assert records[0]["alert"]["group"]["objects"] == {"Pod": 20}

    assert main(["replay", str(FIXTURES / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
