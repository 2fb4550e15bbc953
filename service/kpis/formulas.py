"""The KPI formulas of KPIS.md, computed from `KpiSums` and a contract's terms.

One definition per KPI, used by the API, the portal, the PDF reports and the
SLA engine. The rules every formula here obeys:

* **Short abandons** (abandoned after waiting ≤ `short_abandon_s`; 0 turns
  the rule off) are removed from O and Ab before every formula and reported
  on their own (`short_abandons`). When the contract counts timeouts and key
  exits as abandons they are abandons everywhere, short-abandon rule
  included.
* **"Within T" is inclusive**: a wait of exactly T seconds is within T.
* **A zero denominator is "no data"**: `value is None`, never 0 and never 1.
* **Every result names its formula**, as text for people ("A_T / (A + Ab),
  T = 20 s, short abandons ≤ 5 s excluded") and as a machine form (a JSON
  mapping; for the service level it is the formula object itself, which
  `ServiceLevelFormula.from_mapping` reads back).
* Thresholds must lie on the histogram grid of `sums.py` (every second up
  to an hour, every minute up to a day, every hour up to 31 days); anything
  else is refused rather than approximated.

Ratios are floats computed by one correctly rounded division of exact
integers; `numerator` and `denominator` carry the integers (durations in
ms) so that the SLA engine can reason exactly ("the next 412 offered calls
must all be answered within 20 s").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Literal, cast, get_args

from service.kpis.sums import (
    MAX_FCR_WINDOW_DAYS,
    OTHER_EXITS,
    UNSERVED_EXITS,
    KpiSums,
    Outcome,
    ThresholdNotOnGrid,
    check_threshold,
)

Numerator = Literal["answered_within", "handled_within"]
Aggregation = Literal["ratio_of_sums", "mean_of_intervals"]
DenominatorTerm = Literal["answered", "abandoned_after_t", "abandoned_within_t", "other_exits"]
JsonValue = str | int | float | bool | None | list[str]

MINUS: Final = "\u2212"  # the minus sign people read in "A + Ab - Ab_T" (U+2212)
DEFAULT_THRESHOLD_S: Final = 20
DEFAULT_SHORT_ABANDON_S: Final = 5


class Unit(StrEnum):
    RATIO = "ratio"  # 0..1 (a percentage for people)
    SECONDS = "seconds"
    COUNT = "count"
    SCORE = "score"  # CSAT mean 1..5, NPS -100..100
    PER_HOUR = "per_hour"


class FormulaError(ValueError):
    """A formula object or preset that KPIS.md does not allow."""


class ThresholdOffGrid(FormulaError, ThresholdNotOnGrid):
    """A threshold the histograms cannot answer exactly (both error families)."""


@dataclass(frozen=True, slots=True)
class KpiValue:
    """One KPI figure with the formula that produced it.

    `value` is None when there is no data (a zero denominator). For ratios
    `value = numerator / denominator`; for seconds the numerator is in ms
    (`value = numerator / denominator / 1000`); for NPS `value = 100 ·
    numerator / denominator` with numerator = promoters - detractors.
    `upper_bound` marks a longest wait known only as a bound after a
    correction (see sums.py).
    """

    kpi: str
    value: float | None
    unit: Unit
    formula: str
    machine: Mapping[str, JsonValue]
    numerator: float | None = None
    denominator: float | None = None
    upper_bound: bool = False

    @property
    def no_data(self) -> bool:
        return self.value is None


# ---- the service-level formula object -----------------------------------------

_PRESET_SHAPES: Final[dict[str, tuple[Numerator, bool, bool, bool, bool]]] = {
    # name: (numerator, answered, abandoned_after_t, abandoned_within_t, other_exits)
    "SL1": ("answered_within", True, True, True, False),  # A_T / (A + Ab)
    "SL2": ("answered_within", True, True, False, False),  # A_T / (A + Ab - Ab_T)
    "SL3": ("answered_within", True, False, False, False),  # A_T / A
    "SL4": ("handled_within", True, True, True, False),  # (A_T + Ab_T) / (A + Ab)
}
PRESETS: Final = tuple(_PRESET_SHAPES)
_TERMS: Final[tuple[DenominatorTerm, ...]] = get_args(DenominatorTerm)
_FIELDS: Final = frozenset(
    {"preset", "threshold_s", "numerator", "denominator", "short_abandon_s", "aggregation"}
)


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormulaError(f"{name} must be a whole number of seconds, not {value!r}")
    try:
        return check_threshold(value, name)
    except ThresholdNotOnGrid as exc:
        raise ThresholdOffGrid(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class ServiceLevelFormula:
    """A contract's service-level formula (KPIS.md, "Service level").

    The default is SL1 with T = 20 s and short abandons ≤ 5 s excluded.
    """

    threshold_s: int = DEFAULT_THRESHOLD_S
    numerator: Numerator = "answered_within"
    answered: bool = True
    abandoned_after_t: bool = True
    abandoned_within_t: bool = True
    other_exits: bool = False
    short_abandon_s: int = DEFAULT_SHORT_ABANDON_S
    aggregation: Aggregation = "ratio_of_sums"

    def __post_init__(self) -> None:
        _check_int(self.threshold_s, "threshold_s")
        _check_int(self.short_abandon_s, "short_abandon_s")
        if self.numerator not in get_args(Numerator):
            raise FormulaError(f"numerator must be one of {get_args(Numerator)}")
        if self.aggregation not in get_args(Aggregation):
            raise FormulaError(f"aggregation must be one of {get_args(Aggregation)}")
        # A numerator outside its denominator could exceed 100 %.
        if not self.answered:
            raise FormulaError("the denominator must count answered contacts (A)")
        if self.numerator == "handled_within" and not self.abandoned_within_t:
            raise FormulaError(
                "handled_within counts Ab_T as met: the denominator must count abandoned_within_t"
            )

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        threshold_s: int = DEFAULT_THRESHOLD_S,
        short_abandon_s: int = DEFAULT_SHORT_ABANDON_S,
        aggregation: Aggregation = "ratio_of_sums",
    ) -> ServiceLevelFormula:
        shape = _PRESET_SHAPES.get(name.upper() if isinstance(name, str) else name)
        if shape is None:
            raise FormulaError(f"unknown service-level preset {name!r}; presets: {PRESETS}")
        numerator, answered, after, within, exits = shape
        return cls(
            threshold_s=threshold_s,
            numerator=numerator,
            answered=answered,
            abandoned_after_t=after,
            abandoned_within_t=within,
            other_exits=exits,
            short_abandon_s=short_abandon_s,
            aggregation=aggregation,
        )

    @property
    def preset_name(self) -> str | None:
        shape = (
            self.numerator,
            self.answered,
            self.abandoned_after_t,
            self.abandoned_within_t,
            self.other_exits,
        )
        return next((n for n, s in _PRESET_SHAPES.items() if s == shape), None)

    @property
    def denominator_terms(self) -> list[DenominatorTerm]:
        on = (self.answered, self.abandoned_after_t, self.abandoned_within_t, self.other_exits)
        return [t for t, flag in zip(_TERMS, on, strict=True) if flag]

    @classmethod
    def from_mapping(cls, spec: str | Mapping[str, object]) -> ServiceLevelFormula:
        """Read a preset name or the full object (the machine form of a result).

        A mapping may name a preset and override threshold_s, short_abandon_s
        and aggregation; if it also spells out numerator or denominator, they
        must agree with the preset.
        """
        if isinstance(spec, str):
            return cls.preset(spec)
        unknown = set(spec) - _FIELDS
        if unknown:
            raise FormulaError(f"unknown service-level field(s): {sorted(unknown)}")
        preset = spec.get("preset")
        base = cls() if preset is None else cls.preset(str(preset))
        changes: dict[str, object] = {}
        for key in ("threshold_s", "short_abandon_s", "numerator", "aggregation"):
            if key in spec:
                changes[key] = spec[key]
        if "denominator" in spec:
            terms = spec["denominator"]
            if not isinstance(terms, Sequence) or isinstance(terms, str | bytes):
                raise FormulaError("denominator must be a list of terms")
            bad = [t for t in terms if t not in _TERMS]
            if bad:
                raise FormulaError(f"unknown denominator term(s) {bad}; terms: {_TERMS}")
            changes.update({t: t in terms for t in _TERMS})
        formula = replace(base, **changes)  # type: ignore[arg-type]
        if preset is not None and formula.preset_name != base.preset_name:
            raise FormulaError(f"the formula given does not match preset {preset!r}")
        return formula

    def to_mapping(self) -> dict[str, JsonValue]:
        return {
            "preset": self.preset_name,
            "threshold_s": self.threshold_s,
            "numerator": self.numerator,
            "denominator": list(self.denominator_terms),
            "short_abandon_s": self.short_abandon_s,
            "aggregation": self.aggregation,
        }

    def expression(self) -> str:
        """The ratio alone, as KPIS.md writes it, e.g. "A_T / A"."""
        num = "A_T" if self.numerator == "answered_within" else "(A_T + Ab_T)"
        parts = ["A"]
        if self.abandoned_after_t and self.abandoned_within_t:
            parts.append("Ab")
        elif self.abandoned_after_t:
            parts.append(f"Ab {MINUS} Ab_T")
        elif self.abandoned_within_t:
            parts.append("Ab_T")
        if self.other_exits:
            parts.append("X")
        den = " + ".join(parts)
        return f"{num} / {den}" if len(parts) == 1 else f"{num} / ({den})"


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """How a contract computes its KPIs.

    The short-abandon setting is the one of the service-level formula (KPIS.md
    lists it there) and applies to every formula: a contract has one.
    `timeouts_as_abandons` counts timeouts and key exits (timeout, exit_key,
    exit_empty) as abandons; overflow and transfer out stay other exits.
    """

    service_level: ServiceLevelFormula = field(default_factory=ServiceLevelFormula)
    timeouts_as_abandons: bool = False
    # FCR by repeat: a further contact of the customer within this many days
    # means the first was not resolved (KPIS.md; contracts: 1 to 90, default 7).
    fcr_window_days: int = 7
    # The intervals a mean of interval ratios averages over (contracts: 15, 30 or 60).
    interval_minutes: int = 15

    def __post_init__(self) -> None:
        w = self.fcr_window_days
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_FCR_WINDOW_DAYS:
            raise FormulaError(f"fcr_window_days {w!r}: whole days from 1 to {MAX_FCR_WINDOW_DAYS}")
        if self.interval_minutes not in (15, 30, 60):
            raise FormulaError(f"interval_minutes {self.interval_minutes!r}: 15, 30 or 60")

    @property
    def short_abandon_s(self) -> int:
        return self.service_level.short_abandon_s

    @property
    def abandon_outcomes(self) -> tuple[Outcome, ...]:
        return (Outcome.ABANDONED, *(UNSERVED_EXITS if self.timeouts_as_abandons else ()))

    @property
    def exit_outcomes(self) -> tuple[Outcome, ...]:
        abandons = self.abandon_outcomes
        return tuple(o for o in OTHER_EXITS if o not in abandons)

    def scope(self, *, short: bool = True, exits: bool = True) -> str:
        """The clauses a formula's text ends with."""
        out = ""
        if short:
            s = self.short_abandon_s
            out += f", short abandons ≤ {s} s excluded" if s else ", short abandons kept"
        if exits and self.timeouts_as_abandons:
            out += ", timeouts and key exits count as abandons"
        return out

    def machine(self) -> dict[str, JsonValue]:
        return {
            "short_abandon_s": self.short_abandon_s,
            "timeouts_as_abandons": self.timeouts_as_abandons,
        }


