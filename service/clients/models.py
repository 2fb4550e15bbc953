"""The clients domain's table is `tenants.models.Client` (identity needs it for
client viewers and their identity providers, and `tenants` may not import a
domain). It is re-exported here so the operations code names one place.

`Client` declares no `__client_column__`, so `scoped(Client, ctx)` alone does
not narrow a client viewer to their own client: the repository adds
`Client.id == ctx.client_id` itself (and the RESTRICTIVE policy on `clients`
holds the same line in the database)."""

from __future__ import annotations

from tenants.models import Client

__all__ = ["Client"]
