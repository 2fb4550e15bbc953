"""Mergeable sums of contacts: what a KPI rollup row holds.

`KpiSums` is an aggregate of contacts from which every queue KPI of KPIS.md
is computed for ANY contract formula — any threshold T, any short-abandon
setting, any service-level preset — without a raw scan. It is a commutative
monoid under `+` (`KpiSums.merge` for many) and `-` removes contacts again
(a correction: remove the old version of a contact, add the new one).

Invariants this module holds (and the rollup table must keep):

* **Durations are whole milliseconds, rounded up** (`duration_ms`). For an
  integer T, `wait ≤ T s` holds exactly when `ceil_ms(wait) ≤ 1000·T`, so
  rounding up never moves a contact across an integer-second threshold, and
  every sum is an exact integer (no float drift, `a + b - b == a`). Raw SQL
  that recomputes a figure must use the same rule:
  `ceil(extract(epoch from answered_at - queued_at) * 1000)`.
* **Wait histograms** are kept per outcome, sparse, keyed by the bucket's
  inclusive upper edge in seconds (`wait_edge`). The edges are the *grid*:
  every second 0…3 600 s, every minute up to 86 400 s (1 day), every hour up
  to 2 678 400 s (31 days), then one overflow bucket. Bucket `e` holds the
  waits in `(previous edge, e]`; bucket 0 holds waits of exactly 0. So for
  any threshold on the grid, "wait ≤ T" is a union of whole buckets and
  A_T, Ab_T, Ab_s and their wait sums (each bucket keeps its exact Σ ms)
  are exact. A threshold off the grid (e.g. 3 601 s) is refused
  (`ThresholdNotOnGrid`), never approximated. The grid is versioned
  (`GRID_VERSION`); changing it means rebuilding the rollups.
* **Longest wait** is a maximum, which cannot be subtracted. Each outcome
  keeps its exact max in ms. Removing contacts keeps it exact when the
  removed contacts all waited less, or when the top non-empty bucket's count
  and exact sum pin it down (e.g. one contact left there); otherwise the max
  becomes the tightest upper bound those give, flagged `max_exact = False`.
  The rollup writer then recomputes that one row from its raw contacts
  (`KpiSums.from_contacts`) to restore exactness; a KPI computed from an
  inexact max says it is an upper bound.
* Handling figures (talk, hold, ACW, transfers, FCR flags) exist only for
  answered contacts; a contact still `in_queue` counts only as in queue.
* **FCR by repeat** (KPIS.md: where the source gives no flag, a contact is
  resolved when the same customer has no further contact on the project
  within `fcr_window`): an answered contact without a flag but with a
  customer key counts in `fcr_repeat_known`, and `fcr_repeats` holds, per
  whole number of days d (1…`MAX_FCR_WINDOW_DAYS`), how many of those had
  their next contact within d days but not within d - 1 (`repeat_days`).
  For any window of W whole days, "repeated within W" is the sum over
  d ≤ W: exact, like a threshold on the wait grid.

Cost: reading (`from_row`, fully checked) and merging are linear in the
non-empty buckets, ~20-45 µs of CPU per quarter-hour row; computing every
KPI from a merged KpiSums is ~0.2 ms. So a month from 31 daily rows costs
~1-3 ms, from 2 976 quarter-hour rows ~70-170 ms: read the coarsest grain
that answers the query (intervals only for interval figures and the
service level's mean of interval ratios).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from enum import StrEnum
from itertools import islice
from operator import attrgetter, ge
from typing import Final

GRID_VERSION: Final = 1
LAST_SECOND_EDGE: Final = 3_600
LAST_MINUTE_EDGE: Final = 86_400
LAST_HOUR_EDGE: Final = 31 * 86_400
# Larger than every grid edge and than any threshold; fits a PostgreSQL int4.
OVERFLOW_EDGE: Final = 2_147_483_647

_MS_LAST_SECOND: Final = LAST_SECOND_EDGE * 1000
_MS_LAST_MINUTE: Final = LAST_MINUTE_EDGE * 1000
_MS_LAST_HOUR: Final = LAST_HOUR_EDGE * 1000


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMEOUT = "timeout"
    EXIT_KEY = "exit_key"
    EXIT_EMPTY = "exit_empty"
    OVERFLOW = "overflow"
    TRANSFERRED_OUT = "transferred_out"
    IN_QUEUE = "in_queue"


# Outcomes that end a contact's time in queue, in storage order (the index is
# the `smallint` code in the rollup row: never reorder, only append).
FINAL_OUTCOMES: Final[tuple[Outcome, ...]] = (
    Outcome.ANSWERED,
    Outcome.ABANDONED,
    Outcome.TIMEOUT,
    Outcome.EXIT_KEY,
    Outcome.EXIT_EMPTY,
    Outcome.OVERFLOW,
    Outcome.TRANSFERRED_OUT,
)
OTHER_EXITS: Final[tuple[Outcome, ...]] = FINAL_OUTCOMES[2:]
# The exits a contract may count as abandons ("timeouts and key exits"): the
# customer left unserved. Overflow and transfer out route the contact on.
UNSERVED_EXITS: Final[tuple[Outcome, ...]] = (
    Outcome.TIMEOUT,
    Outcome.EXIT_KEY,
    Outcome.EXIT_EMPTY,
)
_N_COLUMNS: Final = tuple(f"n_{o.value}" for o in FINAL_OUTCOMES)
# The longest FCR window a contract may set (contracts: `fcr_window_days`); a
# further contact later than this is no repeat for any window.
MAX_FCR_WINDOW_DAYS: Final = 90

Duration = int | float | Decimal | timedelta


class InvalidContact(ValueError):
    """A contact's facts contradict each other or KPIS.md."""


