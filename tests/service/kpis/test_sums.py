"""KpiSums: rounding, the wait grid, storage rows, corrections, monoid laws."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.kpis.formulas import ContractTerms, ServiceLevelFormula, longest_wait, queue_counts
from service.kpis.sums import (
    FINAL_OUTCOMES,
    OVERFLOW_EDGE,
    ContactFacts,
    InvalidContact,
    InvalidRollup,
    KpiSums,
    Outcome,
    duration_ms,
    wait_edge,
)

# ---- the grid, written out independently: every second to 1 h, every minute
# to 1 day, every hour to 31 days --------------------------------------------------
GRID = sorted(
    set(range(3601)) | set(range(3600, 86_401, 60)) | set(range(86_400, 31 * 86_400 + 1, 3600))
)


def reference_edge(wait: Decimal) -> int:
    """The smallest grid point g with wait ≤ g (the bucket's inclusive upper edge)."""
    i = bisect.bisect_left(GRID, wait)
    return GRID[i] if i < len(GRID) else OVERFLOW_EDGE


def reference_ms(wait: Decimal) -> int:
    return int((wait * 1000).to_integral_value(rounding=ROUND_CEILING))


# ---- durations and edges ---------------------------------------------------------------


def test_durations_are_whole_milliseconds_rounded_up() -> None:
    assert duration_ms(20) == 20_000
    assert duration_ms(0.1) == 100  # by its decimal repr, not 0.1000000000000000055…
    assert duration_ms(19.9995) == 20_000
    assert duration_ms(Decimal("20.0004")) == 20_001
    assert duration_ms(timedelta(seconds=20, microseconds=1)) == 20_001
    assert duration_ms(timedelta(seconds=20)) == 20_000
    assert duration_ms(Decimal("0.000001")) == 1
    for bad in (-1, -0.001, float("nan"), float("inf"), True, Decimal("NaN")):
        with pytest.raises(InvalidContact):
            duration_ms(bad)


def test_fractional_waits_at_bucket_edges() -> None:
    # bucket e holds (e - 1, e] below one hour; bucket 0 holds exactly 0
    assert [wait_edge(ms) for ms in (0, 1, 999, 1000, 1001, 20_000, 20_001)] == [
        0, 1, 1, 1, 2, 20, 21
    ]  # fmt: skip
    # past one hour, minute buckets: 3600.001 s lies in (3600, 3660]
    assert [wait_edge(ms) for ms in (3_600_000, 3_600_001, 3_660_000, 3_660_001)] == [
        3600, 3660, 3660, 3720
    ]  # fmt: skip
    # past one day, hour buckets; past 31 days, the overflow bucket
    assert wait_edge(86_400_001) == 90_000
    assert wait_edge(31 * 86_400_000) == 31 * 86_400
    assert wait_edge(31 * 86_400_000 + 1) == OVERFLOW_EDGE


@given(st.decimals(min_value=0, max_value=40 * 86_400, places=6))
def test_edge_agrees_with_the_raw_comparison(wait: Decimal) -> None:
    # "within g" on the raw wait == "in a bucket with edge ≤ g" after rounding to ms
    assert wait_edge(duration_ms(wait)) == reference_edge(wait)


def test_contact_validation() -> None:
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("answered"))  # no wait
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("dropped", wait_s=1))
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("abandoned", wait_s=1, talk_s=3))
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("timeout", wait_s=1, resolved_first_contact=True))
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("answered", wait_s=1, csat=6))
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("answered", wait_s=1, nps=11))
    with pytest.raises(InvalidContact):
        KpiSums.from_contact(ContactFacts("answered", wait_s=1, hold_count=-1))
    # still in queue: counted as such, nothing else (whatever it carries so far)
    s = KpiSums.from_contact(ContactFacts("in_queue", wait_s=30))
    assert (s.in_queue, s.waits) == (1, {})


# ---- storage -------------------------------------------------------------------------


def small() -> KpiSums:
    return KpiSums.from_contacts(
        [
            ContactFacts("answered", wait_s=Decimal("12.5"), talk_s=60, hold_s=5, csat=4),
            ContactFacts("answered", wait_s=12, talk_s=40, resolved_first_contact=True),
            ContactFacts("abandoned", wait_s=0),
            ContactFacts("overflow", wait_s=40 * 86_400),
            ContactFacts("in_queue"),
        ]
    )


