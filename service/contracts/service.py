"""Rules of the contracts domain: versions by effective dates, never overlapping.

Every write locks the project's row first, so writers of one project's
contracts queue up: version numbers cannot collide and the overlap check
reads what the previous writer committed. The exclusion constraint
`contracts_no_overlap` holds the line regardless (a writer that skips the
lock still cannot store an overlap); its violation becomes the same 409.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from service.contracts import repository
from service.contracts.errors import (
    ContractInForce,
    ContractOverlaps,
    InvalidDates,
    InvalidTerms,
    NoContractInForce,
)
from service.contracts.models import Contract
from service.contracts.schemas import (
    TERM_FIELDS,
    ContractCreate,
    ContractTerms,
    ContractUpdate,
    ContractVersionCreate,
)
from service.contracts.terms import check_terms
from service.core import db as guarded
from service.core.concurrency import check_if_match
from service.core.time import utcnow
from service.projects import repository as projects
from service.projects.errors import UnknownProject
from service.projects.models import Project
from tenants.context import TenantContext, ensure_visible

NO_OVERLAP = ("contracts_no_overlap",)
IN_FORCE_EDITABLE = frozenset({"effective_to", "reference"})
CHECKED_TERMS = frozenset(TERM_FIELDS) - {"reference"}


def project_today(project: Project) -> date:
    """Today in the project's time zone: when a version is "in force" depends on it."""
    return datetime.now(ZoneInfo(project.time_zone)).date()


def _overlap(clash: Contract, field: str = "effective_from") -> ContractOverlaps:
    until = clash.effective_to.isoformat() if clash.effective_to else "open-ended"
    return ContractOverlaps(
        f"The dates overlap version {clash.version_number} "
        f"({clash.effective_from.isoformat()} to {until}).",
        field=field,
        clashing_contract_id=str(clash.id),
        clashing_version_number=clash.version_number,
        clashing_effective_from=clash.effective_from.isoformat(),
        clashing_effective_to=clash.effective_to.isoformat() if clash.effective_to else None,
    )


def _stored(terms: ContractTerms) -> dict[str, Any]:
    """Column values of validated terms."""
    margin = terms.volume_variance_margin
    return {
        "reference": terms.reference,
        "targets": [t.stored() for t in terms.targets],
        "short_abandon_s": terms.short_abandon_s,
        "timeouts_count_as_abandons": terms.timeouts_count_as_abandons,
        "fcr_window_days": terms.fcr_window_days,
        "measurement_period": terms.measurement_period,
        "interval_minutes": terms.interval_minutes,
        "volume_variance_margin": Decimal(str(margin)) if margin is not None else None,
        "monthly_fee": terms.monthly_fee,
        "currency": terms.currency,
        "service_credits": (
            terms.service_credits.model_dump(mode="json") if terms.service_credits else None
        ),
    }


def _merge(contract: Contract, data: ContractUpdate) -> ContractTerms:
    """The contract's terms with the fields `data` sets replaced, validated as a whole."""
    merged: dict[str, Any] = {name: getattr(contract, name) for name in TERM_FIELDS}
    if merged["volume_variance_margin"] is not None:
        merged["volume_variance_margin"] = float(merged["volume_variance_margin"])
    for name in data.model_fields_set & set(TERM_FIELDS):
        merged[name] = getattr(data, name)
    try:
        return ContractTerms.model_validate(merged)
    except ValidationError as exc:  # each part was valid; only a stored row could fail here
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidTerms(f"{field}: {first['msg']}", field=field) from exc


def _check(terms: ContractTerms, project: Project) -> None:
    problem = check_terms(
        terms.targets,
        measurement_period=terms.measurement_period,
        project_channels=list(project.channels),
        has_business_hours=bool(project.business_hours),
        monthly_fee=terms.monthly_fee,
        currency=terms.currency,
        service_credits=terms.service_credits,
    )
    if problem is not None:
        raise InvalidTerms(
            f"{problem.field}: {problem.message}",
            field=problem.field,
            errors=[{"in": "body", "field": problem.field, "message": problem.message}],
        )


async def _lock_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID
) -> Project:
    return ensure_visible(
        await projects.get_project(session, ctx, project_id, for_update=True), "project"
    )


async def _insert(session: AsyncSession, ctx: TenantContext, contract: Contract) -> Contract:
    clash = await repository.overlapping(
        session, ctx, contract.project_id, contract.effective_from, contract.effective_to
    )
    if clash is not None:
        raise _overlap(clash)
    if await guarded.insert_guarded(session, contract, expected=NO_OVERLAP) is not None:
        # Only a writer that bypassed the project lock gets here; name what it wrote.
        clash = await repository.overlapping(
            session, ctx, contract.project_id, contract.effective_from, contract.effective_to
        )
        if clash is not None:
            raise _overlap(clash)
        raise ContractOverlaps("Another version was written at the same time; read and retry.")
    return contract


async def create_contract(
    session: AsyncSession, ctx: TenantContext, data: ContractCreate
) -> Contract:
    project = await projects.get_project(session, ctx, data.project_id, for_update=True)
    if project is None:
        raise UnknownProject("No such project.", field="project_id")
    terms = ContractTerms.model_validate(
        {name: getattr(data, name) for name in ContractTerms.model_fields}
    )
    _check(terms, project)
    contract = Contract(
        tenant_id=ctx.tenant_id,
        client_id=project.client_id,
        project_id=project.id,
        version_number=await repository.next_version_number(session, ctx, project.id),
        effective_from=data.effective_from,
        effective_to=data.effective_to,
        **_stored(terms),
    )
    return await _insert(session, ctx, contract)