DEFAULT_TERMS: Final = ContractTerms()


def _terms(terms: ContractTerms | ServiceLevelFormula) -> ContractTerms:
    return ContractTerms(service_level=terms) if isinstance(terms, ServiceLevelFormula) else terms


# ---- counts --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The symbols of KPIS.md for one threshold, short abandons removed."""

    threshold_s: int
    short_abandon_s: int
    offered: int  # O = A + Ab + X
    answered: int  # A
    answered_within: int  # A_T
    abandoned: int  # Ab (short abandons removed)
    abandoned_within: int  # Ab_T (short abandons removed)
    short_abandons: int  # Ab_s
    other_exits: int  # X

    def service_level_terms(self, formula: ServiceLevelFormula) -> tuple[int, int]:
        """(numerator, denominator) of a service-level formula."""
        num = self.answered_within
        if formula.numerator == "handled_within":
            num += self.abandoned_within
        den = 0
        if formula.answered:
            den += self.answered
        if formula.abandoned_after_t:
            den += self.abandoned - self.abandoned_within
        if formula.abandoned_within_t:
            den += self.abandoned_within
        if formula.other_exits:
            den += self.other_exits
        return num, den


def _short_top(terms: ContractTerms) -> int:
    """Waits in buckets with edge ≤ this are short abandons (-1: none are)."""
    s = terms.short_abandon_s
    return s if s > 0 else -1


