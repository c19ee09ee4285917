"""Settings: environment variables ``SELLERVAULT_*`` over an optional ``sellervault.toml`` in
the data directory, validated once at start.

Production-safe defaults; configuration may tighten any number of PARAMETERS.md but never
loosen it past its floor, and a setting nobody knows is an error, not a silent no-op.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sellervault.network import LOOPBACK, parse_networks

ENV_PREFIX = "SELLERVAULT_"
CONFIG_FILE_NAME = "sellervault.toml"
LOOPBACK_NAMES = {"localhost"}
SECURE_SSLMODES = {"require", "verify-ca", "verify-full"}
LIBPQ_DEFAULT_SSLMODE = "prefer"
LIBPQ_DEFAULT_HOST = ""  # no host anywhere: libpq's Unix socket directory (local)

# Where libpq or psycopg could take the host or the TLS mode from outside the URL and outside
# the variables check_database_url reads. They are refused, not followed: SellerVault does not
# parse pg_service.conf (where it is and which entry wins are libpq's rules, and it can change
# after the check), a conninfo parameter is a whole psycopg connection string of its own, and
# the deprecated requiressl overrides an sslmode written before it ("sslmode=require&
# requiressl=0" connects without TLS).
_SERVICE = ("a libpq service file could supply the database host, hostaddr and sslmode, which "
            "SellerVault does not check")
UNCHECKED_PARAMETERS = {
    "service": f"database_url may not name a service: {_SERVICE}; put them in the URL",
    "servicefile": f"database_url may not name a servicefile: {_SERVICE}; put them in the URL",
    "conninfo": "database_url may not carry a conninfo parameter: psycopg would take the host "
                "and sslmode from it unchecked; put them in the URL",
    "requiressl": "database_url may not carry requiressl (deprecated): it can override "
                  "sslmode; use sslmode=verify-full",
}
UNCHECKED_VARIABLES = {
    "PGSERVICE": f"PGSERVICE is set: {_SERVICE}; unset it and put them in database_url",
    "PGSERVICEFILE": f"PGSERVICEFILE is set: {_SERVICE}; unset it and put them in database_url",
}


# What a Redis URL may say besides where it goes: the database number and the files of its
# TLS. Every other query parameter is handed by redis-py to its connection as it stands, and
# some change where or how it connects (``host=`` where the URL has none, ``ssl_cert_reqs=
# none``, ``ssl_check_hostname=false``), so they are refused rather than judged one by one.
REDIS_SCHEMES = {"redis", "rediss", "unix"}
REDIS_QUERY_PARAMETERS = {"db"}
REDIS_TLS_PARAMETERS = {"ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile"}


# Alert notifications (``notifications``).
WEBHOOK_SECRET_MIN_LENGTH = 32  # characters of the HMAC key: 32 random ones carry >= 128 bits
INSTANCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SMTP_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")


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
    checkpoint_dir: Path | None = Field(
        default=None,
        description="where signed security-log checkpoints are also appended (a file, "
                    "checkpoints.jsonl); put it on other storage than the database. Default: "
                    "DATA_DIR/checkpoints")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    hsts_max_age: int = 63072000
    worker_threads: int | None = Field(
        default=None, ge=1, le=16,
        description="threads running requests' database work; empty: the database's default "
                    "(1 on SQLite, 4 on PostgreSQL)")

    allowed_networks: str = Field(
        default=LOOPBACK,
        description="comma-separated CIDRs that may reach the service; everyone else gets a "
                    "bare 403 (default: loopback only)")
    trusted_proxies: str = Field(
        default="",
        description="comma-separated CIDRs of proxies whose X-Forwarded-For is believed "
                    "(default: none)")

    max_connections: int = Field(
        default=512, ge=1, le=100_000,
        description="connections and requests in progress at once; beyond it, 503")

    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis for the shared counters (redis://, rediss://, unix://); empty: "
                    "counters in the process")

    search_budget_per_hour: int = Field(
        default=60, ge=1, le=600,
        description="searches by buyer email, phone or postal code per principal and hour")

    canaries_per_tenant: int = Field(
        default=3, ge=1, le=20,
        description="canary orders every tenant holds from its first ingest (at least one)")
    auto_lock: bool = Field(
        default=True,
        description="disable an account at once when it touches a canary, or when a person "
                    "reveals an unusual number of buyers (the alert is raised either way)")
    rate_hard_cap_per_minute: int = Field(
        default=1200, ge=60, le=100_000,
        description="requests a minute by one principal that raise a request-rate alert "
                    "whatever its baseline")

    # -- alert notifications (``notifications``): each channel off unless configured ------
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="https:// URL every alert is POSTed to as signed JSON (http:// is refused); "
                    "secret: a webhook URL often carries a token")
    notify_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the key of the webhook's HMAC-SHA256 signature (at least 32 characters; "
                    "required with notify_webhook_url)")
    notify_webhook_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates the webhook's certificate is verified against (a "
                    "private CA); default: the system trust store")
    notify_smtp_host: str | None = Field(
        default=None, description="SMTP server alert e-mails go through; STARTTLS required")
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_user: str | None = Field(
        default=None, description="SMTP login, sent only after STARTTLS (with the password)")
    notify_smtp_password: SecretStr | None = None
    notify_smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates the SMTP server's certificate is verified against; "
                    "default: the system trust store")
    notify_email_from: str | None = Field(default=None, description="the alert e-mails' From")
    notify_email_to: str | None = Field(
        default=None, description="comma-separated addresses alert e-mails go to")
    notify_instance: str = Field(
        default="sellervault",
        description="this vault's name in every notification (lower-case letters, digits, "
                    "hyphens): tells several vaults' alerts apart")

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

    @field_validator("allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # NetworkSettingError is a ValueError: named by the setting
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _someone_allowed(cls, value: str) -> str:
        if not parse_networks(value):
            raise ValueError("name at least one network (the default is loopback only)")
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

    @field_validator("redis_url")
    @classmethod
    def _redis_in_transit(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    @field_validator("notify_webhook_url")
    @classmethod
    def _webhook_in_transit(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_webhook_url(value.get_secret_value())
        return value

    @field_validator("notify_webhook_secret")
    @classmethod
    def _webhook_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < WEBHOOK_SECRET_MIN_LENGTH:
            raise ValueError(f"the webhook secret must be at least {WEBHOOK_SECRET_MIN_LENGTH} "
                             "characters (e.g. python3 -c 'import secrets; "
                             "print(secrets.token_hex(32))')")
        return value

    @field_validator("notify_webhook_ca_file", "notify_smtp_ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @field_validator("notify_smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None) -> str | None:
        if value is not None and not _SMTP_HOST.fullmatch(value):
            raise ValueError("a host name or an address")
        return value

    @field_validator("notify_email_from")
    @classmethod
    def _email_from(cls, value: str | None) -> str | None:
        if value is not None:
            check_email_address(value)
        return value

    @field_validator("notify_email_to")
    @classmethod
    def _email_to(cls, value: str | None) -> str | None:
        if value is not None:
            addresses = [part.strip() for part in value.split(",")]
            if not all(addresses):
                raise ValueError("comma-separated addresses, none empty")
            for address in addresses:
                check_email_address(address)
        return value

    @field_validator("notify_instance")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if not INSTANCE_NAME.fullmatch(value):
            raise ValueError("lower-case letters, digits and hyphens, at most 63")
        return value

    @model_validator(mode="after")
    def _notification_channels(self) -> Settings:
        """A channel is configured whole or not at all: half of one would fail every
        delivery, silently until its notifications are dead letters."""
        if (self.notify_webhook_url is None) != (self.notify_webhook_secret is None):
            raise ValueError("notify_webhook_url and notify_webhook_secret must be set together")
        if self.notify_webhook_ca_file is not None and self.notify_webhook_url is None:
            raise ValueError("notify_webhook_ca_file is set without notify_webhook_url")
        email = (self.notify_smtp_host, self.notify_email_from, self.notify_email_to)
        if any(value is not None for value in email) and None in email:
            raise ValueError("notify_smtp_host, notify_email_from and notify_email_to must be "
                             "set together")
        if (self.notify_smtp_user is None) != (self.notify_smtp_password is None):
            raise ValueError("notify_smtp_user and notify_smtp_password must be set together")
        if self.notify_smtp_host is None and (self.notify_smtp_user is not None
                                              or self.notify_smtp_ca_file is not None):
            raise ValueError("SMTP login or CA file set without notify_smtp_host")
        return self

    # -- derived -------------------------------------------------------------------------

    @property
    def webhook_configured(self) -> bool:
        return self.notify_webhook_url is not None

    @property
    def email_configured(self) -> bool:
        return self.notify_smtp_host is not None

    @property
    def email_recipients(self) -> list[str]:
        return [part.strip() for part in (self.notify_email_to or "").split(",") if part.strip()]

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
    def checkpoint_file(self) -> Path:
        return (self.checkpoint_dir or self.data_dir / "checkpoints") / "checkpoints.jsonl"

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir / "sellervault.db"

    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.sqlite_file}"


def check_database_url(url: str, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a PostgreSQL connection that libpq would make to a non-loopback host without
    TLS. Decided on what libpq will *effectively* use, not on the URL alone: libpq fills what
    the URL leaves out from ``environ`` (``PGHOST``, ``PGHOSTADDR``, ``PGSSLMODE``), so a URL
    without a host is a local socket only if ``PGHOST`` says so too. ``environ`` is a parameter
    so tests can give their own; it must be the environment the connections are made in."""
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
    _refuse_unchecked_sources(query, environ)
    if all(_is_local(host) for host in _effective_hosts(parsed.host, query, environ)):
        return
    if _effective_sslmode(query, environ) not in SECURE_SSLMODES:
        raise ValueError(
            "database_url points at a non-loopback host without TLS (libpq's PGHOST, "
            "PGHOSTADDR and PGSSLMODE count too); add sslmode=verify-full (or require)"
        )