async def get_contract(
    session: AsyncSession, ctx: TenantContext, contract_id: uuid.UUID
) -> Contract:
    return ensure_visible(await repository.get_contract(session, ctx, contract_id), "contract")


async def list_contracts(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    project_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    at: date | None = None,
    sort: str = "effective_from",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Contract], str | None]:
    return await repository.list_contracts(
        session,
        ctx,
        project_id=project_id,
        client_id=client_id,
        at=at,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


async def list_project_contracts(
    session: AsyncSession,
    ctx: TenantContext,
    project_id: uuid.UUID,
    *,
    sort: str = "effective_from",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Contract], str | None]:
    """Every version of a project's contract: the history stays readable."""
    ensure_visible(await projects.get_project(session, ctx, project_id), "project")
    return await list_contracts(
        session, ctx, project_id=project_id, sort=sort, limit=limit, cursor=cursor
    )


async def current_contract(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID, at: date | None = None
) -> Contract:
    """The version in force on `at` (default: today in the project's time zone)."""
    project = ensure_visible(await projects.get_project(session, ctx, project_id), "project")
    day = at or project_today(project)
    contract = await repository.in_force(session, ctx, project.id, day)
    if contract is None:
        raise NoContractInForce(f"No contract version is in force on {day.isoformat()}.")
    return contract


async def _locked_contract(
    session: AsyncSession, ctx: TenantContext, contract_id: uuid.UUID, if_match: str | None
) -> tuple[Contract, Project]:
    contract = ensure_visible(await repository.get_contract(session, ctx, contract_id), "contract")
    project = await _lock_project(session, ctx, contract.project_id)
    # Re-read under the project lock: the version another writer committed meanwhile.
    contract = ensure_visible(
        await repository.get_contract(session, ctx, contract_id, for_update=True), "contract"
    )
    check_if_match(if_match, contract.version)
    return contract, project


async def update_contract(
    session: AsyncSession,
    ctx: TenantContext,
    contract_id: uuid.UUID,
    data: ContractUpdate,
    if_match: str | None,
) -> Contract:
    """Edit a version. One that has not started yet may change freely; one in force
    (or past) only its end date and reference — its terms are history."""
    contract, project = await _locked_contract(session, ctx, contract_id, if_match)
    if not data.model_fields_set:
        return contract
    terms = _merge(contract, data)
    values = _stored(terms)
    values["effective_from"] = (
        data.effective_from if data.effective_from is not None else contract.effective_from
    )
    values["effective_to"] = (
        data.effective_to if "effective_to" in data.model_fields_set else contract.effective_to
    )
    changed = {k: v for k, v in values.items() if getattr(contract, k) != v}
    if not changed:
        return contract
    if set(changed) & CHECKED_TERMS:
        # Only changed terms are checked against the project as it is now: the
        # project may have dropped business hours or a channel since, and the
        # version's end date must stay editable.
        _check(terms, project)
    if contract.effective_from <= project_today(project):
        frozen = sorted(set(changed) - IN_FORCE_EDITABLE)
        if frozen:
            raise ContractInForce(
                "This version is in force: its terms are history. Create a new version from a "
                f"date instead (POST /contracts/{contract.id}/versions).",
                field=frozen[0],
            )
    if values["effective_to"] is not None and values["effective_to"] < values["effective_from"]:
        raise InvalidDates("effective_to is before effective_from.", field="effective_to")
    clash = await repository.overlapping(
        session,
        ctx,
        project.id,
        values["effective_from"],
        values["effective_to"],
        excluding=contract.id,
    )
    if clash is not None:
        raise _overlap(
            clash, "effective_to" if "effective_from" not in changed else "effective_from"
        )
    changed["version"] = contract.version + 1
    changed["updated_at"] = utcnow()
    if (
        await guarded.write_guarded(
            session, guarded.update_from(contract, changed), expected=NO_OVERLAP
        )
        is not None
    ):
        raise ContractOverlaps("Another version was written at the same time; read and retry.")
    return contract


async def create_version(
    session: AsyncSession,
    ctx: TenantContext,
    contract_id: uuid.UUID,
    data: ContractVersionCreate,
    if_match: str | None,
) -> Contract:
    """Close `contract_id` the day before `effective_from` and open a new version
    from that day with the changed terms — one transaction, so both or neither."""
    base, project = await _locked_contract(session, ctx, contract_id, if_match)
    start = data.effective_from
    if start <= base.effective_from:
        raise InvalidDates(
            f"A new version must start after this one does ({base.effective_from.isoformat()}); "
            "to change a version that has not started, edit it.",
            field="effective_from",
        )
    if base.effective_to is not None and start > base.effective_to:
        raise InvalidDates(
            f"This version ends on {base.effective_to.isoformat()}: a new version from a later "
            "date is a new contract (POST /contracts).",
            field="effective_from",
        )
    end = data.effective_to if "effective_to" in data.model_fields_set else base.effective_to
    if end is not None and end < start:
        raise InvalidDates("effective_to is before effective_from.", field="effective_to")
    terms = _merge(base, data)
    _check(terms, project)

    closing = {
        "effective_to": start - timedelta(days=1),
        "version": base.version + 1,
        "updated_at": utcnow(),
    }
    if (
        await guarded.write_guarded(
            session, guarded.update_from(base, closing), expected=NO_OVERLAP
        )
        is not None
    ):
        raise ContractOverlaps("Another version was written at the same time; read and retry.")
    successor = Contract(
        tenant_id=ctx.tenant_id,
        client_id=base.client_id,
        project_id=base.project_id,
        version_number=await repository.next_version_number(session, ctx, base.project_id),
        effective_from=start,
        effective_to=end,
        **_stored(terms),
    )
    return await _insert(session, ctx, successor)
