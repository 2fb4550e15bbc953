"""Contacts: find the contacts of an agent key no agent had when they landed.

A contact whose `agent_key` (the telephony system's agent id) matched no
agent is stored with `agent_id` null. When the key is later given to an agent
(`service/agents/service.py`), those contacts are attributed to it in the
same transaction (`repository.attribute_contacts`), so the agent's KPIs and
double bookings count them; re-sending them would not, since a re-sent
contact with the same facts is a duplicate.

The index holds only such contacts (`agent_id is null and agent_key is not
null`): a contact of a mapped agent, the normal case, costs an import nothing
more.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "create index contacts_unmapped_agent on contacts (tenant_id, agent_key)"
        " where agent_id is null and agent_key is not null"
    )


def downgrade() -> None:
    op.execute("drop index if exists contacts_unmapped_agent")