def test_row_layout() -> None:
    row = small().to_row()
    # answered waits 12.5 → bucket 13, 12 → bucket 12; abandon 0 → bucket 0;
    # overflow of 40 days → the overflow bucket (outcome code 5)
    assert row["wait_outcome"] == [0, 0, 1, 5]
    assert row["wait_edge_s"] == [12, 13, 0, OVERFLOW_EDGE]
    assert row["wait_count"] == [1, 1, 1, 1]
    assert row["wait_sum_ms"] == [12_000, 12_500, 0, 3_456_000_000]
    assert row["wait_max_ms"] == [12_500, 0, -1, -1, -1, 3_456_000_000, -1]
    assert (row["n_answered"], row["n_abandoned"], row["n_overflow"], row["n_in_queue"]) == (
        2, 1, 1, 1
    )  # fmt: skip
    assert (row["talk_ms"], row["hold_ms"], row["held"], row["hold_count"]) == (100_000, 5000, 1, 0)
    assert (row["fcr_resolved"], row["fcr_known"]) == (1, 1)
    assert row["csat_counts"] == [0, 0, 0, 1, 0]
    assert KpiSums.from_row(row) == small()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("grid_version", 2),
        ("n_answered", 3),  # disagrees with the histogram
        ("wait_edge_s", [12, 3601, 0, OVERFLOW_EDGE]),  # off the grid
        ("wait_edge_s", [13, 12, 0, OVERFLOW_EDGE]),  # unsorted
        ("wait_edge_s", [12, 12, 0, OVERFLOW_EDGE]),  # one cell twice
        ("wait_sum_ms", [12_000, 13_500, 0, 3_456_000_000]),  # 13.5 s is not in (12, 13]
        ("wait_sum_ms", [11_000, 12_500, 0, 3_456_000_000]),  # 11 s is not in (11, 12]
        ("wait_count", [1, 0, 1, 1]),
        ("wait_max_ms", [14_000, 0, -1, -1, -1, 3_456_000_000, -1]),  # above its top bucket
        ("wait_max_ms", [12_500, 0, 7, -1, -1, 3_456_000_000, -1]),  # max without contacts
        ("csat_counts", [0, 0, 1]),
        ("talk_ms", -1),
        ("wait_outcome", [0, 0, 1, 9]),
    ],
)
def test_corrupt_rows_are_refused(column: str, value: object) -> None:
    row: dict[str, object] = dict(small().to_row())
    row[column] = value
    with pytest.raises(InvalidRollup):
        KpiSums.from_row(row)
    del row[column]
    with pytest.raises(InvalidRollup):
        KpiSums.from_row(row)


# ---- corrections and the longest wait --------------------------------------------------------


def answered(wait: object) -> KpiSums:
    return KpiSums.from_contact(ContactFacts("answered", wait_s=wait))  # type: ignore[arg-type]


def test_removing_contacts_never_added_is_refused() -> None:
    with pytest.raises(InvalidRollup):
        _ = answered(10) - answered(11)
    with pytest.raises(InvalidRollup):
        _ = answered(10) - answered(Decimal("10.5"))  # same bucket, different sum
    with pytest.raises(InvalidRollup):
        _ = KpiSums() - KpiSums.from_contact(ContactFacts("in_queue"))


def test_longest_wait_after_corrections() -> None:
    # removing a shorter wait keeps the maximum exact
    s = answered(10) + answered(30) - answered(10)
    assert (s.hist(Outcome.ANSWERED).max_ms, s.hist(Outcome.ANSWERED).max_exact) == (30_000, True)
    # removing the longest, one contact left in the top bucket: its sum is its wait
    s = answered(10) + answered(30) - answered(30)
    assert (s.hist(Outcome.ANSWERED).max_ms, s.hist(Outcome.ANSWERED).max_exact) == (10_000, True)
    # two equal waits left in bucket 10: sum 20 s over 2 pins both at 10 s
    s = answered(10) + answered(10) + answered(30) - answered(30)
    assert (s.hist(Outcome.ANSWERED).max_ms, s.hist(Outcome.ANSWERED).max_exact) == (10_000, True)
    # 10.2 and 10.7 left in bucket (10, 11]: the longest is at most
    # 20.9 s - 10.001 s (the other one's least possible wait) = 10.899 s
    s = answered(Decimal("10.2")) + answered(Decimal("10.7")) + answered(30) - answered(30)
    h = s.hist(Outcome.ANSWERED)
    assert (h.max_ms, h.max_exact) == (10_899, False)
    r = longest_wait(s)
    assert (r.value, r.upper_bound) == (10.899, True)
    assert "upper bound" in r.formula
    # the rollup writer rebuilds the row from its raw contacts: exact again
    rebuilt = KpiSums.from_contacts(
        [ContactFacts("answered", wait_s=Decimal(w)) for w in ("10.2", "10.7")]
    )
    assert rebuilt.hist(Outcome.ANSWERED).max_ms == 10_700
    # adding a contact whose wait equals the bound makes it exact
    s2 = s + answered(Decimal("10.899"))
    assert (s2.hist(Outcome.ANSWERED).max_ms, s2.hist(Outcome.ANSWERED).max_exact) == (10_899, True)
    # a longer exact wait beats an inexact bound
    s3 = s + answered(11)
    assert (s3.hist(Outcome.ANSWERED).max_ms, s3.hist(Outcome.ANSWERED).max_exact) == (11_000, True)