def _symbols(
    sums: KpiSums,
    t: int,
    abandons: tuple[Outcome, ...],
    exits: tuple[Outcome, ...],
    short_top: int,
) -> tuple[int, int, int, int, int, int]:
    """(A, A_T, Ab, Ab_T, Ab_s, X), short abandons removed from Ab and Ab_T."""
    waits = sums.waits
    if not waits:
        return 0, 0, 0, 0, 0, 0
    h = waits.get(Outcome.ANSWERED)
    a, a_t = (h.total, h.count_in(-1, t)) if h is not None else (0, 0)
    ab = ab_t = ab_s = 0
    for outcome in abandons:
        h = waits.get(outcome)
        if h is None:
            continue
        short = h.count_in(-1, short_top) if short_top >= 0 else 0
        ab += h.total - short
        ab_s += short
        ab_t += h.count_in(short_top, t)
    x = sum(waits[o].total for o in exits if o in waits)
    return a, a_t, ab, ab_t, ab_s, x


# The queue KPIs of one period all start from the same counts: the last one computed
# is kept (by identity of the sums, which it also holds, so the id cannot be reused).
_last_counts: tuple[KpiSums, ContractTerms, int | None, QueueCounts] | None = None


def queue_counts(
    sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS, threshold_s: int | None = None
) -> QueueCounts:
    global _last_counts
    last = _last_counts
    if last is not None and last[0] is sums and last[1] is terms and last[2] == threshold_s:
        return last[3]
    counts = _queue_counts(sums, terms, threshold_s)
    _last_counts = (sums, terms, threshold_s, counts)
    return counts


