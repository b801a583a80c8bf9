"""Recorded objects for `replay --objects`: Pods, Nodes and owners as they were when each
notification would have gone out, so a replay is enriched as the live daemon would be.

The objects come as watch lines (`{"type": ..., "object": ...}`), a List (`kubectl get pods
-o json`) or single objects. Events and objects of one cluster share etcd's revision
counter, so "as it was then" is "the object's last version with a resourceVersion at or
below the newest Event seen by then". An object the recording deleted by then is not found
(404), as the live daemon would find it; a kind the recording has none of is an error the
notification's `enrichment` fact names, not a silent "not found".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from kube_event_watcher.pipeline.enrich import RawObject

ObjectKey = tuple[str, str, str]  # kind, namespace, name


class ObjectsInputError(ValueError):
    """A file given to --objects is not recorded Kubernetes objects."""


def _revision(obj: RawObject) -> int:
    metadata = obj.get("metadata") or {}
    try:
        return int(metadata.get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def read_objects(data: bytes, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(change type, object) pairs: watch lines in order, a List's items or one object as
    ADDED."""
    stripped = data.strip()
    if not stripped:
        return
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        items = whole.get("items")
        if isinstance(items, list):
            yield from (("ADDED", item) for item in items if isinstance(item, dict))
        elif "type" in whole and isinstance(whole.get("object"), dict):
            yield str(whole["type"]), whole["object"]
        else:
            yield "ADDED", whole
        return
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ObjectsInputError(f"{where}: line {number}: not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise ObjectsInputError(f"{where}: line {number}: expected a JSON object")
        if "type" in doc and "object" in doc:
            if doc["type"] in ("ADDED", "MODIFIED", "DELETED") and isinstance(doc["object"], dict):
                yield str(doc["type"]), doc["object"]
            continue  # BOOKMARK, ERROR
        yield "ADDED", doc


class RecordedObjects:
    """`ObjectLookups` over recorded objects, answered as of `at` (a resourceVersion)."""

    def __init__(self) -> None:
        # Per object: revisions ascending, and the object at each (None: deleted then).
        self._revisions: dict[ObjectKey, list[int]] = {}
        self._versions: dict[ObjectKey, list[dict[str, Any] | None]] = {}
        self._kinds: set[str] = set()
        self.at: int | None = None  # None: the latest of everything

    def add(self, changes: Iterable[tuple[str, dict[str, Any]]], where: str) -> int:
        """Take recorded changes; how many objects they held."""
        added = 0
        for change, obj in changes:
            kind = str(obj.get("kind") or "")
            metadata = obj.get("metadata") or {}
            name = str(metadata.get("name") or "")
            if not kind or not name:
                raise ObjectsInputError(f"{where}: an object without kind or metadata.name")
            key = (kind, str(metadata.get("namespace") or ""), name)
            revision = _revision(obj)
            revisions = self._revisions.setdefault(key, [])
            versions = self._versions.setdefault(key, [])
            index = bisect.bisect_right(revisions, revision)
            revisions.insert(index, revision)
            versions.insert(index, None if change == "DELETED" else obj)
            self._kinds.add(kind)
            added += 1
        return added

    @property
    def kinds(self) -> set[str]:
        return set(self._kinds)

    def _as_of(self, kind: str, namespace: str, name: str) -> RawObject | None:
        if kind not in self._kinds:
            raise LookupError(f"no {kind} in the recorded objects")
        key = (kind, namespace, name)
        revisions = self._revisions.get(key)
        if not revisions:
            return None
        index = len(revisions) if self.at is None else bisect.bisect_right(revisions, self.at)
        if index == 0:
            return None  # not created yet at that point of the recording
        return self._versions[key][index - 1]

    async def get_pod(self, namespace: str, name: str) -> RawObject | None:
        return self._as_of("Pod", namespace, name)

    async def get_owner(
        self, kind: str, api_version: str, namespace: str, name: str
    ) -> RawObject | None:
        return self._as_of(kind, namespace, name)

    async def get_node(self, name: str) -> RawObject | None:
        return self._as_of("Node", "", name)

    async def get_namespace(self, name: str) -> RawObject | None:
        return self._as_of("Namespace", "", name)

    async def get_previous_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str | None:
        raise LookupError("logs are not recorded")