# ---- properties ----------------------------------------------------------------------------------

waits = st.one_of(
    st.integers(0, 40).map(Decimal),
    st.decimals(min_value=0, max_value=120, places=6),
    st.sampled_from(["3599.9995", "3600", "3600.0001", "86400", "86400.5", "2678400.001"]).map(
        Decimal
    ),
    st.decimals(min_value=0, max_value=40 * 86_400, places=3),
)
seconds = st.decimals(min_value=0, max_value=2000, places=3)


@st.composite
def contacts(draw: st.DrawFn) -> ContactFacts:
    outcome = draw(st.sampled_from(list(Outcome)))
    csat = draw(st.none() | st.integers(1, 5))
    nps = draw(st.none() | st.integers(0, 10))
    if outcome is Outcome.IN_QUEUE:
        return ContactFacts(outcome)
    if outcome is not Outcome.ANSWERED:
        return ContactFacts(outcome, wait_s=draw(waits), csat=csat, nps=nps)
    hold = draw(st.sampled_from([Decimal(0)]) | seconds)
    flag = draw(st.none() | st.booleans())
    return ContactFacts(
        outcome,
        wait_s=draw(waits),
        talk_s=draw(seconds),
        hold_s=hold,
        hold_count=draw(st.integers(1, 4)) if hold else 0,
        acw_s=draw(seconds),
        transferred=draw(st.booleans()),
        resolved_first_contact=flag,
        csat=csat,
        nps=nps,
        # judged by repeat: no customer key, no repeat within 90 days, or its repeat_days
        fcr_repeat=draw(st.none() | st.integers(0, 90)) if flag is None else None,
    )


def direct_row(cs: list[ContactFacts]) -> dict[str, object]:
    """The rollup row computed straight from raw contacts, without sums.py."""
    n: Counter[str] = Counter()
    buckets: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    maxima: dict[int, int] = {}
    talk = hold = acw = held = holds = transferred = resolved = known = by_repeat = 0
    repeats: Counter[int] = Counter()
    csat_counts, nps_counts = [0] * 5, [0] * 11
    for c in cs:
        n[str(c.outcome)] += 1
        if c.outcome == "in_queue":
            continue
        assert isinstance(c.wait_s, Decimal)
        code = [o.value for o in FINAL_OUTCOMES].index(str(c.outcome))
        ms = reference_ms(c.wait_s)
        bucket = buckets[code, reference_edge(c.wait_s)]
        bucket[0] += 1
        bucket[1] += ms
        maxima[code] = max(maxima.get(code, 0), ms)
        if c.outcome == "answered":
            assert isinstance(c.talk_s, Decimal) or c.talk_s == 0
            talk += reference_ms(Decimal(c.talk_s))  # type: ignore[arg-type]
            hold += reference_ms(Decimal(c.hold_s))  # type: ignore[arg-type]
            acw += reference_ms(Decimal(c.acw_s))  # type: ignore[arg-type]
            held += c.hold_s > 0  # type: ignore[operator]
            holds += c.hold_count
            transferred += c.transferred
            known += c.resolved_first_contact is not None
            resolved += c.resolved_first_contact is True
            if c.fcr_repeat is not None:
                by_repeat += 1
                if c.fcr_repeat:
                    repeats[c.fcr_repeat] += 1
        if c.csat is not None:
            csat_counts[c.csat - 1] += 1
        if c.nps is not None:
            nps_counts[c.nps] += 1
    keys = sorted(buckets)
    return {
        "grid_version": 1,
        **{f"n_{o.value}": n[o.value] for o in Outcome},
        "wait_outcome": [k[0] for k in keys],
        "wait_edge_s": [k[1] for k in keys],
        "wait_count": [buckets[k][0] for k in keys],
        "wait_sum_ms": [buckets[k][1] for k in keys],
        "wait_max_ms": [maxima.get(code, -1) for code in range(7)],
        "wait_max_exact": [True] * 7,
        "talk_ms": talk,
        "hold_ms": hold,
        "acw_ms": acw,
        "held": held,
        "hold_count": holds,
        "transferred": transferred,
        "fcr_resolved": resolved,
        "fcr_known": known,
        "fcr_repeat_known": by_repeat,
        "fcr_repeat_days": sorted(repeats),
        "fcr_repeat_count": [repeats[d] for d in sorted(repeats)],
        "csat_counts": csat_counts,
        "nps_counts": nps_counts,
    }


