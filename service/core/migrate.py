"""Alembic driven from code: the CLI, `callpact up` and the tests use these,
so every run exercises the same migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations
from service.core.config import DatabaseSettings

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(settings: DatabaseSettings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_settings"] = settings
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def upgrade(settings: DatabaseSettings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: DatabaseSettings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


async def upgrade_async(settings: DatabaseSettings, revision: str = "head") -> None:
    # env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade, settings, revision)


async def downgrade_async(settings: DatabaseSettings, revision: str) -> None:
    await asyncio.to_thread(downgrade, settings, revision)
