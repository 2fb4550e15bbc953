"""Contacts: the indexes an import must maintain, cut to those a reader uses.

Every index on `contacts` is paid per imported row (measured on a 50 000-row
batch into a table of 150 000: the insert took 0.55 s with four indexes,
0.13 s for the heap alone; each index costs 0.03-0.16 s). So:

* The primary key becomes `(tenant_id, project_id, queued_at, id)` and
  replaces `contacts_project_time (tenant_id, project_id, queued_at)`: the
  same prefix serves every project-and-time read (KPIs from raw rows, gaps,
  agents of a project), and the key is still unique (`id` is). The old key
  `(tenant_id, id, queued_at)` was read only by ingestion (a corrected
  contact's old row), which knows the project from `contact_keys`.
* `contacts_customer` goes: no query reads it (first-contact resolution by
  repeat, should it come, scans a project's time range, which the key
  serves).
* `contacts_agent_time` stays: per-agent KPIs and double-booking checks read
  it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table contacts drop constraint contacts_pkey")
    op.execute(
        "alter table contacts add constraint contacts_pkey"
        " primary key (tenant_id, project_id, queued_at, id)"
    )
    op.execute("drop index contacts_project_time")
    op.execute("drop index contacts_customer")


def downgrade() -> None:
    op.execute(
        "create index contacts_customer on contacts (tenant_id, project_id, customer_key,"
        " queued_at) where customer_key is not null"
    )
    op.execute("create index contacts_project_time on contacts (tenant_id, project_id, queued_at)")
    op.execute("alter table contacts drop constraint contacts_pkey")
    op.execute(
        "alter table contacts add constraint contacts_pkey primary key (tenant_id, id, queued_at)"
    )
