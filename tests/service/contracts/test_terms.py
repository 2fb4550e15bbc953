"""Contract terms without I/O: presets, formula naming, comparators and ranges per KPI."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.contracts.terms import (
    KPI_RULES,
    KPIS,
    Target,
    check_terms,
    expand_targets,
)


def _error_field(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Target.model_validate(data)
    return ".".join(str(p) for p in info.value.errors()[0]["loc"])


@pytest.mark.parametrize(
    ("preset", "expression"),
    [
        ("SL1", "A_T / (A + Ab)"),
        ("SL2", "A_T / (A + Ab - Ab_T)"),
        ("SL3", "A_T / A"),
        ("SL4", "(A_T + Ab_T) / (A + Ab)"),
    ],
)
def test_presets_expand_and_are_named_again(preset: str, expression: str) -> None:
    target = Target.model_validate(
        {"kpi": "service_level", "formula": preset.lower(), "threshold_s": 20, "target": 0.8}
    )
    [read] = expand_targets([target.stored()], short_abandon_s=5)
    assert read.formula is not None
    assert read.formula.preset == preset
    assert read.formula.expression == expression
    assert read.formula.threshold_s == 20
    assert read.formula.short_abandon_s == 5
    assert read.formula.aggregation == "ratio_of_sums"
    assert read.comparator == ">="


def test_default_formula_is_sl1_and_threshold_may_sit_in_the_formula() -> None:
    target = Target.model_validate(
        {"kpi": "service_level", "formula": {"threshold_s": 30}, "target": 0.9}
    )
    assert target.threshold_s == 30
    [read] = expand_targets([target.stored()], short_abandon_s=0)
    assert read.formula is not None
    assert (read.formula.preset, read.formula.short_abandon_s) == ("SL1", 0)
    plain = Target.model_validate({"kpi": "service_level", "threshold_s": 20, "target": 0.8})
    assert plain.formula is not None
    assert plain.formula.threshold_s == 20


def test_custom_formula_has_no_preset_and_keeps_its_own_short_abandons() -> None:
    target = Target.model_validate(
        {
            "kpi": "service_level",
            "threshold_s": 15,
            "target": 0.75,
            "formula": {
                "numerator": "answered_within",
                "denominator": {"other_exits": True},
                "short_abandon_s": 10,
                "aggregation": "mean_of_intervals",
            },
        }
    )
    [read] = expand_targets([target.stored()], short_abandon_s=5)
    assert read.formula is not None
    assert read.formula.preset is None
    assert read.formula.expression == "A_T / (A + Ab + X)"
    assert read.formula.short_abandon_s == 10
    assert read.formula.aggregation == "mean_of_intervals"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kpi": "answer_rate", "comparator": "<=", "target": 0.9}, "comparator"),
        ({"kpi": "abandonment_rate", "comparator": ">=", "target": 0.05}, "comparator"),
        ({"kpi": "asa", "comparator": ">", "target": 30}, "comparator"),
        ({"kpi": "service_level", "threshold_s": 20, "target": 80}, "target"),
        ({"kpi": "service_level", "threshold_s": 20, "target": -0.1}, "target"),
        ({"kpi": "service_level", "threshold_s": 0, "target": 0.8}, "threshold_s"),
        ({"kpi": "service_level", "threshold_s": -5, "target": 0.8}, "threshold_s"),
        ({"kpi": "service_level", "target": 0.8}, "threshold_s"),
        (
            {"kpi": "service_level", "formula": {"threshold_s": 0}, "target": 0.8},
            "formula.threshold_s",
        ),
        (
            {
                "kpi": "service_level",
                "formula": {"threshold_s": 20},
                "threshold_s": 30,
                "target": 0.8,
            },
            "threshold_s",
        ),
        ({"kpi": "service_level", "formula": "SL9", "threshold_s": 20, "target": 0.8}, "formula"),
        (
            {
                "kpi": "service_level",
                "threshold_s": 20,
                "target": 0.8,
                "formula": {"denominator": {"answered": False}},
            },
            "formula.denominator.answered",
        ),
        (
            {
                "kpi": "service_level",
                "threshold_s": 20,
                "target": 0.8,
                "formula": {
                    "numerator": "handled_within",
                    "denominator": {"abandoned_within_t": False},
                },
            },
            "formula.denominator",
        ),
        (
            {"kpi": "service_level", "threshold_s": 20, "target": 0.8, "formula": {"weights": 1}},
            "formula.weights",
        ),
        ({"kpi": "answer_rate", "threshold_s": 20, "target": 0.9}, "threshold_s"),
        ({"kpi": "answer_rate", "formula": "SL1", "target": 0.9}, "formula"),
        ({"kpi": "asa", "target": 0}, "target"),
        ({"kpi": "nps", "target": 1.5}, "target"),
        ({"kpi": "speed", "target": 1}, "kpi"),
        ({"kpi": "fcr", "target": 0.7, "granularity": "year"}, "granularity"),
        ({"kpi": "fcr", "target": 0.7, "channel": "fax"}, "channel"),
    ],
)
def test_invalid_targets_name_the_field(data: dict[str, Any], field: str) -> None:
    assert _error_field(data) == field


def test_directions_and_units() -> None:
    assert Target.model_validate({"kpi": "abandonment_rate", "target": 0.05}).comparator == "<="
    assert Target.model_validate({"kpi": "asa", "target": 30}).comparator == "<="
    assert Target.model_validate({"kpi": "average_handle_time", "target": 300}).comparator == "<="
    assert Target.model_validate({"kpi": "nps", "target": -0.2}).target == -0.2
    assert Target.model_validate({"kpi": "occupancy", "comparator": "<=", "target": 0.85})
    assert Target.model_validate({"kpi": "occupancy", "comparator": ">=", "target": 0.7})
    # Every KPI of KPIS.md has a rule whose default comparator is allowed.
    for kpi in KPIS:
        assert KPI_RULES[kpi].comparators[0] in (">=", "<=")


def _targets(*items: dict[str, Any]) -> list[Target]:
    return [Target.model_validate(i) for i in items]


def test_cross_field_rules() -> None:
    ok: dict[str, Any] = {
        "measurement_period": "month",
        "project_channels": ["voice"],
        "has_business_hours": False,
        "monthly_fee": None,
        "currency": None,
        "service_credits": None,
    }
    sl = {"kpi": "service_level", "threshold_s": 20, "target": 0.8}
    assert check_terms(_targets(sl), **ok) is None

    def problem(targets: list[Target], **changes: Any) -> str | None:
        found = check_terms(targets, **{**ok, **changes})
        return found.field if found else None

    assert problem(_targets(sl), monthly_fee=1000) == "currency"
    assert problem(_targets(sl), service_credits={"x": 1}) == "monthly_fee"
    assert problem(_targets({**sl, "granularity": "month"}), measurement_period="week") == (
        "targets.0.granularity"
    )
    assert problem(_targets(sl, {**sl, "channel": "chat"})) == "targets.1.channel"
    assert problem(_targets({**sl, "business_hours_only": True})) == "targets.0.business_hours_only"
    assert problem(_targets({**sl, "business_hours_only": True}), has_business_hours=True) is None
    assert problem(_targets(sl, sl)) == "targets.1"
    assert problem(_targets(sl, {**sl, "granularity": "interval"})) is None
