"""Routes of the clients domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["clients"])
