"""A state store in a ConfigMap, so state survives a pod reschedule without a volume.

Each document is one `binaryData` key (`<name>.z`: zlib-compressed bytes). Writes carry the
last read `resourceVersion` (optimistic concurrency); on 409 Conflict the map is read again,
our documents are applied on top of what is there, and the write is retried. The whole object
must stay under etcd's 1 MiB request limit, so a save that would exceed `max_bytes` (900 KiB
by default, leaving room for metadata) is refused with an error that says what to shrink.
https://kubernetes.io/docs/concepts/configuration/configmap/#motivation (1 MiB limit)
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Mapping
from typing import Any

from kube_event_watcher.kube.errors import ApiError
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.state.base import WholeDocuments

DEFAULT_MAX_BYTES = 900 * 1024
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_SUFFIX = ".z"
MANAGED_BY = "kube-event-watcher"


class StateTooLarge(ValueError):
    """The documents do not fit in one ConfigMap."""


class ConfigMapStore(WholeDocuments):
    """StateStore on /api/v1/namespaces/NS/configmaps/NAME (needs get, create, update).

    One update writes every document of a commit: atomic as a whole. Full documents only
    (the map is small by necessity)."""

    def __init__(
        self,
        http: KubeHttp,
        namespace: str,
        name: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_attempts: int = 5,
    ) -> None:
        self.http = http
        self.namespace = namespace
        self.name = name
        self.max_bytes = max_bytes
        self.max_attempts = max_attempts
        self._resource_version: str | None = None
        self._binary: dict[str, str] = {}  # key -> base64, as last read or written
        self._loaded = False
        self.written_bytes = 0  # for the metrics: the whole ConfigMap data, per write

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    def describe(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    async def _read(self) -> None:
        try:
            obj = await self.http.request_json("GET", self._path, purpose="state")
        except ApiError as exc:
            if exc.status != 404:
                raise
            self._resource_version = None
            self._binary = {}
        else:
            meta = obj.get("metadata") or {}
            self._resource_version = meta.get("resourceVersion")
            self._binary = dict(obj.get("binaryData") or {})
        self._loaded = True

    async def load(self, name: str) -> bytes | None:
        await self._read()
        encoded = self._binary.get(_key(name))
        if encoded is None:
            return None
        try:
            return zlib.decompress(base64.b64decode(encoded))
        except (ValueError, zlib.error) as exc:
            raise ValueError(
                f"{self.describe()} key {_key(name)} is not zlib data ({exc}); delete the key "
                "or the ConfigMap to start afresh"
            ) from exc

    async def save(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes] | None = None,
        *,
        full: bool = False,
    ) -> None:
        if changes:
            raise ValueError(f"{self.describe()} keeps full documents only, not changes")
        encoded = {
            _key(name): base64.b64encode(zlib.compress(data, 6)).decode()
            for name, data in documents.items()
        }
        if not self._loaded:
            await self._read()
        for attempt in range(1, self.max_attempts + 1):
            merged = self._binary | encoded
            self._check_size(merged)
            body = self._body(merged)
            try:
                if self._resource_version is None:
                    obj = await self.http.request_json(
                        "POST",
                        f"/api/v1/namespaces/{self.namespace}/configmaps",
                        body=body,
                        purpose="state",
                    )
                else:
                    obj = await self.http.request_json(
                        "PUT", self._path, body=body, purpose="state"
                    )
            except ApiError as exc:
                # 409: someone wrote since our read (or created it first): read, retry.
                if exc.status != 409 or attempt == self.max_attempts:
                    raise
                await self._read()
                continue
            self._resource_version = (obj.get("metadata") or {}).get("resourceVersion")
            self._binary = merged
            self.written_bytes += sum(len(k) + len(v) for k, v in merged.items())
            return

    def _check_size(self, binary: Mapping[str, str]) -> None:
        size = sum(len(k) + len(v) for k, v in binary.items())
        if size > self.max_bytes:
            largest = max(binary, key=lambda k: len(binary[k]))
            raise StateTooLarge(
                f"{self.describe()} would hold {size // 1024} KiB, over the "
                f"{self.max_bytes // 1024} KiB limit (a ConfigMap must stay under 1 MiB); "
                f"the largest document is {largest} ({len(binary[largest]) // 1024} KiB). "
                "Lower aggregation.max_keys / aggregation.max_groups, or use "
                "state.backend: file on a volume"
            )

    def _body(self, binary: Mapping[str, str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        }
        if self._resource_version is not None:
            metadata["resourceVersion"] = self._resource_version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "binaryData": binary}

    async def close(self) -> None:
        return None


def _key(name: str) -> str:
    key = name + _SUFFIX
    if not _KEY.match(key) or len(key) > 253:
        raise ValueError(f"state document name {name!r} is not a valid ConfigMap key")
    return key
