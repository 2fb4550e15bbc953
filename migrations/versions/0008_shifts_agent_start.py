"""Shifts: an index in (agent, start) order for the clash scan.

A full clash scan (`service/shifts/repository.py: find_overlaps`) is one
ordered pass per agent: a window over `(agent_id, starts_at)`. Without an
index in that order it sorts the month first, and a month of a large tenant
(100 000 shifts) in the order bookings arrive is ~100 ms of sorting alone.
`(tenant_id, agent_id, starts_at)`, covering every column the scan and the
row-level security policies read (`ends_at`, `client_id`, `id`), feeds the
window in order from the index alone (an index-only scan: no sort, no heap).

Its price on the write path is small beside the exclusion constraint's GiST
index (measured: COPY of 100 000 rows in agent order, 1.2x a raw COPY with
this index alone, 11-13x with the exclusion constraint alone). It also
serves an agent's schedule and list filters by agent. The GiST index stays
the judge of overlaps; a btree cannot answer `&&`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "create index shifts_agent_start on shifts (tenant_id, agent_id, starts_at)"
        " include (ends_at, client_id, id)"
    )


def downgrade() -> None:
    op.execute("drop index if exists shifts_agent_start")
