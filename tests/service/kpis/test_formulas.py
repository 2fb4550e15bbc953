"""Every KPI of KPIS.md on small fixtures whose figures are worked out by hand.

The main fixture (T = 20 s, short abandons ≤ 5 s unless a test says otherwise):

    answered  wait     talk  hold(n)  acw  transferred  fcr    csat  nps
    a1        0        100   0        20   no           True   5     10
    a2        12.5     200   30 (1)   10   yes          False  4     9
    a3        20       300   0        30   no           None   3     8
    a4        20.001   150   60 (2)   0    no           True   1     0
    a5        45       250   0        40   no           True   -     -
    abandoned b1 2 · b2 5 · b3 5.001 · b4 20 · b5 30 · b6 90
    exits     timeout 300 · exit_key 3 · overflow 60 · transferred_out 15
    in queue  one contact
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from service.kpis.formulas import (
    AgentTime,
    ContractTerms,
    FormulaError,
    RepeatFcr,
    ServiceLevelFormula,
    Unit,
    abandonment_rate,
    aht,
    answer_rate,
    asa,
    average_acw,
    average_hold,
    average_queue_time,
    average_talk,
    average_time_to_abandon,
    compute_all,
    conformance,
    contacts_per_hour,
    csat,
    csat_mean,
    fcr,
    hold_per_answered,
    hold_rate,
    logged_in_time,
    longest_wait,
    nps,
    occupancy,
    offered,
    queue_counts,
    schedule_adherence,
    service_level,
    short_abandons,
    shrinkage,
    transfer_rate,
    utilization,
)
from service.kpis.sums import ContactFacts, KpiSums, ThresholdNotOnGrid

MINUS = "\u2212"


def answered(wait: object, **kw: object) -> ContactFacts:
    return ContactFacts("answered", wait_s=wait, **kw)  # type: ignore[arg-type]


def contact(outcome: str, wait: object) -> ContactFacts:
    return ContactFacts(outcome, wait_s=wait)  # type: ignore[arg-type]


FIXTURE = [
    answered(0, talk_s=100, acw_s=20, resolved_first_contact=True, csat=5, nps=10),
    answered(
        12.5,
        talk_s=200,
        hold_s=30,
        hold_count=1,
        acw_s=10,
        transferred=True,
        resolved_first_contact=False,
        csat=4,
        nps=9,
    ),
    answered(20, talk_s=300, acw_s=30, csat=3, nps=8),
    answered(
        Decimal("20.001"),
        talk_s=150,
        hold_s=60,
        hold_count=2,
        resolved_first_contact=True,
        csat=1,
        nps=0,
    ),
    answered(45, talk_s=250, acw_s=40, resolved_first_contact=True),
    contact("abandoned", 2),
    contact("abandoned", 5),
    contact("abandoned", Decimal("5.001")),
    contact("abandoned", 20),
    contact("abandoned", 30),
    contact("abandoned", 90),
    contact("timeout", 300),
    contact("exit_key", 3),
    contact("overflow", 60),
    contact("transferred_out", 15),
    ContactFacts("in_queue"),
]
SUMS = KpiSums.from_contacts(FIXTURE)
DEFAULT = ContractTerms()
KEEP_SHORT = ContractTerms(ServiceLevelFormula(short_abandon_s=0))
TIMEOUTS = ContractTerms(timeouts_as_abandons=True)


def sl(preset: str, **kw: object) -> ContractTerms:
    return ContractTerms(ServiceLevelFormula.preset(preset, **kw))  # type: ignore[arg-type]


# ---- counts -----------------------------------------------------------------------


def test_counts_default_terms() -> None:
    c = queue_counts(SUMS, DEFAULT)
    # A = a1..a5 = 5; A_T: waits 0, 12.5, 20 (exactly T, inclusive) = 3; 20.001 is over.
    assert (c.answered, c.answered_within) == (5, 3)
    # abandons 2, 5 are short (≤ 5 s, inclusive); 5.001, 20, 30, 90 stay: Ab = 4,
    # of which 5.001 and 20 are within T: Ab_T = 2.
    assert (c.short_abandons, c.abandoned, c.abandoned_within) == (2, 4, 2)
    # X = timeout, exit_key, overflow, transferred_out = 4; O = 5 + 4 + 4 = 13.
    assert (c.other_exits, c.offered) == (4, 13)


def test_counts_short_abandons_kept() -> None:
    c = queue_counts(SUMS, KEEP_SHORT)
    # Ab = all 6 abandons; Ab_T = 2, 5, 5.001, 20 = 4; O = 5 + 6 + 4 = 15
    assert (c.short_abandons, c.abandoned, c.abandoned_within, c.offered) == (0, 6, 4, 15)


def test_counts_timeouts_as_abandons() -> None:
    c = queue_counts(SUMS, TIMEOUTS)
    # abandons now also timeout (300) and exit_key (3, short): short = 2, 5, 3 = 3;
    # Ab = 5.001, 20, 30, 90, 300 = 5; Ab_T = 5.001, 20 = 2; X = overflow,
    # transferred_out = 2; O = 5 + 5 + 2 = 12
    assert (c.short_abandons, c.abandoned, c.abandoned_within) == (3, 5, 2)
    assert (c.other_exits, c.offered) == (2, 12)


def test_offered_and_short_abandons_reported_on_their_own() -> None:
    assert offered(SUMS).value == 13
    s = short_abandons(SUMS)
    assert s.value == 2
    assert s.formula == "abandons after waiting ≤ 5 s"
    assert short_abandons(SUMS, KEEP_SHORT).value == 0
    assert SUMS.in_queue == 1  # in queue: no figure, only the live count


# ---- rates ------------------------------------------------------------------------


def test_answer_and_abandonment_rates() -> None:
    a = answer_rate(SUMS)
    assert (a.numerator, a.denominator, a.value) == (5, 13, 5 / 13)
    assert a.formula == "A / O, short abandons ≤ 5 s excluded"
    assert a.machine == {
        "kpi": "answer_rate",
        "unit": "ratio",
        "numerator": "A",
        "denominator": "O",
        "short_abandon_s": 5,
        "timeouts_as_abandons": False,
    }
    ab = abandonment_rate(SUMS)
    assert (ab.numerator, ab.denominator, ab.value) == (4, 13, 4 / 13)
    # short abandons kept: 6 / 15 = 0.4
    assert abandonment_rate(SUMS, KEEP_SHORT).value == 0.4
    assert answer_rate(SUMS, KEEP_SHORT).formula == "A / O, short abandons kept"
    # timeouts and key exits as abandons: 5 / 12
    t = abandonment_rate(SUMS, TIMEOUTS)
    assert (t.numerator, t.denominator) == (5, 12)
    assert t.formula == (
        "Ab / O, short abandons ≤ 5 s excluded, timeouts and key exits count as abandons"
    )


# ---- service level ----------------------------------------------------------------


def test_four_presets_give_four_numbers() -> None:
    # A = 5, A_T = 3, Ab = 4, Ab_T = 2
    expected = {
        "SL1": (3, 9, "A_T / (A + Ab)"),  # 3 / (5 + 4)
        "SL2": (3, 7, f"A_T / (A + Ab {MINUS} Ab_T)"),  # 3 / (5 + 4 - 2)
        "SL3": (3, 5, "A_T / A"),  # 3 / 5
        "SL4": (5, 9, "(A_T + Ab_T) / (A + Ab)"),  # (3 + 2) / (5 + 4)
    }
    values = set()
    for name, (num, den, expr) in expected.items():
        r = service_level(SUMS, sl(name))
        assert (r.numerator, r.denominator, r.value) == (num, den, num / den), name
        assert r.formula == f"{expr}, T = 20 s, short abandons ≤ 5 s excluded"
        assert r.machine["preset"] == name
        values.add(r.value)
    assert len(values) == 4


def test_default_service_level_is_sl1_t20_short5() -> None:
    r = service_level(SUMS)
    assert r.formula == "A_T / (A + Ab), T = 20 s, short abandons ≤ 5 s excluded"
    assert r.machine == {
        "kpi": "service_level",
        "unit": "ratio",
        "preset": "SL1",
        "threshold_s": 20,
        "numerator": "answered_within",
        "denominator": ["answered", "abandoned_after_t", "abandoned_within_t"],
        "short_abandon_s": 5,
        "aggregation": "ratio_of_sums",
        "timeouts_as_abandons": False,
    }
    assert r.value == 3 / 9


def test_service_level_variants() -> None:
    # short abandons kept: A_T = 3, A = 5, Ab = 6, Ab_T = 4
    assert service_level(SUMS, sl("SL1", short_abandon_s=0)).value == 3 / 11  # 3 / (5 + 6)
    assert service_level(SUMS, sl("SL2", short_abandon_s=0)).value == 3 / 7  # 3 / (5 + 6 - 4)
    assert service_level(SUMS, sl("SL4", short_abandon_s=0)).value == 7 / 11  # (3 + 4) / 11
    # other exits on: SL1 + X = 3 / (5 + 4 + 4) = 3 / 13
    with_x = ServiceLevelFormula(other_exits=True)
    r = service_level(SUMS, with_x)
    assert (r.numerator, r.denominator) == (3, 13)
    assert r.formula.startswith("A_T / (A + Ab + X), T = 20 s")
    assert r.machine["preset"] is None
    # handled_within with X: (3 + 2) / 13
    hw = ServiceLevelFormula(numerator="handled_within", other_exits=True)
    assert service_level(SUMS, hw).value == 5 / 13
    # timeouts as abandons: A_T / (A + Ab) = 3 / (5 + 5)
    r = service_level(SUMS, TIMEOUTS)
    assert (r.numerator, r.denominator) == (3, 10)
    # T = 45: A_T = 0, 12.5, 20, 20.001, 45 = 5; Ab_T = 5.001, 20, 30 = 3 → SL1 5 / 9
    assert service_level(SUMS, sl("SL1", threshold_s=45)).value == 5 / 9
    # T = 0: only the 0 s answer; Ab_T = 0 (every abandon waited > 0) → 1 / 9
    assert service_level(SUMS, sl("SL1", threshold_s=0)).value == 1 / 9
    # T = 3 below short_abandon_s = 5: Ab_T holds only short abandons, so 0
    c = queue_counts(SUMS, sl("SL4", threshold_s=3))
    assert (c.answered_within, c.abandoned_within) == (1, 0)


def test_exactly_t_is_within_and_a_millisecond_more_is_not() -> None:
    sums = KpiSums.from_contacts([answered(20), answered(Decimal("20.001"))])
    assert service_level(sums, sl("SL3")).value == 1 / 2
    assert service_level(sums, sl("SL3", threshold_s=21)).value == 1.0


def test_mean_of_intervals_vs_ratio_of_sums() -> None:
    intervals = [
        KpiSums.from_contacts([answered(10), answered(30)]),  # SL1 1 / 2
        KpiSums.from_contacts([answered(5)] * 3 + [contact("abandoned", 40)]),  # 3 / 4
        KpiSums(),  # no data: skipped
        KpiSums.from_contacts([contact("abandoned", 3)]),  # only a short abandon: 0 / 0
    ]
    mean = ServiceLevelFormula(aggregation="mean_of_intervals")
    r = service_level(intervals, mean)
    assert r.value == 0.625  # (1/2 + 3/4) / 2 = 5/8
    assert r.formula == (
        "A_T / (A + Ab), T = 20 s, short abandons ≤ 5 s excluded, "
        "mean of 2 interval ratios (2 without data skipped)"
    )
    assert (r.machine["intervals"], r.machine["intervals_with_data"]) == (4, 2)
    # ratio of sums: (1 + 3) / (2 + 3 + 1) = 4 / 6
    assert service_level(intervals, ServiceLevelFormula()).value == 4 / 6
    assert service_level([KpiSums()], mean).value is None
    with pytest.raises(FormulaError):
        service_level(KpiSums.merge(intervals), mean)
    with pytest.raises(FormulaError):
        compute_all(KpiSums.merge(intervals), ContractTerms(mean))
    assert compute_all(KpiSums(), ContractTerms(mean), intervals)["service_level"].value == 0.625


# ---- times ------------------------------------------------------------------------


def test_wait_times() -> None:
    # answered waits 0 + 12.5 + 20 + 20.001 + 45 = 97.501 s over 5
    r = asa(SUMS)
    assert (r.numerator, r.denominator, r.value, r.unit) == (97_501, 5, 19.5002, Unit.SECONDS)
    # abandons, short ones removed: 5.001 + 20 + 30 + 90 = 145.001 s over 4
    r = average_time_to_abandon(SUMS)
    assert (r.numerator, r.denominator, r.value) == (145_001, 4, 36.25025)
    # (97.501 + 145.001) / (5 + 4) = 242.502 / 9
    r = average_queue_time(SUMS)
    assert (r.numerator, r.denominator, r.value) == (242_502, 9, 242_502 / 9_000)
    # short abandons kept: abandons 2 + 5 + 145.001 = 152.001 s over 6
    assert average_time_to_abandon(SUMS, KEEP_SHORT).value == 152_001 / 6_000
    # timeouts as abandons: + 300 s (exit_key 3 s is short): 445.001 / 5
    assert average_time_to_abandon(SUMS, TIMEOUTS).value == 445_001 / 5_000


def test_longest_wait() -> None:
    r = longest_wait(SUMS)
    assert (r.value, r.upper_bound) == (90.0, False)  # abandon b6; exits do not count
    assert longest_wait(SUMS, TIMEOUTS).value == 300.0  # the timeout now is an abandon
    # only short abandons beside a 1 s answer: they leave the figure unless kept
    short = KpiSums.from_contacts([answered(1), contact("abandoned", 4)])
    assert longest_wait(short).value == 1.0
    assert longest_wait(short, KEEP_SHORT).value == 4.0
    assert longest_wait(KpiSums.from_contacts([contact("abandoned", 4)])).value is None


def test_handling_times_and_rates() -> None:
    # talk 100 + 200 + 300 + 150 + 250 = 1000 s; hold 30 + 60 = 90 s;
    # acw 20 + 10 + 30 + 0 + 40 = 100 s; A = 5; held = a2, a4 = 2
    assert aht(SUMS).value == 238.0  # (1000 + 90 + 100) / 5
    assert aht(SUMS).formula == "Σ (talk + hold + acw) / A"
    assert average_talk(SUMS).value == 200.0  # 1000 / 5
    assert average_acw(SUMS).value == 20.0  # 100 / 5
    assert average_hold(SUMS).value == 45.0  # 90 / 2
    assert hold_per_answered(SUMS).value == 18.0  # 90 / 5
    assert hold_rate(SUMS).value == 0.4  # 2 / 5
    assert transfer_rate(SUMS).value == 0.2  # 1 / 5
    assert SUMS.hold_count == 3  # 1 + 2


def test_fcr_csat_nps() -> None:
    # flags: a1 True, a2 False, a3 unknown, a4 True, a5 True → 3 / 4
    r = fcr(SUMS)
    assert (r.numerator, r.denominator, r.value) == (3, 4, 0.75)
    # the repeat rule resolved a3 (no repeat within the window): (3 + 1) / (4 + 1) = 4 / 5 of A
    assert fcr(SUMS, repeat=RepeatFcr(resolved=1, evaluated=1)).value == 0.8
    with pytest.raises(FormulaError):
        fcr(SUMS, repeat=RepeatFcr(resolved=0, evaluated=2))  # only one unflagged
    # CSAT 5, 4, 3, 1: top-two-box 2 / 4; mean 13 / 4
    assert csat(SUMS).value == 0.5
    assert csat_mean(SUMS).value == 3.25
    # NPS 10, 9, 8, 0: promoters 2, detractors 1 of 4 → 100 · (2 - 1) / 4
    r = nps(SUMS)
    assert (r.numerator, r.denominator, r.value) == (1, 4, 25.0)


def test_survey_on_an_unanswered_contact_counts() -> None:
    sums = KpiSums.from_contacts(
        [answered(1, nps=10), ContactFacts("abandoned", wait_s=30, nps=6, csat=2)]
    )
    assert nps(sums).value == 0.0  # (1 promoter - 1 detractor) / 2
    assert csat(sums).value == 0.0  # 0 of 1 response ≥ 4


def test_zero_denominators_are_no_data() -> None:
    empty = KpiSums()
    for name, result in compute_all(empty).items():
        if name in ("offered", "short_abandons"):
            assert result.value == 0
        else:
            assert result.value is None, name
            assert result.no_data
    # abandons only: the answered-based figures have no data, the rates have
    only_abandons = KpiSums.from_contacts([contact("abandoned", 30)])
    assert answer_rate(only_abandons).value == 0.0
    assert service_level(only_abandons).value == 0.0  # 0 / (0 + 1)
    assert service_level(only_abandons, sl("SL3")).value is None  # 0 / 0
    assert asa(only_abandons).value is None


def test_compute_all_names_every_kpi() -> None:
    values = compute_all(SUMS)
    assert values["service_level"].value == 3 / 9
    assert values["answer_rate"].value == 5 / 13
    for name, result in values.items():
        assert result.kpi == name
        assert result.machine["kpi"] == name
        assert result.formula


# ---- the formula object -------------------------------------------------------------


def test_formula_object_round_trips_and_accepts_names() -> None:
    for name in ("SL1", "SL2", "SL3", "SL4", "sl2"):
        f = ServiceLevelFormula.from_mapping(name)
        assert ServiceLevelFormula.from_mapping(f.to_mapping()) == f
    f = ServiceLevelFormula.from_mapping(
        {
            "preset": "SL2",
            "threshold_s": 30,
            "short_abandon_s": 0,
            "aggregation": "mean_of_intervals",
        }
    )
    assert (f.preset_name, f.threshold_s, f.short_abandon_s) == ("SL2", 30, 0)
    custom = ServiceLevelFormula.from_mapping(
        {"threshold_s": 15, "denominator": ["answered", "abandoned_after_t", "other_exits"]}
    )
    assert custom.expression() == f"A_T / (A + Ab {MINUS} Ab_T + X)"
    assert custom.preset_name is None


@pytest.mark.parametrize(
    "spec",
    [
        "SL9",
        {"threshold_s": 3601},  # between the per-second and per-minute grids
        {"threshold_s": 20.5},
        {"threshold_s": True},
        {"short_abandon_s": -1},
        {"numerator": "answered_soon"},
        {"aggregation": "median"},
        {"denominator": ["abandoned_after_t"]},  # A_T outside its denominator
        {"numerator": "handled_within", "denominator": ["answered", "abandoned_after_t"]},
        {"denominator": ["answered", "abandons"]},
        {"colour": "red"},
        {"preset": "SL1", "denominator": ["answered"]},  # contradicts the preset
    ],
)
def test_bad_formulas_are_refused(spec: str | dict[str, object]) -> None:
    with pytest.raises(FormulaError):  # ThresholdOffGrid is one too
        ServiceLevelFormula.from_mapping(spec)


def test_thresholds_on_the_grid() -> None:
    for t in (0, 1, 3599, 3600, 3660, 14_400, 86_400, 90_000, 31 * 86_400):
        assert ServiceLevelFormula(threshold_s=t).threshold_s == t
    for t in (3601, 3630, 86_460, 90_060, 31 * 86_400 + 3600):
        with pytest.raises(FormulaError):
            ServiceLevelFormula(threshold_s=t)
    with pytest.raises(ThresholdNotOnGrid):
        queue_counts(SUMS, threshold_s=3601)


def test_four_business_hours_threshold() -> None:
    # e-mail: "answered within 4 business hours" = 14 400 s, on the minute grid.
    # replies after 14 399.999, 14 400, 14 400.001 and 14 459 business seconds:
    # the first two are within, the last two fall in the bucket (14 400, 14 460].
    sums = KpiSums.from_contacts(
        [answered(Decimal(w)) for w in ("14399.999", "14400", "14400.001", "14459")]
    )
    assert service_level(sums, sl("SL3", threshold_s=14_400)).value == 0.5
    assert service_level(sums, sl("SL3", threshold_s=14_460)).value == 1.0


def test_formula_terms_are_frozen_values() -> None:
    f = ServiceLevelFormula()
    assert replace(f, threshold_s=30).threshold_s == 30
    assert ContractTerms().short_abandon_s == 5


# ---- agent KPIs -------------------------------------------------------------------


def test_agent_kpis() -> None:
    # an 8 h login: available 0.5 h, on contact 5 h, ACW 1 h, not ready 1.5 h
    t = AgentTime(available_s=1800, on_contact_s=18_000, acw_s=3600, not_ready_s=5400)
    assert logged_in_time(t).value == 28_800
    assert occupancy(t).value == 12 / 13  # 21 600 / 23 400
    assert utilization(t).value == 0.75  # 21 600 / 28 800
    assert schedule_adherence(25_920, 28_800).value == 0.9
    assert conformance(28_800, 30_600).value == 16 / 17
    assert shrinkage(t, 30_600).value == 4 / 17  # 1 - 23 400 / 30 600 = 7 200 / 30 600
    assert contacts_per_hour(48, 28_800).value == 6.0  # 48 / 8 h
    idle = AgentTime()
    assert occupancy(idle).value is None
    assert utilization(idle).value is None
    assert contacts_per_hour(0, 0).value is None
    assert shrinkage(idle, 0).value is None
    with pytest.raises(FormulaError):
        AgentTime(available_s=-1)
    with pytest.raises(FormulaError):
        schedule_adherence(10, 5)
