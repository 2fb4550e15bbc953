"""What every importer reports besides its records: per-file statistics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Epoch bounds for plausibility: a timestamp outside 1990-2100 is a broken
# field, not a contact (and would overflow datetime arithmetic downstream).
MIN_EPOCH = 631_152_000
MAX_EPOCH = 4_102_444_800


def utc_from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(slots=True)
class ImportStats:
    """Counts for one parsed file (or stream), so every input item is accounted for.

    Every item read (`items`: physical lines of a `queue_log`, data rows of
    a table export or CSV, top-level JSON values and list elements of a
    Connect file) lands in exactly one bucket:

    * `blank`: empty lines;
    * `used`: applied (by event name or record kind);
    * `ignored`: known and ignored on purpose (by event name or kind);
    * `unknown`: not known to the parser (by event name or kind), reported;
    * `rejected`: known but not applicable (an event for a call that already
      ended, an invalid field); each has a `ParseIssue`;
    * `malformed`: not parseable at all (too few fields, bad timestamp,
      invalid JSON); each has a `ParseIssue`;
    * `skipped_overlap`: already imported before (log rotation overlap).

    `balanced()` checks exactly that.
    """

    file: str
    items: int = 0
    blank: int = 0
    used: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    skipped_overlap: int = 0
    records: int = 0
    """Contact records produced (corrections included)."""
    corrections: int = 0
    """Records produced again with a newer `source_version` (e.g. timeout → overflow)."""
    superseded: int = 0
    """Input records dropped because a newer version of the same contact was read."""
    agent_events: int = 0
    calls_open: int = 0
    """Calls still waiting or talking at the end of the input (held in the state)."""
    reconstructed: int = 0
    """Calls whose start was before the input (rebuilt from logged durations)."""
    dropped_stale: int = 0

    @property
    def events(self) -> int:
        """Items used, ignored on purpose or unknown."""
        return sum(self.used.values()) + sum(self.ignored.values()) + sum(self.unknown.values())

    def balanced(self) -> bool:
        return self.items == (
            self.blank
            + self.events
            + sum(self.rejected.values())
            + self.malformed
            + self.skipped_overlap
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "items": self.items,
            "blank": self.blank,
            "used": dict(self.used),
            "ignored": dict(self.ignored),
            "unknown": dict(self.unknown),
            "rejected": dict(self.rejected),
            "malformed": self.malformed,
            "skipped_overlap": self.skipped_overlap,
            "records": self.records,
            "corrections": self.corrections,
            "superseded": self.superseded,
            "agent_events": self.agent_events,
            "calls_open": self.calls_open,
            "reconstructed": self.reconstructed,
            "dropped_stale": self.dropped_stale,
        }
