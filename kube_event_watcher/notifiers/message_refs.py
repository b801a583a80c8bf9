"""Sent messages a platform lets us edit, by alert key: the chat message that tells an
incident, so its updates and its resolve change that message instead of adding more.

Kept in a small JSON file beside the receiver's spool, rewritten (write, fsync, rename) on
each change: a restart edits the same message. A crash between the platform's answer and
the write costs at most one extra message; a re-send of a notification already delivered
becomes an edit with the same text, not a second message. Bounded: the oldest refs go
first (an incident that old is long over, or will be told in a new message).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import orjson
import structlog

from kube_event_watcher.notifiers.spool import spool_file_name
from kube_event_watcher.pipeline.model import Alert

log = structlog.get_logger(__name__)

MAX_REFS = 2000


def refs_path(state_dir: Path, receiver: str) -> Path:
    return state_dir / spool_file_name(receiver).replace(".spool.jsonl", ".messages.json")


def open_refs(state_dir: Path | None, receiver: str) -> MessageRefs:
    """A receiver's refs, kept in its state dir (in memory only without one)."""
    return MessageRefs(refs_path(state_dir, receiver) if state_dir is not None else None)


class MessageRefs:
    """alert key -> the platform's id of the message that tells it (in memory without a path)."""

    def __init__(self, path: Path | None = None, limit: int = MAX_REFS) -> None:
        self.path = path
        self.limit = limit
        self._refs: OrderedDict[str, str] = OrderedDict()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            loaded = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            # Only edits are lost: the next update of each incident is a new message.
            log.warning(
                "sent-message refs unreadable; starting without", path=str(path), error=str(exc)
            )
            return
        if isinstance(loaded, dict):
            for key, ref in loaded.items():
                if isinstance(key, str) and isinstance(ref, str | int):
                    self._refs[key] = str(ref)

    def get(self, key: str) -> str | None:
        return self._refs.get(key)

    def put(self, key: str, ref: str) -> None:
        if self._refs.get(key) == ref:
            return
        self._refs[key] = ref
        self._refs.move_to_end(key)
        while len(self._refs) > self.limit:
            self._refs.popitem(last=False)
        self._save()

    def told(self, alert: Alert, ref: str) -> None:
        """`alert` went out as (or into) message `ref`: keep it for the next update; after
        the resolve, forget it (the incident is over: a new one gets a new message)."""
        if alert.status == "resolved":
            self.forget(alert.key)
        else:
            self.put(alert.key, ref)

    def forget(self, key: str) -> None:
        if self._refs.pop(key, None) is not None:
            self._save()

    def __len__(self) -> int:
        return len(self._refs)

    def _save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as out:
                out.write(orjson.dumps(self._refs))
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(self.path)
        except OSError as exc:
            log.error(
                "cannot save sent-message refs; updates after a restart are new messages",
                path=str(self.path),
                error=str(exc),
            )
