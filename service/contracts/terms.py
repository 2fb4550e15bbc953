"""Contract terms: SLA targets and the service-level formula object (KPIS.md).

Pure (no I/O), shared by the API, the SLA engine and the reports, so a target
means the same thing everywhere:

* a **target** is `(kpi, comparator, target, granularity)` plus, for service
  level, its formula and threshold T. Each KPI has a unit (a ratio 0-1, a
  signed ratio -1-1 for NPS, seconds, contacts per hour) and a direction:
  a comparator that points the wrong way for the KPI ("abandonment rate ≥
  5 %") is refused, naming the field;
* the **service-level formula** is stored as the full object; the presets
  SL1-SL4 are accepted by name on input and named again on output when the
  object matches one (`preset`), beside a printable `expression`;
* `short_abandon_s` of a formula left unset means "the contract's", resolved
  when read (`expand_targets`), so a new contract version that changes the
  contract's value changes every formula that did not pin its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from service.kpis.formulas import PRESETS as SL_PRESETS
from service.kpis.formulas import ServiceLevelFormula as SlFormula
from service.kpis.sums import LAST_MINUTE_EDGE, LAST_SECOND_EDGE, is_on_grid

Kpi = Literal[
    "service_level",
    "answer_rate",
    "abandonment_rate",
    "asa",
    "average_queue_time",
    "longest_wait",
    "average_time_to_abandon",
    "average_handle_time",
    "average_talk_time",
    "average_acw",
    "average_hold",
    "hold_rate",
    "transfer_rate",
    "fcr",
    "csat",
    "nps",
    "occupancy",
    "utilization",
    "schedule_adherence",
    "conformance",
    "shrinkage",
    "contacts_per_hour",
]
Comparator = Literal[">=", ">", "<=", "<"]
Granularity = Literal["interval", "day", "week", "month"]
MeasurementPeriod = Literal["day", "week", "month", "quarter"]
Channel = Literal["voice", "chat", "email", "social"]
Preset = Literal["SL1", "SL2", "SL3", "SL4"]
Unit = Literal["ratio", "signed_ratio", "seconds", "per_hour"]

KPIS: tuple[str, ...] = get_args(Kpi)
MAX_SECONDS = 30 * 86_400  # an e-mail queue may promise "within 5 business days"
HIGHER = (">=", ">")
LOWER = ("<=", "<")
BOTH = (">=", "<=", ">", "<")


@dataclass(frozen=True)
class KpiRule:
    unit: Unit
    comparators: tuple[str, ...]
    """Allowed comparators; the first is the default."""


KPI_RULES: dict[str, KpiRule] = {
    "service_level": KpiRule("ratio", HIGHER),
    "answer_rate": KpiRule("ratio", HIGHER),
    "abandonment_rate": KpiRule("ratio", LOWER),
    "asa": KpiRule("seconds", LOWER),
    "average_queue_time": KpiRule("seconds", LOWER),
    "longest_wait": KpiRule("seconds", LOWER),
    # Contracts cap it either way: "callers wait at least 60 s before giving up" or the reverse.
    "average_time_to_abandon": KpiRule("seconds", BOTH),
    "average_handle_time": KpiRule("seconds", LOWER),
    "average_talk_time": KpiRule("seconds", LOWER),
    "average_acw": KpiRule("seconds", LOWER),
    "average_hold": KpiRule("seconds", LOWER),
    "hold_rate": KpiRule("ratio", LOWER),
    "transfer_rate": KpiRule("ratio", LOWER),
    "fcr": KpiRule("ratio", HIGHER),
    "csat": KpiRule("ratio", HIGHER),
    "nps": KpiRule("signed_ratio", HIGHER),
    # A floor (efficiency) or a ceiling (burn-out): both appear in contracts.
    "occupancy": KpiRule("ratio", BOTH),
    "utilization": KpiRule("ratio", HIGHER),
    "schedule_adherence": KpiRule("ratio", HIGHER),
    "conformance": KpiRule("ratio", HIGHER),
    "shrinkage": KpiRule("ratio", LOWER),
    "contacts_per_hour": KpiRule("per_hour", HIGHER),
}
assert set(KPI_RULES) == set(KPIS)

GRANULARITY_RANK = {"interval": 0, "day": 1, "week": 2, "month": 3, "quarter": 4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Denominator(_Strict):
    """Which contacts the service level is a share of (KPIS.md, "Service level")."""

    answered: bool = True
    abandoned_after_t: bool = True
    abandoned_within_t: bool = True
    other_exits: bool = False

    @field_validator("answered")
    @classmethod
    def _answered_counts(cls, value: bool) -> bool:
        if not value:
            raise ValueError("answered contacts must count in the denominator")
        return value


def _preset_spec(name: str) -> dict[str, Any]:
    formula = SlFormula.preset(name)
    return {
        "numerator": formula.numerator,
        "denominator": {
            "answered": formula.answered,
            "abandoned_after_t": formula.abandoned_after_t,
            "abandoned_within_t": formula.abandoned_within_t,
            "other_exits": formula.other_exits,
        },
    }


# One definition of the presets: the KPI engine's (service/kpis/formulas.py).
PRESETS: dict[str, dict[str, Any]] = {name: _preset_spec(name) for name in SL_PRESETS}


class ServiceLevelFormula(_Strict):
    """The full formula object. `threshold_s` is T; `short_abandon_s` unset: the contract's."""

    threshold_s: int | None = Field(default=None, gt=0, le=MAX_SECONDS)
    numerator: Literal["answered_within", "handled_within"] = "answered_within"
    denominator: Denominator = Field(default_factory=Denominator)
    short_abandon_s: int | None = Field(default=None, ge=0, le=600)
    aggregation: Literal["ratio_of_sums", "mean_of_intervals"] = "ratio_of_sums"

    @field_validator("denominator")
    @classmethod
    def _numerator_within_denominator(cls, value: Denominator, info: ValidationInfo) -> Denominator:
        if info.data.get("numerator") == "handled_within" and not value.abandoned_within_t:
            raise ValueError(
                "handled_within counts abandons within T as met, so they must count in the "
                "denominator (abandoned_within_t)"
            )
        return value


