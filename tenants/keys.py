"""JWT signing keys: a rotating ES256 key set kept in `signing_keys`.

* One key signs at a time (the newest whose `sign_until` is ahead); older
  keys stay in the published key set (`/.well-known/jwks.json`) until every
  token they signed has expired (`verify_until`).
* `rotate_keys` (cron and `callpact keys rotate`) adds the next key a day
  before the current one stops signing. Processes pick new keys up without a
  restart: the set is reloaded every `REFRESH_S`, and at once when a token
  names an unknown `kid` — but at most once per `UNKNOWN_KID_RELOAD_S`, so a
  flood of forged kids costs one query a minute, not one per request.
* Private keys are stored encrypted (AES-GCM under AUTH_SECRET_KEY).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

from joserfc.jwk import ECKey, KeySet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from service.core.errors import DependencyUnavailable
from service.core.time import utcnow
from tenants.models import SigningKey
from tenants.security import decrypt, encrypt

ALGORITHM = "ES256"
SIGN_FOR = timedelta(days=30)
ROTATE_AHEAD = timedelta(days=1)
VERIFY_MARGIN = timedelta(hours=1)  # longer than any access token lives
REFRESH_S = 300.0
UNKNOWN_KID_RELOAD_S = 60.0
_PURPOSE = b"signing-key"
_ROTATION_LOCK = 0x63616C6C70616374  # "callpact": one rotation at a time, platform-wide


class SigningKeyUnavailable(DependencyUnavailable):
    code = "signing_key_unavailable"
    title = "No signing key"


class KeyStore:
    def __init__(self, engine: AsyncEngine, secret_key: str) -> None:
        self._engine = engine
        self._secret = secret_key
        self._verify: dict[str, ECKey] = {}
        self._signing: ECKey | None = None
        self._loaded_at = 0.0
        self._last_unknown_reload = -UNKNOWN_KID_RELOAD_S
        self.reloads = 0

    async def load(self) -> None:
        now = utcnow()
        async with AsyncSession(self._engine) as session:
            rows = (
                (
                    await session.execute(
                        select(SigningKey)
                        .where(col(SigningKey.verify_until) > now)
                        .order_by(col(SigningKey.created_at))
                    )
                )
                .scalars()
                .all()
            )
        verify: dict[str, ECKey] = {}
        signing: ECKey | None = None
        for row in rows:
            verify[row.kid] = ECKey.import_key(
                row.public_jwk, {"kid": row.kid, "alg": ALGORITHM, "use": "sig"}
            )
            if row.sign_until > now:
                private = json.loads(decrypt(self._secret, row.private_jwk_enc, _PURPOSE))
                signing = ECKey.import_key(private, {"kid": row.kid, "alg": ALGORITHM})
        self._verify, self._signing = verify, signing
        self._loaded_at = time.monotonic()
        self.reloads += 1

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > REFRESH_S:
            await self.load()

    async def signing_key(self) -> ECKey:
        await self._fresh()
        if self._signing is None:
            await self.load()
        if self._signing is None:
            # The worker's daily rotation was missed for a whole day: refuse to sign (503),
            # never a 500; `callpact keys rotate` or an API restart adds a key.
            raise SigningKeyUnavailable(
                "No signing key is valid; an operator must run `callpact keys rotate`."
            )
        return self._signing

    async def verification_key(self, kid: str) -> ECKey | None:
        await self._fresh()
        key = self._verify.get(kid)
        if key is None and time.monotonic() - self._last_unknown_reload >= UNKNOWN_KID_RELOAD_S:
            self._last_unknown_reload = time.monotonic()
            await self.load()
            key = self._verify.get(kid)
        return key

    def knows(self, kid: str) -> bool:
        """Whether `kid` verifies, from memory only: False when the set is due a reload
        (the caller then takes the path that reloads it)."""
        return kid in self._verify and time.monotonic() - self._loaded_at <= REFRESH_S

    async def jwks(self) -> dict[str, Any]:
        await self._fresh()
        keys: dict[str, Any] = dict(KeySet(list(self._verify.values())).as_dict(private=False))
        return keys


async def rotate_keys(admin: AsyncSession, secret_key: str, *, force: bool = False) -> str | None:
    """Add a new signing key when the current one stops signing within a day
    (or now, with `force`). Returns the new kid, or None when none was needed.

    Serialized across processes by a transaction-level advisory lock: two
    workers, or a worker and an API starting up, that find the rotation due
    at once would otherwise both read the same latest key and add two."""
    await admin.execute(select(func.pg_advisory_xact_lock(_ROTATION_LOCK)))
    now = utcnow()
    latest = (
        await admin.execute(select(SigningKey).order_by(col(SigningKey.sign_until).desc()).limit(1))
    ).scalar_one_or_none()
    if latest is not None and not force and latest.sign_until - ROTATE_AHEAD > now:
        return None
    key = ECKey.generate_key("P-256", private=True)
    kid = uuid.uuid4().hex[:16]
    private = key.as_dict(private=True)
    sign_until = now + SIGN_FOR
    if force and latest is not None and latest.sign_until > now:
        latest.sign_until = now  # the new key signs from now; the old one still verifies
    admin.add(
        SigningKey(
            kid=kid,
            private_jwk_enc=encrypt(secret_key, json.dumps(private).encode(), _PURPOSE),
            public_jwk=key.as_dict(private=False),
            created_at=now,
            sign_until=sign_until,
            verify_until=sign_until + VERIFY_MARGIN,
        )
    )
    await admin.flush()
    return kid


async def open_key_store(db: Any, secret_key: str) -> KeyStore:
    """The process's key store, with a signing key created if there is none yet."""
    async with db.admin_transaction() as admin:
        await rotate_keys(admin, secret_key)
    store = KeyStore(db.engine, secret_key)
    await store.load()
    return store
