"""How occurrences are keyed and grouped: field getters, and a workload name for a Pod.

Owner references come from enrichment later; until then (and when a lookup misses) the
workload is read off the object's name, the way the controllers build those names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from kube_event_watcher.pipeline.matching import (
    FIELD_EXPRESSIONS,
    compile_function,
    occurrence_item,
    regarding_item,
)
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence

OwnerLookup = Callable[[Occurrence], str | None]
NodeLookup = Callable[[Occurrence], str | None]
"""The Node a Pod occurrence's Pod runs on, from the object cache (None: not known)."""
"""Returns the owning workload's name (e.g. from enrichment's owner chain), or None."""

# Controllers name generated objects with k8s.io/apimachinery's rand.String /
# SafeEncodeString alphabet: no vowels, no 0, 1 or 3 (so no accidental words).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
# The template hash must be in the safe alphabet (so `node-exporter-x7k2p` is not read as
# a Deployment pod); the pod suffix after it is taken more loosely.
_DEPLOYMENT_POD = re.compile(rf"^(.+)-{_SAFE}{{6,10}}-[a-z0-9]{{5}}$")  # web-7d4b9c5f8-x2k1p
_REPLICASET = re.compile(rf"^(.+)-{_SAFE}{{6,10}}$")  # web-7d4b9c5f8
_RANDOM_SUFFIX = re.compile(rf"^(.+)-{_SAFE}{{5}}$")  # DaemonSet / Job pods
_CRONJOB_JOB = re.compile(r"^(.+)-\d{8,}$")  # backup-28391234 (scheduled minute)
_ORDINAL = re.compile(r"^(.+)-\d+$")  # StatefulSet pods: db-0


def workload_name(ref: ObjectRef) -> str:
    """The name of the workload an object most likely belongs to.

    `web-7d4b9c5f8-x2k1p` → `web`, `db-2` → `db`, `backup-28391234-x2k1p` → `backup`;
    objects of other kinds, and names that fit no pattern, keep their name, so a whole
    crash-looping rollout becomes one group while unrelated objects stay apart.
    """
    name = ref.name
    if ref.kind == "Pod":
        match = _DEPLOYMENT_POD.match(name) or _RANDOM_SUFFIX.match(name)
        if match:
            base = match.group(1)
            cron = _CRONJOB_JOB.match(base)
            return cron.group(1) if cron else base
        ordinal = _ORDINAL.match(name)
        return ordinal.group(1) if ordinal else name
    if ref.kind == "ReplicaSet":
        match = _REPLICASET.match(name)
        return match.group(1) if match else name
    if ref.kind == "Job":
        cron = _CRONJOB_JOB.match(name)
        return cron.group(1) if cron else name
    return name


_NAMES = {"workload_name": workload_name}


def _expression(name: str) -> str:
    """How a key/group field is read off an Occurrence `o` (matching.FIELD_EXPRESSIONS)."""
    if name in FIELD_EXPRESSIONS:
        return FIELD_EXPRESSIONS[name]
    if name == "owner":
        return f"(owner_of and owner_of(o) or workload_name({occurrence_item('regarding')}))"
    if name.startswith("regarding."):
        attr = name.removeprefix("regarding.")
        if attr in ObjectRef._fields:
            return regarding_item(attr)
    raise ValueError(f"unknown key field {name!r}")


KeyFunc = Callable[[Occurrence], tuple[str, ...]]


def key_function(fields: Sequence[str], owner_of: OwnerLookup | None = None) -> KeyFunc:
    """A function from an occurrence to the tuple of its `fields` values: generated as one
    expression, since it runs once per occurrence on the hot path."""
    body = "(" + "".join(f"{_expression(name)}, " for name in fields) + ")"
    return compile_function(body, _NAMES | {"owner_of": owner_of})
