"""OIDC login and identity-provider configuration (to be built)."""

from __future__ import annotations

from fastapi import APIRouter

idp_router = APIRouter(tags=["identity providers"])
oidc_router = APIRouter(prefix="/auth/oidc", tags=["auth"])
