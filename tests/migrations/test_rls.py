"""Row-level security alone — without any filter of the application — hides
foreign rows.

Every statement here runs as the application role (NOSUPERUSER NOBYPASSRLS,
the `app_engine` fixture) with raw SQL and a transaction-local
`set_config('app.tenant_id', …, true)`, exactly like a request. Nothing is
filtered by the statements themselves: a `select count(*) from t` must come
back with the caller's rows only, because the database says so.

The tables are discovered from the catalog (every table in `public` with a
`tenant_id` column), and one row per (table, tenant, client) is generated from
the catalog too (columns, types, foreign keys, enum-like CHECKs), seeded with
the admin role (BYPASSRLS) in a committed transaction for two fresh tenants.
A table added by a later migration is therefore covered without touching this
file; should its CHECKs or triggers refuse the generated row, the failure
says which override to add to `ROW_OVERRIDES` below.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# --- explicit, commented exceptions (each entry must say why) -------------------------

# Tables with a `tenant_id` column that may live without RLS: every tenant-owned
# table gets ENABLE + FORCE RLS and `tenant_isolation`. These are not read by the
# application role at all, so the tenant-wall tests below (which read as that
# role) skip them; their own tests check the privileges instead.
TENANT_TABLES_WITHOUT_RLS: dict[str, str] = {
    "mail_outbox": "the application role may only INSERT (no SELECT/UPDATE/DELETE), and"
    " tenant_id is nullable (mail of no tenant): tests/service/core/test_mail_outbox.py",
}

# Tables with a `client_id` column that need no RESTRICTIVE `client_isolation`
# policy (for instance a column that names a client as data, not as owner).
CLIENT_COLUMN_WITHOUT_CLIENT_POLICY: dict[str, str] = {}

# Tables whose own `id` is the client: their rows *are* the clients.
CLIENT_SCOPED_BY_ID: dict[str, str] = {"clients": "a client viewer sees its own client row only"}

# Extra PERMISSIVE policies allowed on a tenant table, as (table, policy): a
# permissive policy is OR-ed with `tenant_isolation` and can only widen it.
EXTRA_PERMISSIVE_POLICIES: dict[tuple[str, str], str] = {}

# Views and functions: every view is `security_invoker` (else it runs with its
# owner's rights, past RLS); no materialized views or SECURITY DEFINER functions.
VIEWS_WITHOUT_SECURITY_INVOKER: dict[str, str] = {}
MATERIALIZED_VIEWS_ALLOWED: dict[str, str] = {}
SECURITY_DEFINER_FUNCTIONS_ALLOWED: dict[str, str] = {}

# JSON values for columns the generic row maker cannot guess: table → column → value.
ROW_OVERRIDES: dict[str, dict[str, Any]] = {
    # `(role = 'client_viewer') = (client_id is not null)`: generated rows carry a client.
    "users": {"role": "client_viewer"},
    "invitations": {"role": "client_viewer"},
    # A month is named by its first day.
    "kpi_monthly_waits": {"local_month": "2030-01-01"},
}

CLIENT_LABELS = ("c1", "c2")
INSUFFICIENT_PRIVILEGE = "42501"  # both "permission denied" and an RLS WITH CHECK violation


# --- catalog --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    notnull: bool
    has_default: bool
    generated: bool
    typtype: str
    category: str
    enum_labels: tuple[str, ...]


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass
class Table:
    name: str
    columns: dict[str, Column]
    fks: list[ForeignKey]
    checks: list[str]
    partition: bool = False
    rls: bool = False
    force_rls: bool = False
    policies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tenant_owned(self) -> bool:
        return "tenant_id" in self.columns

    def policy(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.policies if p["policyname"] == name), None)

    @property
    def client_column(self) -> str | None:
        """The column the `client_isolation` policy compares, if the table has the policy."""
        if self.policy("client_isolation") is None:
            return None
        if "client_id" in self.columns:
            return "client_id"
        if self.name in CLIENT_SCOPED_BY_ID:
            return "id"
        raise AssertionError(f"{self.name}: client_isolation on an unknown column")

    @property
    def insertable(self) -> list[str]:
        return [c.name for c in self.columns.values() if not c.generated]


async def describe(conn: AsyncConnection, name: str) -> Table:
    rows = (
        await conn.execute(
            text(
                """
                select a.attname, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull,
                       a.atthasdef, (a.attidentity <> '' or a.attgenerated <> '') as generated,
                       t.typtype::text as typtype, t.typcategory::text as typcategory,
                       array(select e.enumlabel::text from pg_enum e
                             where e.enumtypid = a.atttypid order by e.enumsortorder) as labels
                from pg_attribute a join pg_type t on t.oid = a.atttypid
                where a.attrelid = cast(:t as regclass) and a.attnum > 0 and not a.attisdropped
                order by a.attnum
                """
            ),
            {"t": f'public."{name}"'},
        )
    ).all()
    columns = {
        r.attname: Column(
            r.attname,
            r.type,
            r.attnotnull,
            r.atthasdef,
            r.generated,
            r.typtype,
            r.typcategory,
            tuple(r.labels),
        )
        for r in rows
    }
    fk_rows = (
        await conn.execute(
            text(
                """
                select c.confrelid::regclass::text as ref,
                       array(select a.attname::text from unnest(c.conkey) with ordinality k(n, i)
                             join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n
                             order by k.i) as cols,
                       array(select a.attname::text from unnest(c.confkey) with ordinality k(n, i)
                             join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n
                             order by k.i) as refcols
                from pg_constraint c
                where c.conrelid = cast(:t as regclass) and c.contype = 'f'
                order by c.conname
                """
            ),
            {"t": f'public."{name}"'},
        )
    ).all()
    fks = [
        ForeignKey(tuple(r.cols), r.ref.removeprefix("public.").strip('"'), tuple(r.refcols))
        for r in fk_rows
    ]
    checks = list(
        (
            await conn.execute(
                text(
                    "select pg_get_constraintdef(oid) from pg_constraint"
                    " where conrelid = cast(:t as regclass) and contype = 'c'"
                ),
                {"t": f'public."{name}"'},
            )
        ).scalars()
    )
    meta = (
        await conn.execute(
            text(
                "select relrowsecurity, relforcerowsecurity, relispartition from pg_class"
                " where oid = cast(:t as regclass)"
            ),
            {"t": f'public."{name}"'},
        )
    ).one()
    policies = [
        dict(p._mapping)
        for p in (
            await conn.execute(
                text(
                    "select policyname, permissive, cmd, qual, with_check from pg_policies"
                    " where schemaname = 'public' and tablename = :n order by policyname"
                ),
                {"n": name},
            )
        ).all()
    ]
    return Table(
        name,
        columns,
        fks,
        checks,
        partition=meta.relispartition,
        rls=meta.relrowsecurity,
        force_rls=meta.relforcerowsecurity,
        policies=policies,
    )


async def tenant_tables(conn: AsyncConnection) -> dict[str, Table]:
    """Every table (and partition) in `public` with a `tenant_id` column."""
    names = (
        await conn.execute(
            text(
                """
                select c.relname from pg_class c
                join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'public' and c.relkind in ('r', 'p')
                  and exists (select 1 from pg_attribute a where a.attrelid = c.oid
                              and a.attname = 'tenant_id' and not a.attisdropped)
                order by c.relname
                """
            )
        )
    ).scalars()
    return {name: await describe(conn, name) for name in list(names)}


# --- a row for every table, generated from the catalog ----------------------------------

_ANY_ARRAY = r"(?<![\w\"]){col}\b\)?(?:::\w+)?\s*=\s*ANY\s*\(\(?ARRAY\[(?P<values>[^\]]*)\]"
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_BASE = "2030-01-0{day}T{hour:02d}:00:00+00:00"


def _enum_like(table: Table, column: str) -> str | None:
    """The first value of a `column in ('a', 'b')` CHECK (stored as `= ANY (ARRAY[…])`)."""
    pattern = re.compile(_ANY_ARRAY.format(col=re.escape(column)))
    for check in table.checks:
        match = pattern.search(check)
        if match:
            literal = _LITERAL.search(match.group("values"))
            if literal:
                return literal.group(1).replace("''", "'")
    return None


def _value(table: Table, col: Column, ordinal: int) -> Any:
    hexa = secrets.token_hex(6)
    if col.enum_labels:
        return col.enum_labels[0]
    enum_like = _enum_like(table, col.name)
    if enum_like is not None:
        return enum_like
    base = col.type.split("(")[0]
    if col.category == "A":
        return []
    if base == "uuid":
        return str(uuid.uuid4())
    if base in ("text", "character varying", "character", "citext"):
        if "email" in col.name:
            return f"{hexa}@example.com"
        if col.name in ("issuer", "url") or col.name.endswith(("_url", "_uri")):
            return f"https://example.com/{hexa}"
        if col.name == "slug":
            return f"s-{hexa}"
        if col.name in ("time_zone", "timezone", "tz"):
            return "UTC"
        if col.name == "locale":
            return "en"
        return f"v{hexa}"
    if base == "bytea":
        return "\\x00"
    if base == "boolean":
        return True
    if base in ("smallint", "integer", "bigint", "numeric", "real", "double precision"):
        return 1
    # Later columns get later instants: `ends_at > starts_at` holds.
    if base.startswith("timestamp"):
        return _BASE.format(day=1, hour=ordinal % 24)
    if base == "date":
        return f"2030-01-{1 + ordinal % 28:02d}"
    if base.startswith("time"):
        return f"{ordinal % 24:02d}:00:00"
    if base == "interval":
        return "1 hour"
    if base in ("json", "jsonb"):
        return {}
    if base in ("tstzrange", "tsrange"):
        return "[2030-01-01 09:00:00+00,2030-01-01 17:00:00+00)"
    if base == "daterange":
        return "[2030-01-01,2030-02-01)"
    if base in ("int4range", "int8range", "numrange"):
        return "[1,10)"
    if base == "inet":
        return "10.0.0.1"
    raise AssertionError(
        f"cannot generate a value for {table.name}.{col.name} ({col.type}):"
        f" add ROW_OVERRIDES[{table.name!r}][{col.name!r}] in tests/migrations/test_rls.py"
    )


def _sql_insert(table: Table, columns: list[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    return (
        f'insert into "{table.name}" ({cols}) select {cols}'
        f' from jsonb_populate_record(null::"{table.name}", cast(:row as jsonb))'
        f' returning to_jsonb("{table.name}".*)::text'
    )


class RowMaker:
    """One row per (table, tenant, client label), parents first (memoized), so every
    row of a client label hangs off that label's client, project, agent …"""

    def __init__(self, conn: AsyncConnection, tables: dict[str, Table]) -> None:
        self.conn = conn
        self.tables = dict(tables)
        self.memo: dict[tuple[str, uuid.UUID | None, str], dict[str, Any]] = {}

    async def table(self, name: str) -> Table:
        if name not in self.tables:
            self.tables[name] = await describe(self.conn, name)
        return self.tables[name]

    async def row(
        self, name: str, tenant: uuid.UUID | None, label: str, stack: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        key = (name, tenant, label)
        if key in self.memo:
            return self.memo[key]
        table = await self.table(name)
        if not table.tenant_owned:
            tenant = None
            existing = (
                await self.conn.execute(text(f'select to_jsonb(t)::text from "{name}" t limit 1'))
            ).scalar()
            if existing is not None:
                self.memo[key] = json.loads(existing)
                return self.memo[key]
        values: dict[str, Any] = {}
        if tenant is not None:
            values["tenant_id"] = str(tenant)
        for fk in table.fks:
            if fk.ref_table == "tenants":
                continue
            if fk.ref_table in (*stack, name):
                if all(not table.columns[c].notnull for c in fk.columns):
                    continue  # a cycle through nullable columns: leave it empty
                raise AssertionError(f"{name}: a NOT NULL foreign-key cycle through {stack}")
            parent = await self.row(fk.ref_table, tenant, label, (*stack, name))
            for column, ref in zip(fk.columns, fk.ref_columns, strict=True):
                if column == "tenant_id":
                    continue
                values.setdefault(column, parent[ref])
        client = self.memo.get(("clients", tenant, label))
        if "client_id" in table.columns and "client_id" not in values and client is not None:
            values["client_id"] = client["id"]
        for ordinal, col in enumerate(table.columns.values()):
            if col.name in values or col.generated:
                continue
            if col.name in ROW_OVERRIDES.get(name, {}):
                values[col.name] = ROW_OVERRIDES[name][col.name]
            elif col.name == "id" and col.type == "uuid":
                values["id"] = str(uuid.uuid4())
            elif col.notnull and not col.has_default:
                values[col.name] = _value(table, col, ordinal)
        values.update(ROW_OVERRIDES.get(name, {}))
        try:
            async with self.conn.begin_nested():
                created = (
                    await self.conn.execute(
                        text(_sql_insert(table, list(values))), {"row": json.dumps(values)}
                    )
                ).scalar_one()
        except DBAPIError as exc:
            first = self.memo.get((name, tenant, CLIENT_LABELS[0]))
            if _sqlstate(exc) == "23505" and first is not None:
                # One row per tenant (a unique key on tenant_id alone): share the first.
                self.memo[key] = first
                return first
            raise AssertionError(
                f"could not generate a row of {name} from the catalog ({exc.orig}); add the"
                f" columns it needs to ROW_OVERRIDES[{name!r}] in tests/migrations/test_rls.py"
            ) from exc
        self.memo[key] = json.loads(created)
        return self.memo[key]


@dataclass
class Seeded:
    tables: dict[str, Table]
    tenant_a: uuid.UUID
    tenant_b: uuid.UUID
    rows: dict[tuple[str, uuid.UUID | None, str], dict[str, Any]]

    def client(self, tenant: uuid.UUID, label: str) -> str:
        return str(self.rows[("clients", tenant, label)]["id"])

    def row(self, table: str, tenant: uuid.UUID, label: str) -> dict[str, Any]:
        return self.rows[(table, tenant, label)]

    @property
    def data_tables(self) -> list[Table]:
        # A partition is reached through its parent; its own policies are checked structurally.
        return [t for t in self.tables.values() if not t.partition]


@pytest_asyncio.fixture(scope="module")
async def seeded(admin_engine: AsyncEngine) -> AsyncIterator[Seeded]:
    """Two fresh tenants, each with two clients and a row of every tenant table per client."""
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    async with admin_engine.connect() as conn:
        async with conn.begin():
            for tenant in (tenant_a, tenant_b):
                await conn.execute(
                    text("insert into tenants (id, slug, name) values (:id, :slug, :name)"),
                    {"id": tenant, "slug": f"rls-{tenant.hex[:12]}", "name": "RLS test BPO"},
                )
            tables = {
                name: table
                for name, table in (await tenant_tables(conn)).items()
                if name not in TENANT_TABLES_WITHOUT_RLS
            }
            maker = RowMaker(conn, tables)
            for tenant in (tenant_a, tenant_b):
                for label in CLIENT_LABELS:
                    await maker.row("clients", tenant, label)
                    for name, table in tables.items():
                        if not table.partition:
                            await maker.row(name, tenant, label)
        yield Seeded(tables, tenant_a, tenant_b, maker.memo)


# --- helpers -------------------------------------------------------------------------------


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


async def _scope(conn: AsyncConnection, tenant: uuid.UUID | None, client: str | None) -> None:
    if tenant is not None:
        await conn.execute(text("select set_config('app.tenant_id', :t, true)"), {"t": str(tenant)})
    if client is not None:
        await conn.execute(text("select set_config('app.client_id', :c, true)"), {"c": client})


async def _run(
    engine: AsyncEngine,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    tenant: uuid.UUID | None = None,
    client: str | None = None,
) -> tuple[int | None, list[Any], DBAPIError | None]:
    """One statement in its own transaction (rolled back): rowcount, rows, or the error."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            await _scope(conn, tenant, client)
            result = await conn.execute(text(sql), params or {})
            rows = list(result.all()) if result.returns_rows else []
            return result.rowcount, rows, None
        except DBAPIError as exc:
            return None, [], exc
        finally:
            await trans.rollback()


def _copy(row: dict[str, Any], **changes: Any) -> str:
    out = dict(row)
    out.update(changes)
    return json.dumps(out)


def _fail_if(failures: list[str]) -> None:
    assert not failures, "\n".join(failures)


async def _admin_count(engine: AsyncEngine, table: str, tenant: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(
                text(f'select count(*) from "{table}" where tenant_id = :t'), {"t": tenant}
            )
        ).scalar_one()
    return count


# --- structure --------------------------------------------------------------------------


async def test_every_tenant_table_has_forced_rls_and_its_policies(
    admin_engine: AsyncEngine,
) -> None:
    async with admin_engine.connect() as conn:
        tables = await tenant_tables(conn)
    assert {"users", "clients", "audit_log", "api_tokens"} <= tables.keys()
    failures = []
    for name, table in tables.items():
        if name in TENANT_TABLES_WITHOUT_RLS:
            continue
        if not table.columns["tenant_id"].notnull:
            failures.append(f"{name}: tenant_id is nullable (a NULL row belongs to no one)")
        if not (table.rls and table.force_rls):
            failures.append(
                f"{name}: needs ENABLE and FORCE ROW LEVEL SECURITY"
                f" (relrowsecurity={table.rls}, relforcerowsecurity={table.force_rls});"
                " create it with migrations.rls.create_tenant_table"
            )
        tenant_policy = table.policy("tenant_isolation")
        if tenant_policy is None:
            failures.append(f"{name}: no tenant_isolation policy")
        else:
            if tenant_policy["permissive"] != "PERMISSIVE" or tenant_policy["cmd"] != "ALL":
                failures.append(f"{name}: tenant_isolation must be PERMISSIVE FOR ALL")
            for part in ("qual", "with_check"):
                expr = tenant_policy[part] or ""
                if "current_setting('app.tenant_id'" not in expr or "tenant_id" not in expr:
                    failures.append(f"{name}: tenant_isolation {part} does not test app.tenant_id")
        for policy in table.policies:
            if (
                policy["permissive"] == "PERMISSIVE"
                and policy["policyname"] != "tenant_isolation"
                and (name, policy["policyname"]) not in EXTRA_PERMISSIVE_POLICIES
            ):
                failures.append(
                    f"{name}: permissive policy {policy['policyname']} is OR-ed with"
                    " tenant_isolation and widens it; make it RESTRICTIVE"
                )
        wants_client_policy = (
            "client_id" in table.columns and name not in CLIENT_COLUMN_WITHOUT_CLIENT_POLICY
        ) or name in CLIENT_SCOPED_BY_ID
        client_policy = table.policy("client_isolation")
        if wants_client_policy:
            if client_policy is None or client_policy["permissive"] != "RESTRICTIVE":
                failures.append(
                    f"{name}: has a client column but no RESTRICTIVE client_isolation policy"
                    " (create it with client_column=…)"
                )
            elif "current_setting('app.client_id'" not in (client_policy["with_check"] or ""):
                failures.append(f"{name}: client_isolation has no WITH CHECK on app.client_id")
            elif "COALESCE(current_setting('app.client_id'" not in (client_policy["qual"] or ""):
                # migration 0012: `(select …) is null` made the planner expect
                # 2 % of a tenant's rows from every scan of the table
                failures.append(
                    f"{name}: client_isolation does not test 'no client' as a boolean"
                    " sub-select (migrations/rls.py: client_policy_sql)"
                )
    _fail_if(failures)


async def test_views_functions_and_matviews_cannot_bypass_rls(admin_engine: AsyncEngine) -> None:
    async with admin_engine.connect() as conn:
        views = (
            await conn.execute(
                text(
                    """
                    select c.relname, coalesce(c.reloptions, '{}') as options, c.relkind
                    from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = 'public' and c.relkind in ('v', 'm')
                    """
                )
            )
        ).all()
        definers = (
            await conn.execute(
                text(
                    """
                    select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                    where n.nspname = 'public' and p.prosecdef
                    """
                )
            )
        ).scalars()
        definer_names = list(definers)
    failures = []
    for view in views:
        if view.relkind == "m" and view.relname not in MATERIALIZED_VIEWS_ALLOWED:
            failures.append(f"materialized view {view.relname}: it has no RLS; use a table")
        invoker = any(
            o.lower() in ("security_invoker=true", "security_invoker=on", "security_invoker=1")
            for o in view.options
        )
        if (
            view.relkind == "v"
            and not invoker
            and view.relname not in VIEWS_WITHOUT_SECURITY_INVOKER
        ):
            failures.append(f"view {view.relname}: create it WITH (security_invoker = true)")
    failures += [
        f"function {name}: SECURITY DEFINER runs past RLS"
        for name in definer_names
        if name not in SECURITY_DEFINER_FUNCTIONS_ALLOWED
    ]
    _fail_if(failures)


async def test_the_seed_covers_every_tenant_table(
    seeded: Seeded, admin_engine: AsyncEngine
) -> None:
    """Not vacuous: both tenants own rows in every table the other tests look at."""
    for table in seeded.data_tables:
        for tenant in (seeded.tenant_a, seeded.tenant_b):
            assert await _admin_count(admin_engine, table.name, tenant) >= 1, table.name


# --- the tenant wall --------------------------------------------------------------------


async def test_select_shows_own_rows_and_no_foreign_row(
    seeded: Seeded, app_engine: AsyncEngine
) -> None:
    failures = []
    for table in seeded.data_tables:
        _, rows, error = await _run(
            app_engine,
            f"select count(*) filter (where tenant_id = :a) as own,"
            f" count(*) filter (where tenant_id <> :a) as foreign_rows,"
            f" count(*) filter (where tenant_id = :b) as of_b"
            f' from "{table.name}"',
            {"a": seeded.tenant_a, "b": seeded.tenant_b},
            tenant=seeded.tenant_a,
        )
        if error is not None:
            failures.append(f"{table.name}: select failed: {error.orig}")
            continue
        own, foreign, of_b = rows[0]
        if foreign or of_b:
            failures.append(f"{table.name}: {foreign} foreign rows visible ({of_b} of tenant B)")
        if own < 1:
            failures.append(f"{table.name}: own rows invisible ({own}): the setting is not read")
        # A direct hit on B's primary key finds nothing either.
        b_row = seeded.row(table.name, seeded.tenant_b, "c1")
        if "id" in b_row:
            _, hit, _ = await _run(
                app_engine,
                f'select 1 from "{table.name}" where tenant_id = :b and id = cast(:id as uuid)',
                {"b": seeded.tenant_b, "id": b_row["id"]},
                tenant=seeded.tenant_a,
            )
            if hit:
                failures.append(f"{table.name}: B's row {b_row['id']} found by its key")
    _fail_if(failures)


async def test_update_and_delete_of_foreign_rows_affect_nothing(
    seeded: Seeded, app_engine: AsyncEngine, admin_engine: AsyncEngine
) -> None:
    failures = []
    for table in seeded.data_tables:
        before = await _admin_count(admin_engine, table.name, seeded.tenant_b)
        b_row = seeded.row(table.name, seeded.tenant_b, "c1")
        statements = [
            ("update", f'update "{table.name}" set tenant_id = tenant_id where tenant_id = :b'),
            ("delete", f'delete from "{table.name}" where tenant_id = :b'),
            ("delete", f'delete from "{table.name}" where tenant_id <> :a'),
        ]
        if "id" in b_row:
            by_key = f"tenant_id = :b and id = cast('{b_row['id']}' as uuid)"
            statements += [
                ("update", f'update "{table.name}" set tenant_id = tenant_id where {by_key}'),
                ("delete", f'delete from "{table.name}" where {by_key}'),
            ]
        for verb, sql in statements:
            count, _, error = await _run(
                app_engine,
                sql,
                {"a": seeded.tenant_a, "b": seeded.tenant_b},
                tenant=seeded.tenant_a,
            )
            if not await _has_privilege(app_engine, table.name, verb):
                if error is None or "permission denied" not in str(error.orig):
                    failures.append(f"{table.name}: {verb} without the privilege did not fail")
            elif error is not None:
                failures.append(f"{table.name}: {sql!r} failed: {error.orig}")
            elif count != 0:
                failures.append(f"{table.name}: {sql!r} touched {count} foreign rows")
        if await _admin_count(admin_engine, table.name, seeded.tenant_b) != before:
            failures.append(f"{table.name}: B's rows changed")
    _fail_if(failures)


async def _has_privilege(engine: AsyncEngine, table: str, verb: str) -> bool:
    async with engine.connect() as conn:
        may: bool = (
            await conn.execute(
                text("select has_table_privilege(current_user, cast(:t as regclass), :v)"),
                {"t": f'public."{table}"', "v": verb},
            )
        ).scalar_one()
    return may


async def test_insert_or_move_into_a_foreign_tenant_violates_the_policy(
    seeded: Seeded, app_engine: AsyncEngine
) -> None:
    failures = []
    for table in seeded.data_tables:
        own = seeded.row(table.name, seeded.tenant_a, "c1")
        fresh_id = {"id": str(uuid.uuid4())} if "id" in own else {}
        row = _copy(own, tenant_id=str(seeded.tenant_b), **fresh_id)
        _, _, error = await _run(
            app_engine,
            _sql_insert(table, table.insertable),
            {"row": row},
            tenant=seeded.tenant_a,
        )
        if error is None:
            failures.append(f"{table.name}: inserted a row of tenant B under tenant A")
        elif _sqlstate(error) != INSUFFICIENT_PRIVILEGE or "row-level security" not in str(
            error.orig
        ):
            failures.append(f"{table.name}: insert refused, but not by RLS: {error.orig}")
        if not await _has_privilege(app_engine, table.name, "update"):
            continue
        # Moving an own row into B: WITH CHECK refuses the new row.
        _, _, error = await _run(
            app_engine,
            f'update "{table.name}" set tenant_id = :b where tenant_id = :a',
            {"a": seeded.tenant_a, "b": seeded.tenant_b},
            tenant=seeded.tenant_a,
        )
        if error is None or "row-level security" not in str(error.orig):
            failures.append(f"{table.name}: an own row could be moved to tenant B ({error})")
    _fail_if(failures)


async def test_no_setting_no_rows(seeded: Seeded, app_engine: AsyncEngine) -> None:
    """Fail closed: without `app.tenant_id` (or with it empty) every tenant table is empty,
    and nothing can be written."""
    failures = []
    for table in seeded.data_tables:
        for setting in (None, ""):
            async with app_engine.connect() as conn:
                trans = await conn.begin()
                if setting is not None:
                    await conn.execute(text("select set_config('app.tenant_id', '', true)"))
                current = (
                    await conn.execute(text("select current_setting('app.tenant_id', true)"))
                ).scalar()
                count = (await conn.execute(text(f'select count(*) from "{table.name}"'))).scalar()
                await trans.rollback()
            if current not in (None, ""):
                failures.append(f"a pooled connection carries app.tenant_id={current!r}")
            if count != 0:
                failures.append(f"{table.name}: {count} rows visible with setting {setting!r}")
        own = seeded.row(table.name, seeded.tenant_a, "c1")
        fresh_id = {"id": str(uuid.uuid4())} if "id" in own else {}
        _, _, error = await _run(
            app_engine, _sql_insert(table, table.insertable), {"row": _copy(own, **fresh_id)}
        )
        if error is None or _sqlstate(error) != INSUFFICIENT_PRIVILEGE:
            failures.append(f"{table.name}: inserted a row without any tenant setting")
        if await _has_privilege(app_engine, table.name, "delete"):
            count, _, _ = await _run(app_engine, f'delete from "{table.name}"')
            if count:
                failures.append(f"{table.name}: deleted {count} rows without any tenant setting")
    _fail_if(failures)


# --- the client wall --------------------------------------------------------------------


async def test_client_viewer_setting_hides_the_other_clients_rows(
    seeded: Seeded, app_engine: AsyncEngine, admin_engine: AsyncEngine
) -> None:
    client_tables = [t for t in seeded.data_tables if t.client_column]
    assert {"clients", "users", "invitations", "identity_providers"} <= {
        t.name for t in client_tables
    }
    a = seeded.tenant_a
    c1, c2 = seeded.client(a, "c1"), seeded.client(a, "c2")
    failures = []
    for table in client_tables:
        column = table.client_column
        _, rows, error = await _run(
            app_engine,
            f'select count(*) filter (where "{column}" = cast(:c1 as uuid)),'
            f' count(*) filter (where "{column}" is distinct from cast(:c1 as uuid))'
            f' from "{table.name}"',
            {"c1": c1},
            tenant=a,
            client=c1,
        )
        if error is not None:
            failures.append(f"{table.name}: select failed: {error.orig}")
            continue
        mine, others = rows[0]
        if others:
            failures.append(f"{table.name}: {others} rows of other clients (or none) visible")
        if mine < 1:
            failures.append(f"{table.name}: client 1's own rows invisible")
        # Writes for client 2: inserted, moved into, updated or deleted — never.
        other = seeded.row(table.name, a, "c2")
        changes = {"id": str(uuid.uuid4())} if "id" in other else {}
        _, _, error = await _run(
            app_engine,
            _sql_insert(table, table.insertable),
            {"row": _copy(other, **changes)},
            tenant=a,
            client=c1,
        )
        if error is None or "row-level security" not in str(error.orig):
            failures.append(f"{table.name}: inserted a row of client 2 as client 1 ({error})")
        before = await _admin_count(admin_engine, table.name, a)
        if await _has_privilege(app_engine, table.name, "update"):
            count, _, error = await _run(
                app_engine,
                f'update "{table.name}" set tenant_id = tenant_id'
                f' where "{column}" = cast(:c2 as uuid)',
                {"c2": c2},
                tenant=a,
                client=c1,
            )
            if error is not None or count != 0:
                failures.append(f"{table.name}: update of client 2's rows: {count} ({error})")
            if column != "id":
                _, _, error = await _run(
                    app_engine,
                    f'update "{table.name}" set "{column}" = cast(:c2 as uuid)'
                    f' where "{column}" = cast(:c1 as uuid)',
                    {"c1": c1, "c2": c2},
                    tenant=a,
                    client=c1,
                )
                if error is None or "row-level security" not in str(error.orig):
                    failures.append(f"{table.name}: a row was moved to client 2 ({error})")
        if await _has_privilege(app_engine, table.name, "delete"):
            count, _, error = await _run(
                app_engine,
                f'delete from "{table.name}" where "{column}" = cast(:c2 as uuid)',
                {"c2": c2},
                tenant=a,
                client=c1,
            )
            if error is not None or count != 0:
                failures.append(f"{table.name}: delete of client 2's rows: {count} ({error})")
        if await _admin_count(admin_engine, table.name, a) != before:
            failures.append(f"{table.name}: rows changed under the client wall")
    _fail_if(failures)


# --- privileges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("update audit_log set action = action where tenant_id = :a", "update the audit log"),
        ("delete from audit_log where tenant_id = :a", "delete from the audit log"),
        ("truncate audit_log", "truncate the audit log"),
        (
            "insert into tenants (id, slug, name) values (:a, 'rls-forged', 'x')",
            "insert a tenant (even its own id)",
        ),
        ("delete from tenants where id = :a", "delete its tenant"),
        (
            "insert into signing_keys (kid, private_jwk_enc, public_jwk, sign_until, verify_until)"
            " values ('forged', '\\x00', '{}', now(), now())",
            "insert a signing key",
        ),
        ("update signing_keys set sign_until = now()", "update signing keys"),
        ("delete from signing_keys", "delete signing keys"),
    ],
)
async def test_application_role_lacks_the_privilege(
    seeded: Seeded, app_engine: AsyncEngine, sql: str, what: str
) -> None:
    params = {"a": seeded.tenant_a} if ":a" in sql else {}
    _, _, error = await _run(app_engine, sql, params, tenant=seeded.tenant_a)
    assert error is not None, f"the application role could {what}"
    assert _sqlstate(error) == INSUFFICIENT_PRIVILEGE, error.orig
    assert "permission denied" in str(error.orig), error.orig


async def test_each_tenant_sees_only_its_own_tenant_row(
    seeded: Seeded, app_engine: AsyncEngine
) -> None:
    _, rows, error = await _run(
        app_engine, "select id from tenants order by id", tenant=seeded.tenant_a
    )
    assert error is None
    assert [r.id for r in rows] == [seeded.tenant_a]
    count, _, error = await _run(
        app_engine,
        "update tenants set name = 'taken over' where id = :b",
        {"b": seeded.tenant_b},
        tenant=seeded.tenant_a,
    )
    assert error is None
    assert count == 0
    _, rows, _ = await _run(app_engine, "select id from tenants")
    assert rows == []