class ThresholdNotOnGrid(ValueError):
    """A threshold the wait histograms cannot answer exactly."""


class InvalidRollup(ValueError):
    """Subtracting contacts never added, or a stored row that is inconsistent."""


def duration_ms(value: Duration) -> int:
    """Whole milliseconds, rounded up; refuses negative, NaN, infinite and bool.

    Floats are read by their shortest decimal repr (0.1 is 100 ms, not
    100.000000000000005… rounded up to 101).
    """
    if isinstance(value, bool):
        raise InvalidContact("a duration is a number of seconds, not a bool")
    if isinstance(value, int):
        ms = value * 1000
    elif isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        ms = -(-us // 1000)
    else:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidContact(f"duration {value!r} is not finite")
            dec = Decimal(repr(value))
        else:
            dec = value
        try:
            ms = int((dec * 1000).to_integral_value(rounding=ROUND_CEILING))
        except (InvalidOperation, ValueError, OverflowError) as exc:
            raise InvalidContact(f"duration {value!r} is not a finite number") from exc
    if ms < 0:
        raise InvalidContact(f"duration {value!r} is negative")
    return ms


def repeat_days(gap: timedelta) -> int | None:
    """The whole days (rounded up, at least 1) from a contact to its customer's next
    contact on the project, or None past `MAX_FCR_WINDOW_DAYS`: the next contact is
    within a window of W days exactly when this is ≤ W. The SQL that stores it
    (`contacts.repeat_days`, service/contacts/ingest.py) follows the same rule."""
    if gap < timedelta(0):
        raise InvalidContact(f"the next contact comes before this one ({gap})")
    us = (gap.days * 86_400 + gap.seconds) * 1_000_000 + gap.microseconds
    days = max(1, -(-us // 86_400_000_000))
    return days if days <= MAX_FCR_WINDOW_DAYS else None


def wait_edge(ms: int) -> int:
    """The grid bucket (its inclusive upper edge, in seconds) holding a wait of `ms`."""
    if ms <= _MS_LAST_SECOND:
        return -(-ms // 1000)
    if ms <= _MS_LAST_MINUTE:
        return -(-ms // 60_000) * 60
    if ms <= _MS_LAST_HOUR:
        return -(-ms // 3_600_000) * 3600
    return OVERFLOW_EDGE


def previous_edge(edge: int) -> int:
    """The grid point below `edge` (-1 below bucket 0): the bucket is (previous, edge]."""
    if edge == OVERFLOW_EDGE:
        return LAST_HOUR_EDGE
    if edge <= LAST_SECOND_EDGE:
        return edge - 1
    if edge <= LAST_MINUTE_EDGE:
        return edge - 60
    return edge - 3600


# Every bucket edge, and each bucket's least and greatest possible wait in ms,
# for the set-wise checks of `from_row`.
_EDGES: Final[frozenset[int]] = frozenset(
    (
        *range(LAST_SECOND_EDGE + 1),
        *range(LAST_SECOND_EDGE + 60, LAST_MINUTE_EDGE + 1, 60),
        *range(LAST_MINUTE_EDGE + 3600, LAST_HOUR_EDGE + 1, 3600),
        OVERFLOW_EDGE,
    )
)
_LOW_MS: Final[dict[int, int]] = {e: previous_edge(e) * 1000 + 1 if e else 0 for e in _EDGES}
_HIGH_MS: Final[dict[int, int]] = {e: e * 1000 for e in _EDGES} | {OVERFLOW_EDGE: 1 << 80}


def _bucket_sum_fits(edge: int, count: int, sum_ms: int) -> bool:
    """Whether `count` waits in bucket `edge` can sum to `sum_ms`."""
    if count < 0:
        return False
    return count * _LOW_MS[edge] <= sum_ms <= count * _HIGH_MS[edge]


def is_on_grid(seconds: int) -> bool:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return False
    if seconds <= LAST_SECOND_EDGE:
        return True
    if seconds <= LAST_MINUTE_EDGE:
        return seconds % 60 == 0
    return seconds <= LAST_HOUR_EDGE and seconds % 3600 == 0


def check_threshold(seconds: int, name: str = "threshold_s") -> int:
    """Refuse a threshold the histograms cannot answer exactly; return it."""
    if not is_on_grid(seconds):
        raise ThresholdNotOnGrid(
            f"{name} = {seconds!r}: exact thresholds are whole seconds up to "
            f"{LAST_SECOND_EDGE} s, whole minutes up to {LAST_MINUTE_EDGE} s and "
            f"whole hours up to {LAST_HOUR_EDGE} s"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class WaitHistogram:
    """Waits of one outcome: sparse buckets `edge → count` and `edge → Σ ms`.

    Never mutated once built (KpiSums shares them between results).
    """

    counts: Mapping[int, int] = field(default_factory=dict)
    sums_ms: Mapping[int, int] = field(default_factory=dict)
    total: int = 0
    total_ms: int = 0
    max_ms: int | None = None
    max_exact: bool = True

    def count_in(self, above: int, up_to: int) -> int:
        """Contacts with `above < wait ≤ up_to` (grid points; above = -1 for all)."""
        if above < 0 and up_to >= OVERFLOW_EDGE:
            return self.total
        return sum(c for e, c in self.counts.items() if above < e <= up_to)

    def sum_ms_in(self, above: int, up_to: int) -> int:
        if above < 0 and up_to >= OVERFLOW_EDGE:
            return self.total_ms
        return sum(s for e, s in self.sums_ms.items() if above < e <= up_to)


_EMPTY_HIST: Final = WaitHistogram()


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """What one contact contributes to the KPIs (a contacts row, reduced).

    Waits and handling durations are seconds (int, float, Decimal) or
    timedeltas; see `duration_ms` for the rounding.
    """

    outcome: Outcome | str
    wait_s: Duration | None = None
    talk_s: Duration = 0
    hold_s: Duration = 0
    hold_count: int = 0
    acw_s: Duration = 0
    transferred: bool = False
    resolved_first_contact: bool | None = None
    csat: int | None = None
    nps: int | None = None
    # FCR by repeat, for an answered contact without a flag: None when it has no
    # customer key (it cannot be judged); 0 when the customer made no further
    # contact on the project within MAX_FCR_WINDOW_DAYS; else `repeat_days`.
    fcr_repeat: int | None = None


_SCALARS: Final = (
    "in_queue",
    "talk_ms",
    "hold_ms",
    "acw_ms",
    "held",
    "hold_count",
    "transferred",
    "fcr_resolved",
    "fcr_known",
    "fcr_repeat_known",
)


class _Slot:
    """One outcome's histogram while it is being built."""

    __slots__ = ("counts", "max_exact", "max_ms", "sums", "total", "total_ms")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.sums: dict[int, int] = {}
        self.total = 0
        self.total_ms = 0
        self.max_ms: int | None = None
        self.max_exact = True

    def raise_max(self, value: int, exact: bool) -> None:
        if self.max_ms is None or value > self.max_ms:
            self.max_ms, self.max_exact = value, exact
        elif value == self.max_ms:
            # the true maximum is this value if either side knows it exactly
            self.max_exact = self.max_exact or exact


class _Accumulator:
    """Mutable builder behind `+`, `-`, `merge` and `from_contacts`."""

    __slots__ = (
        "acw_ms",
        "csat",
        "fcr_known",
        "fcr_repeat_known",
        "fcr_repeats",
        "fcr_resolved",
        "held",
        "hold_count",
        "hold_ms",
        "in_queue",
        "nps",
        "slots",
        "talk_ms",
        "transferred",
    )

    def __init__(self) -> None:
        self.slots: dict[Outcome, _Slot] = {}
        self.in_queue = 0
        self.talk_ms = 0
        self.hold_ms = 0
        self.acw_ms = 0
        self.held = 0
        self.hold_count = 0
        self.transferred = 0
        self.fcr_resolved = 0
        self.fcr_known = 0
        self.fcr_repeat_known = 0
        self.fcr_repeats: dict[int, int] = {}
        self.csat = [0] * 5
        self.nps = [0] * 11

    def _slot(self, outcome: Outcome) -> _Slot:
        slot = self.slots.get(outcome)
        if slot is None:
            slot = self.slots[outcome] = _Slot()
        return slot

    def add_contact(self, facts: ContactFacts) -> None:
        try:
            outcome = Outcome(facts.outcome)
        except ValueError as exc:
            raise InvalidContact(f"unknown outcome {facts.outcome!r}") from exc
        if outcome is Outcome.IN_QUEUE:
            # Not known yet: enters no figure until it is (KPIS.md).
            self.in_queue += 1
            return
        if facts.wait_s is None:
            raise InvalidContact(f"an {outcome} contact needs its wait")
        wait = duration_ms(facts.wait_s)
        talk = duration_ms(facts.talk_s)
        hold = duration_ms(facts.hold_s)
        acw = duration_ms(facts.acw_s)
        hold_count = facts.hold_count
        if isinstance(hold_count, bool) or not isinstance(hold_count, int) or hold_count < 0:
            raise InvalidContact(f"hold_count {hold_count!r} is not a count")
        if outcome is not Outcome.ANSWERED and (
            talk
            or hold
            or acw
            or hold_count
            or facts.transferred
            or facts.resolved_first_contact is not None
            or facts.fcr_repeat is not None
        ):
            raise InvalidContact(
                f"an {outcome} contact has no talk, hold, ACW, transfer or FCR flag"
            )
        repeat = facts.fcr_repeat
        if repeat is not None and (
            isinstance(repeat, bool)
            or repeat not in range(MAX_FCR_WINDOW_DAYS + 1)
            or facts.resolved_first_contact is not None
        ):
            raise InvalidContact(
                f"fcr_repeat {repeat!r}: 0 to {MAX_FCR_WINDOW_DAYS} days, for a contact without a flag"
            )
        csat, nps = facts.csat, facts.nps
        if csat is not None and (isinstance(csat, bool) or csat not in range(1, 6)):
            raise InvalidContact(f"csat {csat!r} is not on the 1 to 5 scale")
        if nps is not None and (isinstance(nps, bool) or nps not in range(11)):
            raise InvalidContact(f"nps {nps!r} is not on the 0 to 10 scale")

        slot = self._slot(outcome)
        edge = wait_edge(wait)
        slot.counts[edge] = slot.counts.get(edge, 0) + 1
        slot.sums[edge] = slot.sums.get(edge, 0) + wait
        slot.total += 1
        slot.total_ms += wait
        slot.raise_max(wait, True)
        if outcome is Outcome.ANSWERED:
            self.talk_ms += talk
            self.hold_ms += hold
            self.acw_ms += acw
            self.held += hold > 0
            self.hold_count += hold_count
            self.transferred += bool(facts.transferred)
            if facts.resolved_first_contact is not None:
                self.fcr_known += 1
                self.fcr_resolved += bool(facts.resolved_first_contact)
            elif repeat is not None:
                self.fcr_repeat_known += 1
                if repeat:
                    self.fcr_repeats[repeat] = self.fcr_repeats.get(repeat, 0) + 1
        if csat is not None:
            self.csat[csat - 1] += 1
        if nps is not None:
            self.nps[nps] += 1

    def add_waits(self, other: KpiSums) -> None:
        slots = self.slots
        for outcome, h in other.waits.items():
            slot = slots.get(outcome)
            if slot is None:
                slot = slots[outcome] = _Slot()
            counts, sums = slot.counts, slot.sums
            if not counts:
                counts.update(h.counts)
                sums.update(h.sums_ms)
            else:
                get = counts.get
                for e, c in h.counts.items():
                    counts[e] = get(e, 0) + c
                get = sums.get
                for e, ms in h.sums_ms.items():
                    sums[e] = get(e, 0) + ms
            slot.total += h.total
            slot.total_ms += h.total_ms
            if h.max_ms is not None:
                slot.raise_max(h.max_ms, h.max_exact)

    def add_all(self, items: Sequence[KpiSums]) -> None:
        for item in items:
            self.add_waits(item)
        # The scalars column by column: C loops, not one Python step per item.
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + sum(map(attrgetter(name), items)))
        repeats = self.fcr_repeats
        for item in items:
            for d, n in item.fcr_repeats.items():
                repeats[d] = repeats.get(d, 0) + n
        if items:
            self.csat = [
                sum(col) for col in zip(self.csat, *(x.csat_counts for x in items), strict=True)
            ]
            self.nps = [
                sum(col) for col in zip(self.nps, *(x.nps_counts for x in items), strict=True)
            ]

    def subtract(self, other: KpiSums) -> None:
        for outcome, g in other.waits.items():
            slot = self._slot(outcome)
            counts, sums = slot.counts, slot.sums
            for e, c in g.counts.items():
                left = counts.get(e, 0) - c
                left_ms = sums.get(e, 0) - g.sums_ms[e]
                if not _bucket_sum_fits(e, left, left_ms):
                    raise InvalidRollup(
                        f"removing {outcome} contacts with waits near {e} s that were never added"
                    )
                if left:
                    counts[e], sums[e] = left, left_ms
                else:
                    del counts[e], sums[e]
            slot.total -= g.total
            slot.total_ms -= g.total_ms
            if not counts:
                slot.max_ms, slot.max_exact = None, True
            elif slot.max_ms is None or g.max_ms is None:
                raise InvalidRollup(f"{outcome} histogram without a maximum")
            elif g.max_ms < slot.max_ms:
                pass  # every removed wait was shorter: the longest one stays
            else:
                # The longest wait may have left. The top bucket's c waits lie in
                # (low, edge] and sum to s: the longest is at least ceil(s / c) and
                # at most s - (c - 1)·low, the edge and the old maximum.
                top = max(counts)
                c, s = counts[top], sums[top]
                low = previous_edge(top) * 1000 + 1 if top else 0
                high = min(slot.max_ms, s - (c - 1) * low)
                if top != OVERFLOW_EDGE:
                    high = min(high, top * 1000)
                slot.max_ms, slot.max_exact = high, high == -(-s // c)
        scalars = {k: getattr(self, k) - getattr(other, k) for k in _SCALARS}
        negative = [k for k, v in scalars.items() if v < 0]
        csat = [a - b for a, b in zip(self.csat, other.csat_counts, strict=True)]
        nps = [a - b for a, b in zip(self.nps, other.nps_counts, strict=True)]
        repeats = dict(self.fcr_repeats)
        for d, n in other.fcr_repeats.items():
            repeats[d] = repeats.get(d, 0) - n
        if min(repeats.values(), default=0) < 0:
            negative.append("fcr_repeats")
        if negative or min(csat) < 0 or min(nps) < 0:
            raise InvalidRollup(
                f"removing more than was added ({', '.join(negative) or 'surveys'})"
            )
        for k, v in scalars.items():
            setattr(self, k, v)
        self.fcr_repeats = {d: n for d, n in repeats.items() if n}
        self.csat, self.nps = csat, nps

    def build(self) -> KpiSums:
        waits = {
            outcome: WaitHistogram(
                slot.counts, slot.sums, slot.total, slot.total_ms, slot.max_ms, slot.max_exact
            )
            for outcome in FINAL_OUTCOMES
            if (slot := self.slots.get(outcome)) is not None and slot.counts
        }
        # The builder is spent: its dicts now belong to the frozen result.
        self.slots = {}
        return KpiSums(
            waits=waits,
            in_queue=self.in_queue,
            talk_ms=self.talk_ms,
            hold_ms=self.hold_ms,
            acw_ms=self.acw_ms,
            held=self.held,
            hold_count=self.hold_count,
            transferred=self.transferred,
            fcr_resolved=self.fcr_resolved,
            fcr_known=self.fcr_known,
            fcr_repeat_known=self.fcr_repeat_known,
            fcr_repeats={d: n for d, n in self.fcr_repeats.items() if n},
            csat_counts=tuple(self.csat),
            nps_counts=tuple(self.nps),
        )


@dataclass(frozen=True, slots=True)
class KpiSums:
    """The mergeable aggregate of a set of contacts (see the module docstring).

    Build with `from_contact`/`from_contacts`, combine with `+`, `-` and
    `merge`, store with `to_row`/`from_row`. Equal contact multisets give
    equal sums, whatever the order they were added in.
    """

    waits: Mapping[Outcome, WaitHistogram] = field(default_factory=dict)
    in_queue: int = 0
    talk_ms: int = 0
    hold_ms: int = 0
    acw_ms: int = 0
    held: int = 0  # answered contacts with hold > 0
    hold_count: int = 0  # number of holds
    transferred: int = 0  # transferred after answer
    fcr_resolved: int = 0
    fcr_known: int = 0  # answered contacts whose source gave an FCR flag
    # answered contacts without a flag, with a customer key: FCR by repeat
    fcr_repeat_known: int = 0
    fcr_repeats: Mapping[int, int] = field(default_factory=dict)  # repeat_days -> contacts
    csat_counts: tuple[int, ...] = (0,) * 5  # responses scoring 1..5
    nps_counts: tuple[int, ...] = (0,) * 11  # responses scoring 0..10

    # ---- building -----------------------------------------------------------

    @classmethod
    def from_contact(cls, facts: ContactFacts) -> KpiSums:
        acc = _Accumulator()
        acc.add_contact(facts)
        return acc.build()

    @classmethod
    def from_contacts(cls, contacts: Iterable[ContactFacts]) -> KpiSums:
        """One pass over raw contacts (how a rollup row is rebuilt)."""
        acc = _Accumulator()
        for facts in contacts:
            acc.add_contact(facts)
        return acc.build()

    @classmethod
    def merge(cls, items: Iterable[KpiSums]) -> KpiSums:
        """Σ items in one pass (linear; `sum()` with `+` would copy each step)."""
        acc = _Accumulator()
        acc.add_all(items if isinstance(items, Sequence) else list(items))
        return acc.build()

    def __add__(self, other: KpiSums) -> KpiSums:
        if not isinstance(other, KpiSums):
            return NotImplemented
        return KpiSums.merge((self, other))

    def __sub__(self, other: KpiSums) -> KpiSums:
        """Remove contacts (a correction); `InvalidRollup` if they were never added."""
        if not isinstance(other, KpiSums):
            return NotImplemented
        acc = _Accumulator()
        acc.add_all((self,))
        acc.subtract(other)
        return acc.build()

    # ---- reading ------------------------------------------------------------

    def hist(self, outcome: Outcome) -> WaitHistogram:
        return self.waits.get(outcome, _EMPTY_HIST)

    def count(self, outcome: Outcome) -> int:
        if outcome is Outcome.IN_QUEUE:
            return self.in_queue
        return self.hist(outcome).total

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY

    # ---- storage ------------------------------------------------------------

    def to_row(self) -> dict[str, int | list[int] | list[bool]]:
        """Columns of a rollup row: fixed scalars plus sparse `int[]` histograms.

        Proposed PostgreSQL types: `grid_version smallint`, the `n_*` and
        scalar counts `integer`, the `*_ms` sums `bigint`; `wait_outcome
        smallint[]`, `wait_edge_s integer[]`, `wait_count integer[]`,
        `wait_sum_ms bigint[]` (parallel arrays, sorted by outcome code then
        edge; one entry per non-empty bucket); `wait_max_ms bigint[7]`
        (-1 = no contact) and `wait_max_exact boolean[7]` indexed by outcome
        code; `csat_counts integer[5]`, `nps_counts integer[11]`. The `n_*`
        outcome counts repeat the histogram totals so that volume figures
        are a plain SQL `sum()`; `from_row` checks they agree.
        """
        outcome_codes: list[int] = []
        edges: list[int] = []
        counts: list[int] = []
        sums: list[int] = []
        max_ms: list[int] = []
        max_exact: list[bool] = []
        row: dict[str, int | list[int] | list[bool]] = {"grid_version": GRID_VERSION}
        for code, outcome in enumerate(FINAL_OUTCOMES):
            h = self.hist(outcome)
            row[f"n_{outcome.value}"] = h.total
            for e in sorted(h.counts):
                outcome_codes.append(code)
                edges.append(e)
                counts.append(h.counts[e])
                sums.append(h.sums_ms[e])
            max_ms.append(-1 if h.max_ms is None else h.max_ms)
            max_exact.append(h.max_exact)
        row.update(
            n_in_queue=self.in_queue,
            wait_outcome=outcome_codes,
            wait_edge_s=edges,
            wait_count=counts,
            wait_sum_ms=sums,
            wait_max_ms=max_ms,
            wait_max_exact=max_exact,
            talk_ms=self.talk_ms,
            hold_ms=self.hold_ms,
            acw_ms=self.acw_ms,
            held=self.held,
            hold_count=self.hold_count,
            transferred=self.transferred,
            fcr_resolved=self.fcr_resolved,
            fcr_known=self.fcr_known,
            fcr_repeat_known=self.fcr_repeat_known,
            fcr_repeat_days=sorted(self.fcr_repeats),
            fcr_repeat_count=[self.fcr_repeats[d] for d in sorted(self.fcr_repeats)],
            csat_counts=list(self.csat_counts),
            nps_counts=list(self.nps_counts),
        )
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> KpiSums:
        """Read a stored row back, checking every invariant (`InvalidRollup`).

        The checks are set-wise (C loops), so reading thousands of rows stays
        cheap: arrays of integers, sorted unique (outcome, edge) pairs, edges
        on the grid, positive counts, each bucket's sum possible for its
        count and range, `n_*` equal to the histogram totals, each maximum
        inside its outcome's top bucket.
        """
        try:
            return cls._from_row(row)
        except KeyError as exc:
            raise InvalidRollup(f"rollup row lacks {exc.args[0]!r}") from exc

    @classmethod
    def _from_row(cls, row: Mapping[str, object]) -> KpiSums:
        def scalar(name: str) -> int:
            v = row[name]
            if type(v) is not int or v < 0:
                raise InvalidRollup(f"{name} = {v!r} is not a count")
            return v

        def ints(name: str, length: int | None = None) -> list[int]:
            v = row[name]
            if type(v) is list:
                out: list[int] = v
            elif isinstance(v, Sequence) and not isinstance(v, str | bytes):
                out = list(v)
            else:
                raise InvalidRollup(f"{name} is not an array")
            if out and not {*map(type, out)} <= {int}:
                raise InvalidRollup(f"{name} holds a non-integer")
            if length is not None and len(out) != length:
                raise InvalidRollup(f"{name} has {len(out)} entries, not {length}")
            return out

        if row["grid_version"] != GRID_VERSION:
            raise InvalidRollup(
                f"grid_version {row['grid_version']!r}: this code reads {GRID_VERSION}; rebuild"
            )
        codes, edges = ints("wait_outcome"), ints("wait_edge_s")
        counts, sums = ints("wait_count"), ints("wait_sum_ms")
        maxes = ints("wait_max_ms", len(FINAL_OUTCOMES))
        exact = row["wait_max_exact"]
        if not isinstance(exact, list | tuple) or len(exact) != len(FINAL_OUTCOMES):
            raise InvalidRollup("wait_max_exact is not one flag per outcome")
        n = len(codes)
        if not (len(edges) == len(counts) == len(sums) == n):
            raise InvalidRollup("histogram arrays differ in length")
        totals = [0] * len(FINAL_OUTCOMES)
        waits: dict[Outcome, WaitHistogram] = {}
        if n:
            keys = list(zip(codes, edges, strict=True))
            # Strictly increasing = sorted and unique (one C loop, no set and sort).
            if any(map(ge, keys, islice(keys, 1, None))):
                raise InvalidRollup("histogram entries are not sorted and unique")
            if not (codes[0] >= 0 and codes[-1] < len(FINAL_OUTCOMES)):
                raise InvalidRollup("unknown outcome code")
            if not _EDGES.issuperset(edges):
                raise InvalidRollup(f"edges off the grid: {sorted(set(edges) - _EDGES)[:5]}")
            if min(counts) <= 0:
                raise InvalidRollup("a histogram bucket with no contact")
            low, high = _LOW_MS, _HIGH_MS
            bad = [
                e
                for e, c, ms in zip(edges, counts, sums, strict=True)
                if not c * low[e] <= ms <= c * high[e]
            ]
            if bad:
                raise InvalidRollup(f"bucket {bad[0]} s: its waits cannot sum to the stored ms")
            lo = 0
            while lo < n:  # one run of entries per outcome present
                code = codes[lo]
                hi = bisect_right(codes, code, lo)
                top, m = edges[hi - 1], maxes[code]
                if not low[top] <= m <= high[top]:
                    raise InvalidRollup(
                        f"{FINAL_OUTCOMES[code]} max wait {m} ms off its top bucket"
                    )
                run_counts = counts[lo:hi]
                totals[code] = total = sum(run_counts)
                waits[FINAL_OUTCOMES[code]] = WaitHistogram(
                    dict(zip(edges[lo:hi], run_counts, strict=True)),
                    dict(zip(edges[lo:hi], sums[lo:hi], strict=True)),
                    total,
                    sum(sums[lo:hi]),
                    m,
                    bool(exact[code]),
                )
                lo = hi
        if [scalar(c) for c in _N_COLUMNS] != totals:
            raise InvalidRollup("the n_* counts disagree with the histograms")
        if any(m != -1 for m, t in zip(maxes, totals, strict=True) if not t):
            raise InvalidRollup("a max wait for an outcome without contacts")
        csat, nps = ints("csat_counts", 5), ints("nps_counts", 11)
        if min(csat) < 0 or min(nps) < 0:
            raise InvalidRollup("negative survey count")
        repeat_days, repeat_counts = ints("fcr_repeat_days"), ints("fcr_repeat_count")
        if len(repeat_days) != len(repeat_counts):
            raise InvalidRollup("fcr_repeat_days and fcr_repeat_count differ in length")
        if repeat_days and (
            any(map(ge, repeat_days, islice(repeat_days, 1, None)))
            or repeat_days[0] < 1
            or repeat_days[-1] > MAX_FCR_WINDOW_DAYS
            or min(repeat_counts) <= 0
        ):
            raise InvalidRollup("fcr repeats are not sorted positive counts of 1 to 90 days")
        repeat_known = scalar("fcr_repeat_known")
        if sum(repeat_counts) > repeat_known:
            raise InvalidRollup("more FCR repeats than contacts judged by repeat")
        return cls(
            waits=waits,
            in_queue=scalar("n_in_queue"),
            talk_ms=scalar("talk_ms"),
            hold_ms=scalar("hold_ms"),
            acw_ms=scalar("acw_ms"),
            held=scalar("held"),
            hold_count=scalar("hold_count"),
            transferred=scalar("transferred"),
            fcr_resolved=scalar("fcr_resolved"),
            fcr_known=scalar("fcr_known"),
            fcr_repeat_known=repeat_known,
            fcr_repeats=dict(zip(repeat_days, repeat_counts, strict=True)),
            csat_counts=tuple(csat),
            nps_counts=tuple(nps),
        )


_EMPTY: Final = KpiSums()
