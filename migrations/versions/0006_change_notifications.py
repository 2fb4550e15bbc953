"""Change notifications: every committed write to what a KPI report or a
caller's identity is made of tells every process, on the `callpact_changes`
channel, which tenant changed.

A statement-level trigger sends `pg_notify('callpact_changes', <tenant>)`:
the tenant of the transaction's scope (`app.tenant_id`, which row-level
security confines every write to), or `*` for an unscoped (admin or
owner) write. PostgreSQL delivers notifications only on commit, once per
distinct payload per transaction, so a 50 000-row import costs one
notification and a rolled-back write none. The API's caches
(`service/core/changes.py`) listen and drop what a change made stale. The
trigger also leaves the tenant in the transaction-local `callpact.changed`,
so the writing process can mark its own caches before it commits. The
application role may not write a `contacts` partition directly (a statement
trigger of the parent does not fire for it): it writes through `contacts`.
An operator who writes a partition by hand runs `notify callpact_changes`
afterwards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.rls import app_role

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "callpact_changes"

# What a cached KPI report or a cached caller (role, client, projects, tenant
# status, API token) is computed from. `users` and `api_tokens` only on the
# columns that decide access: a login stamps `last_login_at`, an API call
# `last_used_at`, and neither should throw the tenant's caches away.
WATCHED: dict[str, str] = {
    "tenants": "insert or update or delete or truncate",
    "users": "insert or update of role, status, client_id or delete or truncate",
    "user_projects": "insert or update or delete or truncate",
    "api_tokens": "insert or update of scopes, expires_at, revoked_at or delete or truncate",
    "clients": "insert or update or delete or truncate",
    "projects": "insert or update or delete or truncate",
    "contracts": "insert or update or delete or truncate",
    "contacts": "insert or update or delete or truncate",
    "kpi_daily_sums": "insert or update or delete or truncate",
    "kpi_daily_waits": "insert or update or delete or truncate",
}


def upgrade() -> None:
    op.execute(
        f"""
        create function callpact_notify_change() returns trigger
        language plpgsql as $$
        declare
            tenant text := coalesce(nullif(current_setting('app.tenant_id', true), ''), '*');
        begin
            perform pg_notify('{CHANNEL}', tenant);
            -- Read back by the writing process before it commits (service/core/db.py).
            perform set_config('callpact.changed', tenant, true);
            return null;
        end
        $$
        """
    )
    for table, events in WATCHED.items():
        op.execute(
            f'create trigger "{table}_notify_change" after {events} on "{table}"'
            " for each statement execute function callpact_notify_change()"
        )
    # A statement trigger of a partitioned table does not fire for a write aimed
    # at one of its partitions: the application writes through `contacts` only
    # (privileges are checked on the table a statement names), so it loses the
    # right to name a partition.
    for partition in _partitions("contacts"):
        op.execute(f'revoke insert, update, delete, truncate on {partition} from "{app_role()}"')


def _partitions(table: str) -> list[str]:
    rows = op.get_bind().execute(
        sa.text(
            "select inhrelid::regclass::text from pg_inherits where inhparent = cast(:t as regclass)"
        ),
        {"t": table},
    )
    return [str(r[0]) for r in rows]


def downgrade() -> None:
    for partition in _partitions("contacts"):
        op.execute(f'grant insert, update, delete on {partition} to "{app_role()}"')
    for table in WATCHED:
        op.execute(f'drop trigger if exists "{table}_notify_change" on "{table}"')
    op.execute("drop function if exists callpact_notify_change()")