def preset_of(numerator: str, denominator: Denominator) -> str | None:
    """The preset name with this numerator and denominator, if any."""
    for name, spec in PRESETS.items():
        if numerator == spec["numerator"] and denominator == Denominator(**spec["denominator"]):
            return name
    return None


def expression_of(numerator: str, denominator: Denominator) -> str:
    """A printable formula, e.g. `A_T / (A + Ab)`, in the symbols of KPIS.md."""
    top = "A_T" if numerator == "answered_within" else "(A_T + Ab_T)"
    d = denominator
    terms = ["A"]
    if d.abandoned_after_t and d.abandoned_within_t:
        terms.append("Ab")
    elif d.abandoned_after_t:
        terms.append("Ab - Ab_T")
    elif d.abandoned_within_t:
        terms.append("Ab_T")
    if d.other_exits:
        terms.append("X")
    bottom = terms[0] if len(terms) == 1 else "(" + " + ".join(terms) + ")"
    return f"{top} / {bottom}"


def _value_range(unit: Unit) -> tuple[float, float, str]:
    if unit == "ratio":
        return 0.0, 1.0, "a ratio between 0 and 1 (0.8 = 80 %)"
    if unit == "signed_ratio":
        return -1.0, 1.0, "a ratio between -1 and 1 (NPS 0.3 = +30)"
    if unit == "seconds":
        return 0.0, float(MAX_SECONDS), f"seconds, more than 0 and at most {MAX_SECONDS}"
    return 0.0, 100_000.0, "contacts per hour, more than 0"


