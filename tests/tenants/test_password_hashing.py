"""Argon2id parameters come from the settings; hashes keep their own."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from service.core.config import AuthSettings, Settings
from tenants import security
from tenants.security import configure_password_hashing, hash_password, verify_password

STRONG = "x" * 40


async def test_new_hashes_take_the_configured_cost_and_old_ones_still_verify() -> None:
    saved = security._hasher
    try:
        configure_password_hashing(AuthSettings(password_time_cost=1, password_memory_kib=64))
        cheap = await hash_password("correct horse battery")
        assert cheap.startswith("$argon2id$")
        assert "m=64,t=1,p=4" in cheap
        configure_password_hashing(
            AuthSettings(password_time_cost=2, password_memory_kib=128, password_parallelism=1)
        )
        dearer = await hash_password("correct horse battery")
        assert "m=128,t=2,p=1" in dearer
        # A hash made with other parameters verifies: they are in the hash.
        assert await verify_password(cheap, "correct horse battery")
        assert not await verify_password(cheap, "wrong horse battery")
        # No account: the dummy hash is made with the current parameters, and it is a no.
        assert not await verify_password(None, "correct horse battery")
        assert security._dummy_hash is not None
        assert "m=128,t=2,p=1" in security._dummy_hash
    finally:
        security._hasher = saved
        security._dummy_hash = None


def test_defaults_are_argon2_cffis() -> None:
    auth = AuthSettings()
    default = PasswordHasher()
    assert (auth.password_time_cost, auth.password_memory_kib, auth.password_parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )


@pytest.mark.parametrize(
    ("time_cost", "memory_kib"), [(1, 65_536), (3, 8_192)], ids=["one_pass", "8_MiB"]
)
def test_production_refuses_less_than_owasps_floor(time_cost: int, memory_kib: int) -> None:
    with pytest.raises(ValidationError, match="AUTH_PASSWORD_MEMORY_KIB"):
        Settings(
            env="production",
            auth={
                "platform_admin_token": STRONG,
                "secret_key": STRONG,
                "password_time_cost": time_cost,
                "password_memory_kib": memory_kib,
            },
        )
    ok = Settings(
        env="production",
        auth={"platform_admin_token": STRONG, "secret_key": STRONG, "password_time_cost": 2},
    )
    assert ok.auth.password_memory_kib == 65_536
