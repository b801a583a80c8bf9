"""Decoding watch lines and list pages: only the fields the pipeline reads, types checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kube_event_watcher.kube.wire import (
    DecodeError,
    WatchObject,
    convert_event,
    decode_event,
    decode_list_page,
    decode_watch_line,
)
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import RawObjectMeta
from kube_event_watcher.pipeline.normalize import Normalizer

# Objects recorded from kube-apiserver v1.37.2 (bench/record_real_events.py).
REAL_EVENTS: list[dict[str, Any]] = orjson.loads(
    (Path(__file__).resolve().parents[3] / "bench" / "real_events.json").read_bytes()
)


def watch_line(change: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": change, "object": obj})


@pytest.mark.parametrize("real", REAL_EVENTS, ids=lambda e: e["reason"])
def test_a_real_event_normalizes_the_same_as_when_every_field_is_decoded(
    real: dict[str, Any],
) -> None:
    frame = decode_watch_line(watch_line("ADDED", real))
    assert frame.type == "ADDED"
    slim = frame.object
    from_slim = Normalizer("c", SeenLedger()).apply("ADDED", slim)
    from_whole = Normalizer("c", SeenLedger()).apply("ADDED", convert_event(real))
    assert from_slim is not None
    assert from_slim == from_whole
    meta, regarding = real["metadata"], real["regarding"]
    assert (from_slim.uid, from_slim.name, from_slim.resource_version) == (
        meta["uid"],
        meta["name"],
        meta["resourceVersion"],
    )
    assert (from_slim.reason, from_slim.note, from_slim.type) == (
        real["reason"],
        real["note"],
        real["type"],
    )
    assert from_slim.regarding[:4] == (
        regarding["kind"],
        regarding["namespace"],
        regarding["name"],
        regarding["uid"],
    )


def test_nulls_the_api_serves_are_accepted() -> None:
    bookmark = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {
            "resourceVersion": "4242",
            "creationTimestamp": None,
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
        "eventTime": None,
        "reportingController": "",
        "reportingInstance": "",
    }
    frame = decode_watch_line(watch_line("BOOKMARK", bookmark))
    assert frame.object == WatchObject(
        metadata=RawObjectMeta(resource_version="4242"),
        reporting_controller="",
        reporting_instance="",
    )


def test_an_error_frame_keeps_the_status_code_and_message() -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version: 5 (120)",
        "reason": "Expired",
        "code": 410,
    }
    frame = decode_watch_line(watch_line("ERROR", status))
    assert frame.object.code == 410
    assert frame.object.message == "too old resource version: 5 (120)"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"type":"ADDED","object":{"metadata":', "truncated"),
        (b'{"type":"ADDED"}', "missing required field `object`"),
        (b'{"type":"ADDED","object":"x"}', "Expected `object`, got `str` - at `$.object`"),
        (
            b'{"type":"ADDED","object":{"metadata":{"uid":7}}}',
            "Expected `str | null`, got `int` - at `$.object.metadata.uid`",
        ),
        (
            b'{"type":"MODIFIED","object":{"series":{"count":"3"}}}',
            "Expected `int | null`, got `str` - at `$.object.series.count`",
        ),
    ],
)
def test_a_malformed_line_is_refused_with_where_it_is_wrong(line: bytes, says: str) -> None:
    with pytest.raises(DecodeError, match="(?i)" + says.replace("|", r"\|").replace("$", r"\$")):
        decode_watch_line(line)


def test_a_list_page_keeps_its_items_apart_so_one_bad_item_costs_only_itself() -> None:
    good, bad = REAL_EVENTS[0], {**REAL_EVENTS[1], "deprecatedCount": "two"}
    page = decode_list_page(
        orjson.dumps(
            {
                "kind": "EventList",
                "apiVersion": "events.k8s.io/v1",
                "metadata": {"resourceVersion": "900", "continue": "abc", "remainingItemCount": 1},
                "items": [good, bad],
            }
        )
    )
    assert page["metadata"] == {"resourceVersion": "900", "continue": "abc"}
    first, second = page["items"] or []
    meta = good["metadata"]
    assert decode_event(first).metadata == RawObjectMeta(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
        creation_timestamp=meta["creationTimestamp"],
    )
    with pytest.raises(DecodeError, match=r"at `\$.deprecatedCount`"):
        decode_event(second)
