"""Mail outbox: mail is written in the transaction that caused it and
delivered by the worker (`service/core/mail.py`).

A mail exists if and only if its transaction commits, so a rolled-back
invitation sends no dead link, and a slow or unreachable SMTP server delays a
mail instead of failing the request or losing the mail.

The table is not tenant data to read: its rows carry live invitation and
password-reset links of every tenant. The application role may only INSERT —
no SELECT, UPDATE or DELETE — so nothing it runs (a bug, an injection) can
read another tenant's mail, or its own tenant's reset links. Row-level
security would add nothing to a table the role cannot read (and would refuse
mail that belongs to no tenant); `tenant_id` is nullable and says whose mail a
row is, for operators. The admin role (BYPASSRLS), which the worker delivers
with, keeps the default SELECT, INSERT, UPDATE and DELETE.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import app_role

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table mail_outbox (
            id uuid primary key,
            tenant_id uuid references tenants (id) on delete cascade,
            recipient text not null,
            subject text not null,
            message bytea not null,
            created_at timestamptz not null default now(),
            attempts integer not null default 0 check (attempts >= 0),
            next_attempt_at timestamptz not null default now(),
            sent_at timestamptz,
            last_error text
        )
        """
    )
    # The delivery query: unsent mail by when it is due. Sent rows leave the index.
    op.execute(
        "create index mail_outbox_due on mail_outbox (next_attempt_at) where sent_at is null"
    )
    # The default privileges of 0001 granted all four; the application only queues.
    op.execute(f'revoke select, update, delete, truncate on mail_outbox from "{app_role()}"')


def downgrade() -> None:
    op.drop_table("mail_outbox")