@settings(max_examples=200)
@given(st.lists(contacts(), max_size=40))
def test_sum_of_single_contacts_equals_the_direct_aggregate(cs: list[ContactFacts]) -> None:
    by_one = KpiSums.merge(KpiSums.from_contact(c) for c in cs)
    assert by_one == KpiSums.from_contacts(cs)
    assert by_one.to_row() == direct_row(cs)
    assert KpiSums.from_row(by_one.to_row()) == by_one


def without_maxima(s: KpiSums) -> KpiSums:
    from dataclasses import replace

    return replace(
        s, waits={o: replace(h, max_ms=None, max_exact=True) for o, h in s.waits.items()}
    )


@settings(max_examples=200)
@given(st.lists(contacts(), max_size=25), st.lists(contacts(), max_size=25))
def test_a_plus_b_minus_b_is_a(xs: list[ContactFacts], ys: list[ContactFacts]) -> None:
    a, b = KpiSums.from_contacts(xs), KpiSums.from_contacts(ys)
    back = (a + b) - b
    assert without_maxima(back) == without_maxima(a)
    for outcome in FINAL_OUTCOMES:
        got, want = back.hist(outcome), a.hist(outcome)
        if want.max_ms is None:
            assert got.max_ms is None
        elif got.max_exact:
            assert got.max_ms == want.max_ms
        else:  # an upper bound inside the top bucket
            assert got.max_ms is not None
            assert want.max_ms <= got.max_ms <= max(want.counts) * 1000
        removed_max = b.hist(outcome).max_ms
        if want.max_ms is not None and (removed_max is None or removed_max < want.max_ms):
            assert (got.max_ms, got.max_exact) == (want.max_ms, True)
    assert (b - b).is_empty  # removing everything leaves nothing, maxima included


@given(
    st.lists(contacts(), max_size=15),
    st.lists(contacts(), max_size=15),
    st.lists(contacts(), max_size=15),
)
def test_commutative_and_associative(
    xs: list[ContactFacts], ys: list[ContactFacts], zs: list[ContactFacts]
) -> None:
    a, b, c = (KpiSums.from_contacts(v) for v in (xs, ys, zs))
    assert a + b == b + a
    assert (
        (a + b) + c
        == a + (b + c)
        == KpiSums.merge([a, b, c])
        == KpiSums.from_contacts(xs + ys + zs)
    )
    assert a + KpiSums() == a


@settings(max_examples=100)
@given(st.lists(contacts(), min_size=1, max_size=40), st.data())
def test_a_correction_equals_the_rebuilt_row_except_an_inexact_max(
    cs: list[ContactFacts], data: st.DataObject
) -> None:
    removed = data.draw(st.lists(st.sampled_from(range(len(cs))), unique=True))
    kept = [c for i, c in enumerate(cs) if i not in removed]
    corrected = KpiSums.from_contacts(cs) - KpiSums.from_contacts([cs[i] for i in removed])
    rebuilt = KpiSums.from_contacts(kept)
    assert without_maxima(corrected) == without_maxima(rebuilt)
    for terms in (ContractTerms(), ContractTerms(ServiceLevelFormula(short_abandon_s=0), True)):
        assert queue_counts(corrected, terms) == queue_counts(rebuilt, terms)
        got, want = longest_wait(corrected, terms), longest_wait(rebuilt, terms)
        if want.value is None or not got.upper_bound:
            assert got.value == want.value
        else:  # a bound: at least the true longest wait, at most its bucket's edge
            assert got.value is not None
            assert got.value >= want.value
            edge = wait_edge(round(want.value * 1000))
            assert edge == OVERFLOW_EDGE or got.value <= edge