def _queue_counts(sums: KpiSums, terms: ContractTerms, threshold_s: int | None) -> QueueCounts:
    t = terms.service_level.threshold_s if threshold_s is None else threshold_s
    _check_int(t, "threshold_s")
    a, a_t, ab, ab_t, ab_s, x = _symbols(
        sums, t, terms.abandon_outcomes, terms.exit_outcomes, _short_top(terms)
    )
    return QueueCounts(
        threshold_s=t,
        short_abandon_s=terms.short_abandon_s,
        offered=a + ab + x,
        answered=a,
        answered_within=a_t,
        abandoned=ab,
        abandoned_within=ab_t,
        short_abandons=ab_s,
        other_exits=x,
    )


def _abandoned_wait(sums: KpiSums, terms: ContractTerms) -> tuple[int, int]:
    """(Σ wait ms, count) of abandons, short abandons removed."""
    short_top = _short_top(terms)
    total_ms = count = 0
    for outcome in terms.abandon_outcomes:
        h = sums.hist(outcome)
        total_ms += h.total_ms - (h.sum_ms_in(-1, short_top) if short_top >= 0 else 0)
        count += h.total - (h.count_in(-1, short_top) if short_top >= 0 else 0)
    return total_ms, count


# ---- building results ------------------------------------------------------------


def _ratio(
    kpi: str,
    num: int | float,
    den: int | float,
    formula: str,
    machine: dict[str, JsonValue],
    unit: Unit = Unit.RATIO,
) -> KpiValue:
    if unit is Unit.SECONDS:
        value = num / (den * 1000) if den else None
    elif kpi == "nps":
        value = 100 * num / den if den else None
    else:
        value = num / den if den else None
    return KpiValue(
        kpi=kpi,
        value=value,
        unit=unit,
        formula=formula,
        machine={"kpi": kpi, "unit": unit.value, **machine},
        numerator=num,
        denominator=den,
    )


def _count(kpi: str, n: int, formula: str, machine: dict[str, JsonValue]) -> KpiValue:
    return KpiValue(
        kpi=kpi,
        value=n,
        unit=Unit.COUNT,
        formula=formula,
        machine={"kpi": kpi, "unit": Unit.COUNT.value, **machine},
        numerator=n,
    )


# ---- queue KPIs --------------------------------------------------------------------


