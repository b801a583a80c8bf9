"""The object cache's decoding: the slim wire form reads the same facts as the raw JSON."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from kube_event_watcher.kube.objects import (
    NODES,
    PODS,
    ClusterObjects,
    Interner,
    decode_node,
    decode_pod,
    node_from_wire,
    pod_from_wire,
)
from kube_event_watcher.kube.wire import DecodeError, WatchStatusError
from kube_event_watcher.pipeline.enrich import node_facts, pod_facts
from tests.fixtures import all_objects, load_object


@pytest.mark.parametrize(
    "obj", [o for o in all_objects() if o["kind"] in ("Pod", "Node")], ids=lambda o: o["kind"]
)
def test_the_cache_reads_what_enrichment_reads_from_the_raw_object(obj: dict[str, object]) -> None:
    raw = orjson.dumps(obj)
    if obj["kind"] == "Pod":
        assert pod_from_wire(decode_pod(raw), Interner()) == pod_facts(obj)
    else:
        assert node_from_wire(decode_node(raw)) == node_facts(obj)


def test_identical_healthy_containers_are_one_shared_object() -> None:
    interner = Interner()
    pods = []
    for i in range(3):
        pod = load_object("pod-terminating-stuck")
        pod["metadata"]["name"] = f"node-exporter-{i}"
        pod["metadata"]["uid"] = f"uid-{i}"
        pods.append(pod_from_wire(decode_pod(orjson.dumps(pod)), interner))
    assert pods[0].containers is pods[1].containers is pods[2].containers
    assert pods[0].namespace is pods[2].namespace


def test_a_field_of_the_wrong_type_or_a_pod_without_uid_is_refused() -> None:
    pod = load_object("pod-crashloop")
    pod["status"]["containerStatuses"][0]["restartCount"] = "seven"
    with pytest.raises(DecodeError, match="restartCount"):
        decode_pod(orjson.dumps(pod))
    anonymous = load_object("pod-crashloop")
    del anonymous["metadata"]["uid"]
    with pytest.raises(DecodeError, match="uid"):
        pod_from_wire(decode_pod(orjson.dumps(anonymous)), Interner())


def test_watch_frames_of_objects_errors_and_bookmarks() -> None:
    pod = load_object("pod-crashloop")
    change, obj, rv = PODS.read_frame(orjson.dumps({"type": "MODIFIED", "object": pod}))
    assert (change, rv) == ("MODIFIED", "48213")
    assert obj.metadata.name == "web-7d9f8c6b5-x2x9k"
    bookmark = {"kind": "Node", "metadata": {"resourceVersion": "900", "annotations": {"a": "b"}}}
    assert NODES.read_frame(orjson.dumps({"type": "BOOKMARK", "object": bookmark}))[2] == "900"
    gone = {"kind": "Status", "status": "Failure", "code": 410, "message": "too old"}
    with pytest.raises(WatchStatusError) as err:
        PODS.read_frame(orjson.dumps({"type": "ERROR", "object": gone}))
    assert (err.value.code, err.value.message) == (410, "too old")
    with pytest.raises(msgspec.DecodeError):
        PODS.read_frame(b'{"type":"ADDED","object":{"metadata":')


def test_a_relist_sweeps_what_is_gone_and_the_cache_answers_only_once_listed() -> None:
    objects = ClusterObjects()
    store = objects.pod_store(None)
    first = pod_facts(load_object("pod-crashloop"))
    other = pod_facts(load_object("pod-oomkilled"))
    store.begin_relist()
    store.put((first.namespace, first.name), first)
    assert objects.cached_pod(first.namespace, first.name) is None  # not listed yet: ask the API
    store.put((other.namespace, other.name), other)
    assert store.end_relist() == []
    assert objects.cached_pod(first.namespace, first.name) is first
    store.begin_relist()
    store.put((other.namespace, other.name), other)
    assert store.end_relist() == [first]
    assert objects.cached_pod(first.namespace, first.name) is None
    assert objects.cached_node("worker-1") is None
