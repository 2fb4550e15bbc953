"""Secrets at rest: password hashes (argon2id), token digests, encrypted fields.

* Passwords: argon2id (by default argon2-cffi's parameters; `AUTH_PASSWORD_*`
  set them, `configure_password_hashing`), verified off the event loop.
* Opaque tokens (refresh, API, invitation, reset) carry 256 random bits, so
  a SHA-256 digest is enough to store them: nothing to brute-force.
* Secrets we must read back (OIDC client secrets, private signing keys):
  AES-256-GCM under a key derived from `AUTH_SECRET_KEY` with HKDF.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.core.config import AuthSettings

_hasher = PasswordHasher()
# A real hash to verify against when the account does not exist, so that the
# answer takes as long either way: made on first need, with the parameters new
# hashes get.
_dummy_hash: str | None = None


def configure_password_hashing(auth: AuthSettings) -> None:
    """New hashes with the settings' argon2id parameters (each composition root calls
    this; hashes made before keep theirs and still verify)."""
    global _hasher, _dummy_hash
    wanted = (auth.password_time_cost, auth.password_memory_kib, auth.password_parallelism)
    if wanted != (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism):
        _hasher = PasswordHasher(time_cost=wanted[0], memory_cost=wanted[1], parallelism=wanted[2])
        _dummy_hash = None


MIN_PASSWORD_LENGTH = 12


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        global _dummy_hash
        if password_hash is None and _dummy_hash is None:
            _dummy_hash = _hasher.hash("callpact-timing-equaliser")
        try:
            return (
                _hasher.verify(password_hash or _dummy_hash or "", password)
                and password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _key(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"callpact", info=purpose).derive(
        secret_key.encode()
    )


def encrypt(secret_key: str, plaintext: bytes, purpose: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(secret_key, purpose)).encrypt(nonce, plaintext, purpose)


def decrypt(secret_key: str, blob: bytes, purpose: bytes) -> bytes:
    return AESGCM(_key(secret_key, purpose)).decrypt(blob[:12], blob[12:], purpose)