def offered(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    c = queue_counts(sums, terms)
    return _count(
        "offered", c.offered, "O = A + Ab + X" + terms.scope(), {"count": "O", **terms.machine()}
    )


def short_abandons(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    """Ab_s, reported on its own (0 when the contract keeps short abandons)."""
    c = queue_counts(sums, terms)
    s = terms.short_abandon_s
    text = f"abandons after waiting ≤ {s} s" if s else "none: short abandons kept"
    return _count(
        "short_abandons",
        c.short_abandons,
        text + terms.scope(short=False),
        {
            "count": "Ab_s",
            **terms.machine(),
        },
    )


def answer_rate(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    c = queue_counts(sums, terms)
    return _ratio(
        "answer_rate",
        c.answered,
        c.offered,
        "A / O" + terms.scope(),
        {"numerator": "A", "denominator": "O", **terms.machine()},
    )


def abandonment_rate(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    c = queue_counts(sums, terms)
    return _ratio(
        "abandonment_rate",
        c.abandoned,
        c.offered,
        "Ab / O" + terms.scope(),
        {"numerator": "Ab", "denominator": "O", **terms.machine()},
    )


def service_level(
    data: KpiSums | Sequence[KpiSums],
    terms: ContractTerms | ServiceLevelFormula = DEFAULT_TERMS,
) -> KpiValue:
    """The contract's service level over a period.

    `ratio_of_sums` accepts one KpiSums or the intervals (merged here);
    `mean_of_intervals` needs the per-interval sums and averages the ratios
    of the intervals that have data (an interval with a zero denominator is
    skipped, not counted as 0 % or 100 %).
    """
    terms = _terms(terms)
    f = terms.service_level
    text = f"{f.expression()}, T = {f.threshold_s} s" + terms.scope()
    machine: dict[str, JsonValue] = {**f.to_mapping(), **terms.machine()}
    if f.aggregation == "ratio_of_sums":
        sums = data if isinstance(data, KpiSums) else KpiSums.merge(data)
        num, den = queue_counts(sums, terms).service_level_terms(f)
        return _ratio("service_level", num, den, text, machine)
    if isinstance(data, KpiSums):
        raise FormulaError("mean_of_intervals needs the per-interval sums, not their total")
    # Thousands of intervals: count each without building a QueueCounts.
    t, short_top = f.threshold_s, _short_top(terms)
    abandons, exits = terms.abandon_outcomes, terms.exit_outcomes
    handled = f.numerator == "handled_within"
    ratios: list[float] = []
    for interval in data:
        a, a_t, ab, ab_t, _, x = _symbols(interval, t, abandons, exits, short_top)
        num = a_t + ab_t if handled else a_t
        den = (
            (a if f.answered else 0)
            + (ab - ab_t if f.abandoned_after_t else 0)
            + (ab_t if f.abandoned_within_t else 0)
            + (x if f.other_exits else 0)
        )
        if den:
            ratios.append(num / den)
    skipped = len(data) - len(ratios)
    text += f", mean of {len(ratios)} interval ratios"
    if skipped:
        text += f" ({skipped} without data skipped)"
    machine.update(intervals=len(data), intervals_with_data=len(ratios))
    return KpiValue(
        kpi="service_level",
        value=math.fsum(ratios) / len(ratios) if ratios else None,
        unit=Unit.RATIO,
        formula=text,
        machine={"kpi": "service_level", "unit": Unit.RATIO.value, **machine},
    )


def asa(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    h = sums.hist(Outcome.ANSWERED)
    return _ratio(
        "asa",
        h.total_ms,
        h.total,
        "Σ wait(answered) / A",
        {"numerator": "sum_wait_answered_ms", "denominator": "A"},
        Unit.SECONDS,
    )


def average_queue_time(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    h = sums.hist(Outcome.ANSWERED)
    ab_ms, ab = _abandoned_wait(sums, terms)
    return _ratio(
        "average_queue_time",
        h.total_ms + ab_ms,
        h.total + ab,
        "Σ wait(answered and abandoned) / (A + Ab)" + terms.scope(),
        {"numerator": "sum_wait_answered_abandoned_ms", "denominator": "A + Ab", **terms.machine()},
        Unit.SECONDS,
    )


def average_time_to_abandon(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    ab_ms, ab = _abandoned_wait(sums, terms)
    return _ratio(
        "average_time_to_abandon",
        ab_ms,
        ab,
        "Σ wait(abandoned) / Ab" + terms.scope(),
        {"numerator": "sum_wait_abandoned_ms", "denominator": "Ab", **terms.machine()},
        Unit.SECONDS,
    )


def longest_wait(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    """max wait of answered and abandoned contacts, short abandons removed.

    An outcome's maximum is a non-short abandon exactly when it exceeds
    short_abandon_s, so the histograms' maxima give the answer for any setting.
    """
    short_top = _short_top(terms)
    best: tuple[int, bool] | None = None
    for outcome in (Outcome.ANSWERED, *terms.abandon_outcomes):
        h = sums.hist(outcome)
        if h.max_ms is None:
            continue
        if outcome is not Outcome.ANSWERED and h.max_ms <= short_top * 1000:
            continue  # every abandon of this kind was short
        if best is None or h.max_ms > best[0]:
            best = (h.max_ms, h.max_exact)
        elif h.max_ms == best[0]:
            best = (best[0], best[1] or h.max_exact)
    text = "max wait(answered and abandoned)" + terms.scope()
    machine: dict[str, JsonValue] = {"kpi": "longest_wait", "unit": "seconds", **terms.machine()}
    if best is None:
        return KpiValue("longest_wait", None, Unit.SECONDS, text, machine)
    max_ms, exact = best
    if not exact:
        text += " (an upper bound: the rollup awaits a rebuild after a correction)"
    return KpiValue(
        kpi="longest_wait",
        value=max_ms / 1000,
        unit=Unit.SECONDS,
        formula=text,
        machine={**machine, "upper_bound": not exact},
        numerator=max_ms,
        upper_bound=not exact,
    )


def _per_answered(
    kpi: str, num_ms: int, sums: KpiSums, text: str, name: str, unit: Unit = Unit.SECONDS
) -> KpiValue:
    return _ratio(
        kpi,
        num_ms,
        sums.count(Outcome.ANSWERED),
        text,
        {
            "numerator": name,
            "denominator": "A",
        },
        unit,
    )


def aht(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    handle = sums.talk_ms + sums.hold_ms + sums.acw_ms
    return _per_answered("aht", handle, sums, "Σ (talk + hold + acw) / A", "sum_handle_ms")


def average_talk(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _per_answered("average_talk", sums.talk_ms, sums, "Σ talk / A", "sum_talk_ms")


def average_acw(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _per_answered("average_acw", sums.acw_ms, sums, "Σ acw / A", "sum_acw_ms")


def hold_per_answered(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _per_answered("hold_per_answered", sums.hold_ms, sums, "Σ hold / A", "sum_hold_ms")


def average_hold(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _ratio(
        "average_hold",
        sums.hold_ms,
        sums.held,
        "Σ hold / (answered contacts with hold > 0)",
        {"numerator": "sum_hold_ms", "denominator": "held"},
        Unit.SECONDS,
    )


def hold_rate(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _per_answered(
        "hold_rate", sums.held, sums, "answered contacts with hold > 0 / A", "held", Unit.RATIO
    )


def transfer_rate(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    return _per_answered(
        "transfer_rate",
        sums.transferred,
        sums,
        "transferred after answer / A",
        "transferred",
        Unit.RATIO,
    )


@dataclass(frozen=True, slots=True)
class RepeatFcr:
    """Repeat-based FCR counts for answered contacts without a flag (from SQL)."""

    resolved: int  # no further contact of the same customer within fcr_window
    evaluated: int  # answered contacts without a flag whose window has closed


def first_contact_resolution(
    resolved: int, known: int, *, formula: str | None = None, window_days: int | None = None
) -> KpiValue:
    """FCR = resolved on first contact / answered contacts whose resolution is known."""
    if not 0 <= resolved <= known:
        raise FormulaError(f"FCR: resolved {resolved} outside 0..{known}")
    machine: dict[str, JsonValue] = {"numerator": "fcr_resolved", "denominator": "fcr_known"}
    if window_days is not None:
        machine["fcr_window_days"] = window_days
    return _ratio(
        "fcr",
        resolved,
        known,
        formula or "resolved on first contact / answered contacts with a known resolution",
        machine,
    )


def repeat_fcr(sums: KpiSums, window_days: int) -> RepeatFcr:
    """The answered contacts without a flag but with a customer key, and those of them
    whose customer made no further contact on the project within `window_days`."""
    repeated = sum(n for d, n in sums.fcr_repeats.items() if d <= window_days)
    return RepeatFcr(resolved=sums.fcr_repeat_known - repeated, evaluated=sums.fcr_repeat_known)


def fcr(
    sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS, repeat: RepeatFcr | None = None
) -> KpiValue:
    """FCR by the contact's flag where the source gives one, else by repeat (KPIS.md):
    resolved when the customer makes no further contact on the project within the
    contract's `fcr_window_days`. The denominator is A less the answered contacts that
    can be judged neither way (no flag and no customer key). `repeat` overrides the
    counts by repeat (default: from `sums` and the terms' window).
    """
    if repeat is None:
        repeat = repeat_fcr(sums, terms.fcr_window_days)
    if repeat.evaluated > sums.count(Outcome.ANSWERED) - sums.fcr_known:
        raise FormulaError("FCR: more repeat-evaluated contacts than unflagged answered ones")
    if not 0 <= repeat.resolved <= repeat.evaluated:
        raise FormulaError(f"FCR: {repeat.resolved} resolved of {repeat.evaluated} by repeat")
    return first_contact_resolution(
        sums.fcr_resolved + repeat.resolved,
        sums.fcr_known + repeat.evaluated,
        formula=(
            "resolved on first contact (the source's flag, else no further contact of the"
            f" customer on the project within {terms.fcr_window_days} days) / answered"
            " contacts with a flag or a customer key"
        ),
        window_days=terms.fcr_window_days,
    )


def csat(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    counts = sums.csat_counts
    return _ratio(
        "csat",
        counts[3] + counts[4],
        sum(counts),
        "responses ≥ 4 / responses (1 to 5 scale, top-two-box)",
        {"numerator": "csat_4_5", "denominator": "csat_responses"},
    )


def csat_mean(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    counts = sums.csat_counts
    return _ratio(
        "csat_mean",
        sum(score * n for score, n in enumerate(counts, start=1)),
        sum(counts),
        "Σ responses / responses (1 to 5 scale)",
        {"numerator": "csat_sum", "denominator": "csat_responses"},
        Unit.SCORE,
    )


def nps(sums: KpiSums, terms: ContractTerms = DEFAULT_TERMS) -> KpiValue:
    counts = sums.nps_counts
    promoters = counts[9] + counts[10]
    detractors = sum(counts[:7])
    return _ratio(
        "nps",
        promoters - detractors,
        sum(counts),
        f"% promoters (9 to 10) {MINUS} % detractors (0 to 6)",
        {"numerator": "promoters - detractors", "denominator": "nps_responses"},
        Unit.SCORE,
    )


QUEUE_KPIS: Final = (
    "offered",
    "short_abandons",
    "answer_rate",
    "abandonment_rate",
    "service_level",
    "asa",
    "average_queue_time",
    "longest_wait",
    "average_time_to_abandon",
    "aht",
    "average_talk",
    "average_acw",
    "average_hold",
    "hold_per_answered",
    "hold_rate",
    "transfer_rate",
    "fcr",
    "csat",
    "csat_mean",
    "nps",
)


def compute_all(
    sums: KpiSums,
    terms: ContractTerms = DEFAULT_TERMS,
    intervals: Sequence[KpiSums] | None = None,
) -> dict[str, KpiValue]:
    """Every queue KPI of a period. `intervals` (whose total is `sums`) is
    needed only when the service level is a mean of interval ratios."""
    sl_data: KpiSums | Sequence[KpiSums] = sums
    if terms.service_level.aggregation == "mean_of_intervals":
        if intervals is None:
            raise FormulaError("mean_of_intervals needs the per-interval sums")
        sl_data = intervals
    return {
        "offered": offered(sums, terms),
        "short_abandons": short_abandons(sums, terms),
        "answer_rate": answer_rate(sums, terms),
        "abandonment_rate": abandonment_rate(sums, terms),
        "service_level": service_level(sl_data, terms),
        "asa": asa(sums, terms),
        "average_queue_time": average_queue_time(sums, terms),
        "longest_wait": longest_wait(sums, terms),
        "average_time_to_abandon": average_time_to_abandon(sums, terms),
        "aht": aht(sums, terms),
        "average_talk": average_talk(sums, terms),
        "average_acw": average_acw(sums, terms),
        "average_hold": average_hold(sums, terms),
        "hold_per_answered": hold_per_answered(sums, terms),
        "hold_rate": hold_rate(sums, terms),
        "transfer_rate": transfer_rate(sums, terms),
        "fcr": fcr(sums, terms),
        "csat": csat(sums, terms),
        "csat_mean": csat_mean(sums, terms),
        "nps": nps(sums, terms),
    }


# ---- agent KPIs ---------------------------------------------------------------------


def _seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FormulaError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0:
        raise FormulaError(f"{name} is negative")
    return value


@dataclass(frozen=True, slots=True)
class AgentTime:
    """Seconds an agent spent in each logged-in state over a period."""

    available_s: float = 0
    on_contact_s: float = 0
    acw_s: float = 0
    not_ready_s: float = 0  # every not-ready reason

    def __post_init__(self) -> None:
        for name in ("available_s", "on_contact_s", "acw_s", "not_ready_s"):
            _seconds(cast(float, getattr(self, name)), name)

    @property
    def logged_in_s(self) -> float:
        return self.available_s + self.on_contact_s + self.acw_s + self.not_ready_s

    @property
    def busy_s(self) -> float:
        return self.on_contact_s + self.acw_s

    @property
    def productive_s(self) -> float:
        return self.available_s + self.on_contact_s + self.acw_s


def _agent_ratio(kpi: str, num: float, den: float, text: str, unit: Unit = Unit.RATIO) -> KpiValue:
    value = (num / den if unit is not Unit.PER_HOUR else num * 3600 / den) if den else None
    return KpiValue(kpi, value, unit, text, {"kpi": kpi, "unit": unit.value}, num, den)


def logged_in_time(t: AgentTime) -> KpiValue:
    s = t.logged_in_s
    return KpiValue(
        "logged_in_time",
        s,
        Unit.SECONDS,
        "Σ time not logged_out",
        {"kpi": "logged_in_time", "unit": "seconds"},
        s,
    )


def occupancy(t: AgentTime) -> KpiValue:
    return _agent_ratio(
        "occupancy", t.busy_s, t.productive_s, "(on_contact + acw) / (available + on_contact + acw)"
    )


def utilization(t: AgentTime) -> KpiValue:
    return _agent_ratio(
        "utilization", t.busy_s, t.logged_in_s, "(on_contact + acw) / logged-in time"
    )


def schedule_adherence(in_scheduled_state_s: float, scheduled_s: float) -> KpiValue:
    num = _seconds(in_scheduled_state_s, "in_scheduled_state_s")
    den = _seconds(scheduled_s, "scheduled_s")
    if num > den:
        raise FormulaError("time in the scheduled state exceeds the scheduled time")
    return _agent_ratio(
        "schedule_adherence", num, den, "time in the state the schedule asked for / scheduled time"
    )


def conformance(logged_in_s: float, scheduled_s: float) -> KpiValue:
    return _agent_ratio(
        "conformance",
        _seconds(logged_in_s, "logged_in_s"),
        _seconds(scheduled_s, "scheduled_s"),
        "logged-in time / scheduled time",
    )


def shrinkage(t: AgentTime, scheduled_paid_s: float) -> KpiValue:
    """1 - productive / paid, as (paid - productive) / paid: one rounding.

    Negative when agents were productive beyond their paid time.
    """
    paid = _seconds(scheduled_paid_s, "scheduled_paid_s")
    return _agent_ratio(
        "shrinkage",
        paid - t.productive_s,
        paid,
        f"1 {MINUS} (available + on_contact + acw) / scheduled paid time",
    )


def contacts_per_hour(handled: int, logged_in_s: float) -> KpiValue:
    if isinstance(handled, bool) or not isinstance(handled, int) or handled < 0:
        raise FormulaError(f"handled must be a count, not {handled!r}")
    return _agent_ratio(
        "contacts_per_hour",
        handled,
        _seconds(logged_in_s, "logged_in_s"),
        "A handled / logged-in hours",
        Unit.PER_HOUR,
    )
