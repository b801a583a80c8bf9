"""Each in-process benchmark harness in bench/ runs end to end with tiny sizes, so none rots.

They assert only that a harness still runs and reports what it should; the figures
themselves are for bench/RESULTS.md, measured by hand.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import bench_aggregate, bench_delivery, bench_enrich, bench_pipeline, bench_templates


def test_pipeline_harness_reports_every_cut(capsys: pytest.CaptureFixture[str]) -> None:
    bench_pipeline.main(["--lines", "3000", "--repeat", "1", "--objects", "50"])
    out = capsys.readouterr().out
    for cut in ("decode only", "→ filter", "→ aggregate → route", "→ route (aggregation off)"):
        assert f"| {cut} |" in out


def test_pipeline_cuts_agree_on_what_passes() -> None:
    from bench.stream import generate

    lines = generate(2000, objects=50)
    _, passed = bench_pipeline.to_filter(lines)
    _, routed = bench_pipeline.full(lines, bench_pipeline.AggregationConfig(enabled=False))
    assert 0 < passed == routed  # aggregation off: one routed alert per passing occurrence


def test_aggregate_harness_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench_aggregate.throughput(2000)
    bench_aggregate.memory(500)
    out = capsys.readouterr().out
    assert "throughput:" in out and "snapshot:" in out


def test_delivery_harness_runs(capsys: pytest.CaptureFixture[str]) -> None:
    async def tiny() -> None:
        await bench_delivery.rate_limited(120, 10, 15)
        await bench_delivery.local_webhook(10, fsync=False)
        await bench_delivery.queue_memory(30, 10)

    asyncio.run(tiny())
    bench_delivery.spool_replay(20)
    out = capsys.readouterr().out
    assert "spool replay: 20 alerts" in out


def test_enrich_harness_runs() -> None:
    result = asyncio.run(bench_enrich.storm(20, 2, 0.0, 5))
    assert result
    assert bench_enrich.cache_memory(20)["trimmed_bytes_per_pod"] > 0


def test_templates_harness_measures_every_platform() -> None:
    from kube_event_watcher.notifiers.sample import sample_alert

    alert = sample_alert(1_800_000_000.0)
    builders = bench_templates.builders()
    assert {"dingtalk", "wecom", "feishu", "slack", "teams", "telegram", "email"} <= set(builders)
    for build in builders.values():
        assert bench_templates.measure(build, alert, 1) > 0


def _shape(value: object) -> object:
    """Field names in order, recursively; values only by type (what decoding costs)."""
    if isinstance(value, dict):
        return [(key, _shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def test_the_generated_stream_is_shaped_as_the_api_server_serves_events() -> None:
    """bench/real_events.json was recorded from the real kube-apiserver: a kubelet (legacy
    recorder) event counted twice, and a scheduler (events/v1) event with a series."""
    import json
    from pathlib import Path

    import orjson

    from bench.stream import generate

    real = json.loads((Path(bench_pipeline.__file__).parent / "real_events.json").read_text())
    want = {event["reportingController"]: _shape(event) for event in real}
    updated = {"kubelet": None, "default-scheduler": None}
    for line in generate(3000, objects=50):
        frame = orjson.loads(line)
        event = frame["object"]
        counted = (event.get("deprecatedCount") or 1) > 1 or "series" in event
        if frame["type"] == "MODIFIED" and counted:
            updated[event["reportingController"]] = event
    for controller, event in updated.items():
        assert event is not None, controller
        assert _shape(event) == want[controller], controller


def test_checkpoint_harness_reports_write_and_read(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_checkpoint

    bench_checkpoint.main(["--sizes", "300", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "| 300 |" in out and "write after a relist ms" in out


def test_commit_harness_reports_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_commit

    bench_commit.main(["--live", "500", "--per-commit", "10", "--commits", "2"])
    out = capsys.readouterr().out
    assert "| 500 | 10 |" in out and "journal" in out


def test_object_cache_harness_reports_bytes_per_pod(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_object_cache

    bench_object_cache.main(["--pods", "600"])
    out = capsys.readouterr().out
    assert "| 600 |" in out and "B |" in out
