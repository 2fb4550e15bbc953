"""KPIs from merged, stored rollups == KPIs computed from the raw contacts.

The ingestion relies on this: a figure may come from any set of rollup rows
(per interval, merged over a month, after a storage round trip) for any
threshold T, short-abandon setting and service-level formula, and must equal
the figure computed from the raw contacts. The oracle below reads raw
contacts directly (Decimal waits, the inclusive comparisons of KPIS.md,
Fractions) and shares no code with sums.py or formulas.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.kpis.formulas import ContractTerms, ServiceLevelFormula, compute_all
from service.kpis.sums import ContactFacts, KpiSums

OUTCOMES = [
    "answered",
    "abandoned",
    "timeout",
    "exit_key",
    "exit_empty",
    "overflow",
    "transferred_out",
    "in_queue",
]


@dataclass(frozen=True)
class Raw:
    outcome: str
    wait: Decimal
    talk: Decimal = Decimal(0)
    hold: Decimal = Decimal(0)
    acw: Decimal = Decimal(0)
    transferred: bool = False
    fcr: bool | None = None
    csat: int | None = None
    nps: int | None = None

    def facts(self) -> ContactFacts:
        if self.outcome == "in_queue":
            return ContactFacts("in_queue")
        return ContactFacts(
            self.outcome,
            wait_s=self.wait,
            talk_s=self.talk,
            hold_s=self.hold,
            hold_count=1 if self.hold else 0,
            acw_s=self.acw,
            transferred=self.transferred,
            resolved_first_contact=self.fcr,
            csat=self.csat,
            nps=self.nps,
        )


def ms(d: Decimal) -> int:
    """KPIS.md durations are counted in whole milliseconds, rounded up."""
    return int((d * 1000).to_integral_value(rounding=ROUND_CEILING))


def ratio(num: int, den: int) -> float | None:
    return float(Fraction(num, den)) if den else None


def oracle(contacts: list[Raw], f: ServiceLevelFormula, timeouts: bool) -> dict[str, float | None]:
    t, s = f.threshold_s, f.short_abandon_s
    abandon_kinds = {"abandoned"} | ({"timeout", "exit_key", "exit_empty"} if timeouts else set())
    known = [c for c in contacts if c.outcome != "in_queue"]
    is_short = [c.outcome in abandon_kinds and s > 0 and c.wait <= s for c in known]
    short = [c for c, flag in zip(known, is_short, strict=True) if flag]
    kept = [c for c, flag in zip(known, is_short, strict=True) if not flag]
    ans = [c for c in kept if c.outcome == "answered"]
    ab = [c for c in kept if c.outcome in abandon_kinds]
    x = [c for c in kept if c.outcome not in abandon_kinds and c.outcome != "answered"]
    a_t = sum(1 for c in ans if c.wait <= t)
    ab_t = sum(1 for c in ab if c.wait <= t)
    num = a_t + (ab_t if f.numerator == "handled_within" else 0)
    den = (
        len(ans)
        + (len(ab) - ab_t if f.abandoned_after_t else 0)
        + (ab_t if f.abandoned_within_t else 0)
        + (len(x) if f.other_exits else 0)
    )
    held = [c for c in ans if c.hold > 0]
    flagged = [c for c in ans if c.fcr is not None]
    csats = [c.csat for c in contacts if c.csat is not None and c.outcome != "in_queue"]
    npss = [c.nps for c in contacts if c.nps is not None and c.outcome != "in_queue"]
    waited = [ms(c.wait) for c in ans + ab]

    def seconds(total_ms: int, n: int) -> float | None:
        return float(Fraction(total_ms, n * 1000)) if n else None

    return {
        "offered": len(kept),
        "short_abandons": len(short),
        "answer_rate": ratio(len(ans), len(kept)),
        "abandonment_rate": ratio(len(ab), len(kept)),
        "service_level": ratio(num, den),
        "asa": seconds(sum(ms(c.wait) for c in ans), len(ans)),
        "average_queue_time": seconds(sum(waited), len(waited)),
        "longest_wait": max(waited) / 1000 if waited else None,
        "average_time_to_abandon": seconds(sum(ms(c.wait) for c in ab), len(ab)),
        "aht": seconds(sum(ms(c.talk) + ms(c.hold) + ms(c.acw) for c in ans), len(ans)),
        "average_talk": seconds(sum(ms(c.talk) for c in ans), len(ans)),
        "average_acw": seconds(sum(ms(c.acw) for c in ans), len(ans)),
        "average_hold": seconds(sum(ms(c.hold) for c in held), len(held)),
        "hold_per_answered": seconds(sum(ms(c.hold) for c in ans), len(ans)),
        "hold_rate": ratio(len(held), len(ans)),
        "transfer_rate": ratio(sum(c.transferred for c in ans), len(ans)),
        "fcr": ratio(sum(c.fcr is True for c in flagged), len(flagged)),
        "csat": ratio(sum(v >= 4 for v in csats), len(csats)),
        "csat_mean": ratio(sum(csats), len(csats)),
        "nps": (
            float(
                Fraction(100 * (sum(v >= 9 for v in npss) - sum(v <= 6 for v in npss)), len(npss))
            )
            if npss
            else None
        ),
    }


# ---- strategies ---------------------------------------------------------------------------

thresholds = st.one_of(
    st.integers(0, 60),
    st.integers(0, 3600),
    st.integers(61, 1440).map(lambda m: m * 60),
    st.integers(25, 744).map(lambda h: h * 3600),
)
short_settings = st.one_of(st.just(0), st.just(5), st.integers(0, 30), st.integers(0, 3600))


@st.composite
def formulas(draw: st.DrawFn) -> ServiceLevelFormula:
    handled = draw(st.booleans())
    return ServiceLevelFormula(
        threshold_s=draw(thresholds),
        numerator="handled_within" if handled else "answered_within",
        abandoned_after_t=draw(st.booleans()),
        abandoned_within_t=handled or draw(st.booleans()),
        other_exits=draw(st.booleans()),
        short_abandon_s=draw(short_settings),
    )


def waits_near(t: int, s: int) -> st.SearchStrategy[Decimal]:
    """Waits that test the inclusive edges: exactly T or s, a microsecond either side."""
    tiny = Decimal("0.000001")
    edges = [Decimal(v) + d for v in (t, s, 0) for d in (-tiny, Decimal(0), tiny) if v + d >= 0]
    return st.one_of(
        st.sampled_from(edges),
        st.decimals(min_value=0, max_value=200, places=6),
        st.decimals(min_value=0, max_value=40 * 86_400, places=3),
    )


@st.composite
def raw_contacts(draw: st.DrawFn, wait: st.SearchStrategy[Decimal]) -> Raw:
    outcome = draw(st.sampled_from(OUTCOMES))
    survey = {
        "csat": draw(st.none() | st.integers(1, 5)),
        "nps": draw(st.none() | st.integers(0, 10)),
    }
    if outcome != "answered":
        return Raw(outcome, draw(wait), **survey)  # type: ignore[arg-type]
    secs = st.decimals(min_value=0, max_value=3000, places=3)
    return Raw(
        outcome,
        draw(wait),
        talk=draw(secs),
        hold=draw(st.just(Decimal(0)) | secs),
        acw=draw(secs),
        transferred=draw(st.booleans()),
        fcr=draw(st.none() | st.booleans()),
        **survey,
    )


def stored(contacts: list[Raw]) -> KpiSums:
    """One rollup row for an interval, built one contact at a time and stored."""
    row = KpiSums.merge(KpiSums.from_contact(c.facts()) for c in contacts).to_row()
    return KpiSums.from_row(row)


@settings(max_examples=300, deadline=None)
@given(formulas(), st.booleans(), st.data())
def test_kpis_from_merged_rollups_equal_kpis_from_raw_contacts(
    f: ServiceLevelFormula, timeouts: bool, data: st.DataObject
) -> None:
    wait = waits_near(f.threshold_s, f.short_abandon_s)
    intervals = data.draw(st.lists(st.lists(raw_contacts(wait), max_size=12), max_size=6))
    contacts = [c for interval in intervals for c in interval]
    rows = [stored(interval) for interval in intervals]
    terms = ContractTerms(f, timeouts_as_abandons=timeouts)

    got = compute_all(KpiSums.merge(rows), terms)
    want = oracle(contacts, f, timeouts)
    assert {k: v.value for k, v in got.items()} == want

    # the mean of interval ratios, from the same rows
    mean = ContractTerms(replace(f, aggregation="mean_of_intervals"), timeouts)
    got_mean = compute_all(KpiSums.merge(rows), mean, rows)["service_level"].value
    ratios = [oracle(interval, f, timeouts)["service_level"] for interval in intervals]
    with_data = [Fraction(r) for r in ratios if r is not None]
    if not with_data:
        assert got_mean is None
    else:
        assert got_mean == pytest.approx(float(sum(with_data) / len(with_data)), rel=1e-12)


def test_oracle_agrees_with_a_hand_count() -> None:
    # The oracle itself, on a case counted by hand: T = 20, s = 5, SL1.
    contacts = [
        Raw("answered", Decimal("20")),  # within T (inclusive)
        Raw("answered", Decimal("20.000001")),  # over T
        Raw("abandoned", Decimal("5")),  # short (inclusive)
        Raw("abandoned", Decimal("5.000001")),  # kept, within T
        Raw("timeout", Decimal("60")),  # X
    ]
    got = oracle(contacts, ServiceLevelFormula(), timeouts=False)
    # A = 2, A_T = 1, Ab = 1, X = 1, O = 4 → SL1 = 1 / (2 + 1), answer rate 2 / 4
    assert (got["service_level"], got["answer_rate"], got["short_abandons"]) == (1 / 3, 0.5, 1)
    # waits 20.000 + 20.001 (rounded up) + 5.001 over 3 = 45.002 / 3
    assert got["average_queue_time"] == 45.002 / 3
    assert math.isclose(got["longest_wait"] or 0, 20.001)