class Target(_Strict):
    """One SLA target of a contract."""

    kpi: Kpi
    formula: ServiceLevelFormula | None = Field(
        default=None,
        validate_default=True,
        description="service_level only: a preset name (SL1-SL4) or the full formula object; "
        "default SL1.",
    )
    threshold_s: int | None = Field(
        default=None,
        validate_default=True,
        description="service_level only: T in seconds (also accepted inside the formula).",
    )
    comparator: Comparator | None = Field(
        default=None,
        validate_default=True,
        description="Default: the KPI's direction ('>=' for rates met, '<=' for abandonment, "
        "ASA, AHT …).",
    )
    target: float = Field(
        # NaN compares false with both bounds of `_target`'s range check.
        allow_inf_nan=False,
        description="A ratio 0-1 for rates, seconds for times.",
    )
    granularity: Granularity = "month"
    channel: Channel | None = Field(default=None, description="Empty: every channel.")
    business_hours_only: bool = False

    @field_validator("formula", mode="before")
    @classmethod
    def _preset(cls, value: Any, info: ValidationInfo) -> Any:
        kpi = info.data.get("kpi")
        if kpi is not None and kpi != "service_level":
            if value is not None:
                raise ValueError("only service_level targets have a formula")
            return None
        if value is None:
            value = "SL1"
        if isinstance(value, str):
            spec = PRESETS.get(value.strip().upper())
            if spec is None:
                raise ValueError("a preset name (SL1, SL2, SL3, SL4) or a formula object")
            return {"numerator": spec["numerator"], "denominator": dict(spec["denominator"])}
        return value

    @field_validator("threshold_s")
    @classmethod
    def _threshold(cls, value: int | None, info: ValidationInfo) -> int | None:
        kpi = info.data.get("kpi")
        if kpi is None:
            return value
        if kpi != "service_level":
            if value is not None:
                raise ValueError("only service_level targets take a threshold")
            return None
        if value is not None and not 0 < value <= MAX_SECONDS:
            raise ValueError(f"the threshold must be more than 0 and at most {MAX_SECONDS} s")
        formula: ServiceLevelFormula | None = info.data.get("formula")
        inner = formula.threshold_s if formula is not None else None
        if value is None and inner is None:
            if "formula" not in info.data:
                return None  # the formula itself is invalid; that error is enough
            raise ValueError("service_level needs threshold_s (T, seconds)")
        if value is not None and inner is not None and value != inner:
            raise ValueError("differs from formula.threshold_s")
        threshold = value if value is not None else inner
        if threshold is not None and not is_on_grid(threshold):
            # The wait histograms answer T exactly on their grid only; a contract
            # off it could never be reported (every KPI read of the project: 422).
            raise ValueError(
                f"T = {threshold} s: thresholds are whole seconds up to {LAST_SECOND_EDGE} s, "
                f"whole minutes up to {LAST_MINUTE_EDGE} s and whole hours beyond"
            )
        return threshold

    @field_validator("comparator")
    @classmethod
    def _comparator(cls, value: str | None, info: ValidationInfo) -> str | None:
        kpi = info.data.get("kpi")
        if kpi is None:
            return value
        rule = KPI_RULES[kpi]
        if value is None:
            return rule.comparators[0]
        if value not in rule.comparators:
            allowed = " or ".join(f"'{c}'" for c in rule.comparators)
            raise ValueError(f"{kpi} targets compare with {allowed}")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: float, info: ValidationInfo) -> float:
        kpi = info.data.get("kpi")
        if kpi is None:
            return value
        unit = KPI_RULES[kpi].unit
        low, high, what = _value_range(unit)
        too_low = value < low or (value == low and unit in ("seconds", "per_hour"))
        if too_low or value > high:
            raise ValueError(f"{kpi} targets are {what}")
        return value

    @model_validator(mode="after")
    def _sync_threshold(self) -> Target:
        if self.formula is not None and self.formula.threshold_s != self.threshold_s:
            self.formula = self.formula.model_copy(update={"threshold_s": self.threshold_s})
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept in `contracts.targets` (formula expanded, short abandons unresolved)."""
        return self.model_dump(mode="json")


class ServiceCredits(_Strict):
    """Service credits: a share of the monthly fee per point below target, capped per period."""

    percent_of_fee_per_point: float = Field(gt=0, le=100, description="e.g. 2 (% of the fee)")
    cap_percent: float = Field(gt=0, le=100, description="e.g. 10 (% of the fee per period)")
    earn_back_periods: int | None = Field(
        default=None,
        ge=1,
        le=12,
        description="A credit is waived when the next N periods meet target; empty: no earn-back.",
    )


# --- read side -----------------------------------------------------------------


class ServiceLevelFormulaRead(BaseModel):
    threshold_s: int
    numerator: str
    denominator: Denominator
    short_abandon_s: int
    aggregation: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def preset(self) -> str | None:
        return preset_of(self.numerator, self.denominator)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expression(self) -> str:
        return expression_of(self.numerator, self.denominator)


class TargetRead(BaseModel):
    kpi: str
    formula: ServiceLevelFormulaRead | None
    threshold_s: int | None
    comparator: str
    target: float
    granularity: str
    channel: str | None
    business_hours_only: bool


def expand_targets(stored: list[dict[str, Any]], short_abandon_s: int) -> list[TargetRead]:
    """Stored targets with every formula complete: the contract's `short_abandon_s`
    fills formulas that did not pin their own."""
    out = []
    for raw in stored:
        data = dict(raw)
        formula = data.get("formula")
        if formula is not None:
            formula = dict(formula)
            if formula.get("short_abandon_s") is None:
                formula["short_abandon_s"] = short_abandon_s
            data["formula"] = formula
        out.append(TargetRead.model_validate(data))
    return out


@dataclass(frozen=True)
class TermsProblem:
    field: str
    message: str


def check_terms(
    targets: list[Target],
    *,
    measurement_period: str,
    project_channels: list[str],
    has_business_hours: bool,
    monthly_fee: object | None,
    currency: str | None,
    service_credits: object | None,
) -> TermsProblem | None:
    """Rules across fields (and against the project) that one field's validator cannot see."""
    if monthly_fee is not None and currency is None:
        return TermsProblem("currency", "a monthly fee needs a currency (ISO 4217, e.g. EUR)")
    if service_credits is not None and monthly_fee is None:
        return TermsProblem(
            "monthly_fee", "service credits are a share of the monthly fee: set the fee"
        )
    seen: dict[tuple[Any, ...], int] = {}
    for i, t in enumerate(targets):
        if GRANULARITY_RANK[t.granularity] > GRANULARITY_RANK[measurement_period]:
            return TermsProblem(
                f"targets.{i}.granularity",
                f"a {t.granularity} target cannot be measured in a {measurement_period} period",
            )
        if t.channel is not None and t.channel not in project_channels:
            return TermsProblem(
                f"targets.{i}.channel",
                f"the project has no {t.channel} channel (it has {', '.join(project_channels)})",
            )
        if t.business_hours_only and not has_business_hours:
            return TermsProblem(
                f"targets.{i}.business_hours_only",
                "the project has no business hours: set them first",
            )
        key = (t.kpi, t.channel, t.granularity, t.threshold_s, t.comparator)
        if key in seen:
            return TermsProblem(f"targets.{i}", f"the same target as targets.{seen[key]}")
        seen[key] = i
    return None
