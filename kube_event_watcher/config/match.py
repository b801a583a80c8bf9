"""Match rules: the field regexes shared by filters, thresholds and (later) routes."""

from __future__ import annotations

from kube_event_watcher.config.model import Regex, StrictModel


class MatchRule(StrictModel):
    """Regular expressions (full match) on an occurrence's fields; all given must match."""

    cluster: Regex | None = None
    namespace: Regex | None = None
    kind: Regex | None = None
    name: Regex | None = None
    reason: Regex | None = None
    type: Regex | None = None
    reporting_controller: Regex | None = None
    note: Regex | None = None