def _refuse_unchecked_sources(query: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Refuse what would let libpq or psycopg take the host or the TLS mode from somewhere this
    check does not read, whatever the host (a loopback URL too: the service could move it)."""
    for name, problem in UNCHECKED_PARAMETERS.items():
        if name in query:
            raise ValueError(problem)
    for name, problem in UNCHECKED_VARIABLES.items():
        if name in environ:
            raise ValueError(problem)


def _effective_hosts(url_host: str | None, query: Mapping[str, Any],
                     environ: Mapping[str, str]) -> list[str]:
    """Every host and hostaddr libpq would use. Where the URL gives none, libpq takes
    ``PGHOST`` (else its local socket directory) and ``PGHOSTADDR``. libpq connects to the
    hostaddr when there is one, but the host is checked too: refusing a remote host name in
    front of a loopback hostaddr errs on the safe side and keeps the rule simple."""
    hosts = _entries(url_host, query.get("host")) or _entries(environ.get("PGHOST"))
    hostaddrs = _entries(query.get("hostaddr")) or _entries(environ.get("PGHOSTADDR"))
    return (hosts or [LIBPQ_DEFAULT_HOST]) + hostaddrs


def _entries(*given: str | tuple[str, ...] | None) -> list[str]:
    """The entries of libpq's comma-separated lists (a query key given twice is a tuple);
    empty when nothing is given, which is when libpq turns to its environment. SQLAlchemy
    drops an empty query value (``?host=``), so libpq never sees one either."""
    entries: list[str] = []
    for item in given:
        for value in item if isinstance(item, tuple) else (item,):
            if value:
                entries.extend(str(value).split(","))
    return entries


def _effective_sslmode(query: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """The URL's sslmode, else ``PGSSLMODE``, else libpq's default ``prefer`` (which lets an
    attacker on the path turn TLS off). The deprecated ``PGREQUIRESSL=1`` is not read: it can
    only raise an unset sslmode to ``require``, so ignoring it refuses, never accepts."""
    sslmode = query["sslmode"] if "sslmode" in query else environ.get("PGSSLMODE")
    if isinstance(sslmode, tuple):
        sslmode = sslmode[-1]
    return str(sslmode) if sslmode is not None else LIBPQ_DEFAULT_SSLMODE


def check_redis_url(url: str) -> None:
    """Refuse a Redis connection without TLS to a host that is not loopback (a Unix socket is
    local), and any query parameter but the database number and TLS files. Messages never
    carry the URL: it may hold the password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""  # redis-py connects to localhost when the URL names none
        parts.port  # noqa: B018 (parsing the port is the check: "host:x" raises)
    except ValueError:
        raise ValueError("redis_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES or "://" not in url:
        raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
    allowed = REDIS_QUERY_PARAMETERS | (REDIS_TLS_PARAMETERS if scheme == "rediss" else set())
    if set(parse_qs(parts.query, keep_blank_values=True)) - allowed:
        raise ValueError("redis_url may carry only the query parameters db and, with "
                         "rediss://, " + ", ".join(sorted(REDIS_TLS_PARAMETERS)))
    if scheme == "redis" and host and not _is_loopback(host):
        raise ValueError("redis_url points at a non-loopback host without TLS; use rediss://")


def check_webhook_url(url: str) -> None:
    """Refuse a webhook that is not ``https://`` (alerts are never sent in clear, loopback
    included) or names no host. Messages never carry the URL: it may hold a token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        raise ValueError("notify_webhook_url is not a valid URL") from None
    if parts.scheme.lower() != "https" or "://" not in url:
        raise ValueError("notify_webhook_url must be an https:// URL (alerts are never sent "
                         "over plain http)")
    if not host:
        raise ValueError("notify_webhook_url names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("notify_webhook_url may not carry a user or password (the signature "
                         "authenticates the sender; a token may go in the path or query)")


def check_email_address(address: str) -> None:
    """One plain address (``name@example.com``): no display name, no line break, no list (an
    address is written into a header)."""
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError("an e-mail address such as alerts@example.com") from None
    if not parsed.username or not parsed.domain or parsed.addr_spec != address:
        raise ValueError("an e-mail address such as alerts@example.com")


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


__all__ = ["ConfigError", "Settings", "check_database_url", "check_email_address",
           "check_redis_url", "check_webhook_url", "load_settings"]
