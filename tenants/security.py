"""Secrets at rest: password hashes (argon2id), token digests, encrypted fields.

* Passwords: argon2id (argon2-cffi's defaults), verified off the event loop.
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

_hasher = PasswordHasher()
# A real hash to verify against when the account does not exist, so that the
# answer takes as long either way.
_DUMMY_HASH = _hasher.hash("callpact-timing-equaliser")

MIN_PASSWORD_LENGTH = 12


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
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
