"""Settings: environment variables ``SELLERVAULT_*`` over an optional ``sellervault.toml`` in
the data directory, validated once at start.

Production-safe defaults; configuration may tighten any number of PARAMETERS.md but never
loosen it past its floor, and a setting nobody knows is an error, not a silent no-op.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "SELLERVAULT_"
CONFIG_FILE_NAME = "sellervault.toml"
LOOPBACK_NAMES = {"localhost"}
SECURE_SSLMODES = {"require", "verify-ca", "verify-full"}


class ConfigError(Exception):
    """A setting is unknown, malformed or below its policy floor; the message names it."""


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_local(host: str) -> bool:
    """A local socket (empty or a path) or a loopback address, with an optional :port."""
    host = host.strip()
    if not host or host.startswith("/") or _is_loopback(host):
        return True
    name, _, port = host.rpartition(":")
    return port.isdigit() and _is_loopback(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Path("var/sellervault")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; empty means SQLite in the data directory"
    )
    root_key_passphrase: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    hsts_max_age: int = 63072000
    worker_threads: int | None = Field(
        default=None, ge=1, le=16,
        description="threads running requests' database work; empty: the database's default "
                    "(1 on SQLite, 4 on PostgreSQL)")

    audit_retention_days: int = 365
    deletion_deadline_hours: int = 72
    session_idle_minutes: int = Field(default=15, ge=1)
    session_absolute_hours: int = Field(default=8, ge=1)
    password_min_length: int = 12
    api_key_max_age_days: int = 365

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        data_dir = os.environ.get(ENV_PREFIX + "DATA_DIR")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        candidate = Path(data_dir) if data_dir else cls.model_fields["data_dir"].default
        init_dir = getattr(init_settings, "init_kwargs", {}).get("data_dir")
        if init_dir is not None:
            candidate = Path(init_dir)
        if (candidate / CONFIG_FILE_NAME).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, candidate / CONFIG_FILE_NAME))
        return tuple(sources)

    # -- floors (PARAMETERS.md): may tighten, never loosen ---------------------------------

    @field_validator("audit_retention_days")
    @classmethod
    def _retention_floor(cls, value: int) -> int:
        if value < 365:
            raise ValueError("security log retention may not be below 365 days")
        return value

    @field_validator("deletion_deadline_hours")
    @classmethod
    def _deletion_ceiling(cls, value: int) -> int:
        if not 1 <= value <= 72:
            raise ValueError("deletion/return deadline must be between 1 and 72 hours")
        return value

    @field_validator("password_min_length")
    @classmethod
    def _password_floor(cls, value: int) -> int:
        if not 12 <= value <= 128:
            raise ValueError("minimum password length must be between 12 and 128")
        return value

    @field_validator("api_key_max_age_days")
    @classmethod
    def _api_key_ceiling(cls, value: int) -> int:
        if not 1 <= value <= 365:
            raise ValueError("API keys must expire within 365 days")
        return value

    @field_validator("hsts_max_age")
    @classmethod
    def _hsts_floor(cls, value: int) -> int:
        if value < 63072000:
            raise ValueError("HSTS max-age may not be below 63072000 seconds (two years)")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self

    @field_validator("database_url")
    @classmethod
    def _database_in_transit(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_database_url(value.get_secret_value())
        return value

    # -- derived -------------------------------------------------------------------------

    @property
    def root_key_file(self) -> Path:
        return self.data_dir / "keys" / "root.json"

    @property
    def certificate_file(self) -> Path:
        return self.tls_cert_file or self.data_dir / "tls" / "server.crt"

    @property
    def certificate_key_file(self) -> Path:
        return self.tls_key_file or self.data_dir / "tls" / "server.key"

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir / "sellervault.db"

    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.sqlite_file}"


def check_database_url(url: str) -> None:
    """Refuse a TCP database connection to a non-loopback host unless it requires TLS."""
    from sqlalchemy.engine import make_url

    if url.startswith("postgres://"):
        url = "postgresql://" + url.split("://", 1)[1]
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in its text
        raise ValueError("database_url is not a valid database URL") from exc
    if parsed.get_backend_name() == "sqlite":
        return
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("database_url must be a sqlite or postgresql URL")
    query: dict[str, Any] = dict(parsed.query)
    # libpq also takes hosts from the query (host=a,b or repeated; hostaddr is where it really
    # connects): every one of them must be a local socket or loopback to go without TLS.
    hosts = [parsed.host or ""]
    for key in ("host", "hostaddr"):
        values = query.get(key, ())
        for value in values if isinstance(values, tuple) else (values,):
            hosts.extend(str(value).split(","))
    if all(_is_local(host) for host in hosts):
        return
    sslmode = query.get("sslmode")
    if isinstance(sslmode, tuple):
        sslmode = sslmode[-1]
    if sslmode not in SECURE_SSLMODES:
        raise ValueError(
            "database_url points at a non-loopback host without TLS; "
            "add sslmode=verify-full (or require)"
        )


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning every problem into a ConfigError that names the setting."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    # Matched without regard to case, as the settings themselves are read.
    unknown = sorted(name for name in os.environ if name.upper().startswith(ENV_PREFIX)
                     and name.upper() not in known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    problem: str | None = None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            problems.append(f"{where}: {error['msg']}")
        problem = "invalid configuration: " + "; ".join(problems)
    except tomllib.TOMLDecodeError as exc:  # the position only: the text may hold a secret
        problem = f"{CONFIG_FILE_NAME} is not valid TOML: {exc}"
    # Raised outside the handler, so the error keeps no link to the pydantic error (whose
    # input may be a database URL with its password).
    raise ConfigError(problem)


__all__ = ["ConfigError", "Settings", "check_database_url", "load_settings"]
