"""Configuration: ``SELLERVAULT_*`` environment variables over an optional ``sellervault.toml``
in the data directory, validated once at start.

The specification in one paragraph: the defaults are the built-in profile of PARAMETERS.md;
configuration may tighten any number but never loosen it past its floor (start is refused
with a ConfigError naming the setting); a setting nobody knows is an error, not a silent
no-op, whether it comes from the environment or the file; secrets never show in a repr or
an error; and a TCP database connection to a non-loopback host must require TLS.

That last rule is decided on where libpq will really connect, not on the URL alone: what the
URL leaves out libpq takes from its environment, so a URL without a host is local only if
``PGHOST`` is, ``PGHOSTADDR`` counts where the URL gives no hostaddr, and ``PGSSLMODE`` where
it gives no sslmode (the URL wins over the environment). A libpq service (``service=``,
``servicefile=``, ``PGSERVICE``, ``PGSERVICEFILE``), a psycopg ``conninfo=`` and the deprecated
``requiressl=`` could supply the host or TLS mode unchecked: they are refused, whatever the
host. Refusals name the setting or variable, never the URL, its password or a host.

Redis (``redis_url``, optional: absent means counters in the process) follows the same rule:
plain ``redis://`` only to loopback (or a ``unix://`` socket), ``rediss://`` anywhere, and no
query parameter but ``db`` (and the TLS files with ``rediss://``), since redis-py hands the
others to its connection unchecked (``host=``, ``ssl_cert_reqs=none``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from sellervault.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    check_database_url,
    check_redis_url,
    load_settings,
)

DB_PASSWORD = "s3cret-db-pw-7f1c"
PASSPHRASE = "root-passphrase-9b2e"
LIBPQ_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGSSLMODE", "PGSERVICE", "PGSERVICEFILE",
                   "PGREQUIRESSL")


@pytest.fixture(autouse=True)
def _empty_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default data directory is relative (var/sellervault): run from an empty directory
    so no file of the developer's checkout leaks into a test."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq's variables decide where a database URL really connects: the machine's own must
    not change a result (a test that needs one sets it)."""
    for name in LIBPQ_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return str(caught.value)


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE_NAME
    path.write_text(text)
    return path


# -- defaults --------------------------------------------------------------------------------

def test_defaults_are_the_built_in_profile() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("var/sellervault")
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.root_key_passphrase is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8443)
    assert settings.tls_cert_file is None and settings.tls_key_file is None
    assert settings.tls_min_version == "1.2"
    assert settings.hsts_max_age == 63072000
    assert settings.audit_retention_days == 365
    assert settings.deletion_deadline_hours == 72
    assert settings.session_idle_minutes == 15
    assert settings.session_absolute_hours == 8
    assert settings.password_min_length == 12
    assert settings.api_key_max_age_days == 365


def test_defaults_derive_everything_from_the_data_directory(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert settings.effective_database_url() == f"sqlite:///{tmp_path / 'data' / 'sellervault.db'}"
    assert settings.root_key_file == tmp_path / "data" / "keys" / "root.json"
    assert settings.certificate_file == tmp_path / "data" / "tls" / "server.crt"
    assert settings.certificate_key_file == tmp_path / "data" / "tls" / "server.key"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.audit_retention_days = 30  # type: ignore[misc]
    assert settings.audit_retention_days == 365


# -- environment -----------------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value", "attribute", "expected"), [
    ("SELLERVAULT_PORT", "9443", "port", 9443),
    ("SELLERVAULT_HOST", "192.0.2.10", "host", "192.0.2.10"),
    ("SELLERVAULT_TLS_MIN_VERSION", "1.3", "tls_min_version", "1.3"),
    ("SELLERVAULT_AUDIT_RETENTION_DAYS", "730", "audit_retention_days", 730),
    ("SELLERVAULT_SESSION_IDLE_MINUTES", "5", "session_idle_minutes", 5),
    ("SELLERVAULT_DATA_DIR", "/srv/vault", "data_dir", Path("/srv/vault")),
    ("SELLERVAULT_WORKER_THREADS", "2", "worker_threads", 2),
])
def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, variable: str,
                                        value: str, attribute: str, expected: object) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), attribute) == expected


def test_secret_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://vault:{DB_PASSWORD}@127.0.0.1:5432/vault"
    monkeypatch.setenv("SELLERVAULT_DATABASE_URL", url)
    monkeypatch.setenv("SELLERVAULT_ROOT_KEY_PASSPHRASE", PASSPHRASE)
    settings = load_settings()
    assert settings.database_url is not None and settings.root_key_passphrase is not None
    assert settings.database_url.get_secret_value() == url
    assert settings.effective_database_url() == url
    assert settings.root_key_passphrase.get_secret_value() == PASSPHRASE


def test_explicit_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELLERVAULT_PORT", "9443")
    assert load_settings(port=10443).port == 10443


@pytest.mark.parametrize("variable", [
    "SELLERVAULT_FOO",
    "SELLERVAULT_AUDIT_RETENTION_DAY",  # a typo must not silently keep the default
    "SELLERVAULT_DB_PASSWORD",
    "sellervault_bogus",  # the prefix is matched without regard to case, like the settings
])
def test_unknown_environment_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch,
                                                         variable: str) -> None:
    monkeypatch.setenv(variable, "123")
    assert variable in config_error()


def test_unrelated_environment_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELLER_VAULT_FOO", "1")
    monkeypatch.setenv("MY_SELLERVAULT_FOO", "1")
    assert load_settings().port == 8443


# -- floors of PARAMETERS.md: tighten yes, loosen never ---------------------------------------

# (setting, loosened values, tightened or equal values)
FLOORS = [
    ("audit_retention_days", [364, 90, 0], [365, 400, 3650]),
    ("deletion_deadline_hours", [73, 720, 0], [72, 24, 1]),
    ("password_min_length", [11, 8, 129], [12, 16, 128]),
    ("api_key_max_age_days", [366, 730, 0], [365, 90, 1]),
    ("hsts_max_age", [63071999, 31536000, 0], [63072000, 94608000]),
]


@pytest.mark.parametrize(("setting", "loosened", "tightened"), FLOORS)
def test_loosened_floor_is_refused_naming_the_setting(setting: str, loosened: list[int],
                                                      tightened: list[int]) -> None:
    for value in loosened:
        message = config_error(**{setting: value})
        assert setting in message, (value, message)


@pytest.mark.parametrize(("setting", "loosened", "tightened"), FLOORS)
def test_loosened_floor_is_refused_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                        setting: str, loosened: list[int],
                                                        tightened: list[int]) -> None:
    monkeypatch.setenv("SELLERVAULT_" + setting.upper(), str(loosened[0]))
    assert setting in config_error()


@pytest.mark.parametrize(("setting", "loosened", "tightened"), FLOORS)
def test_tightened_setting_is_accepted(monkeypatch: pytest.MonkeyPatch, setting: str,
                                       loosened: list[int], tightened: list[int]) -> None:
    for value in tightened:
        assert getattr(load_settings(**{setting: value}), setting) == value
    monkeypatch.setenv("SELLERVAULT_" + setting.upper(), str(tightened[-1]))
    assert getattr(load_settings(), setting) == tightened[-1]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1", "SSLv3"])
def test_tls_below_1_2_is_refused(version: str) -> None:
    assert "tls_min_version" in config_error(tls_min_version=version)


@pytest.mark.parametrize("setting", ["session_idle_minutes", "session_absolute_hours"])
def test_session_lifetimes_must_be_positive(setting: str) -> None:
    assert setting in config_error(**{setting: 0})


@pytest.mark.parametrize("threads", [0, -1, 17])
def test_worker_threads_stay_between_one_and_the_pool(threads: int) -> None:
    assert "worker_threads" in config_error(worker_threads=threads)


def test_every_problem_is_reported_at_once() -> None:
    message = config_error(audit_retention_days=30, hsts_max_age=300, port=0)
    for setting in ("audit_retention_days", "hsts_max_age", "port"):
        assert setting in message


def test_certificate_and_key_come_together(tmp_path: Path) -> None:
    assert "tls_key_file" in config_error(tls_cert_file=tmp_path / "server.crt")
    assert "tls_cert_file" in config_error(tls_key_file=tmp_path / "server.key")
    both = load_settings(tls_cert_file=tmp_path / "a.crt", tls_key_file=tmp_path / "a.key")
    assert both.certificate_file == tmp_path / "a.crt"
    assert both.certificate_key_file == tmp_path / "a.key"


# -- the optional sellervault.toml in the data directory --------------------------------------

def test_config_file_in_the_data_directory_is_read(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "data", "port = 9444\naudit_retention_days = 400\n")
    settings = load_settings(data_dir=tmp_path / "data")
    assert (settings.port, settings.audit_retention_days) == (9444, 400)
    monkeypatch.setenv("SELLERVAULT_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().port == 9444


def test_config_file_in_the_default_data_directory_is_read() -> None:
    write_config(Path("var/sellervault"), "audit_retention_days = 400\n")
    assert load_settings().audit_retention_days == 400


def test_environment_wins_over_the_config_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, "port = 9444\n")
    monkeypatch.setenv("SELLERVAULT_PORT", "9555")
    assert load_settings(data_dir=tmp_path).port == 9555


def test_missing_config_file_is_fine(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path / "nowhere").port == 8443


def test_unknown_key_in_config_file_is_refused_by_name(tmp_path: Path) -> None:
    write_config(tmp_path, "port = 9444\naudit_retention = 400\n")
    assert "audit_retention" in config_error(data_dir=tmp_path)


def test_loosened_floor_in_config_file_is_refused_by_name(tmp_path: Path) -> None:
    write_config(tmp_path, "audit_retention_days = 90\n")
    assert "audit_retention_days" in config_error(data_dir=tmp_path)


def test_malformed_config_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, f'database_url = = "postgresql://u:{DB_PASSWORD}@db/x"\n')
    message = config_error(data_dir=tmp_path)
    assert CONFIG_FILE_NAME in message
    assert DB_PASSWORD not in message


# -- secrets ---------------------------------------------------------------------------------

def test_secrets_are_masked_in_repr_and_str() -> None:
    settings = load_settings(
        database_url=f"postgresql+psycopg://vault:{DB_PASSWORD}@127.0.0.1/vault",
        root_key_passphrase=PASSPHRASE,
    )
    for shown in (repr(settings), str(settings), settings.model_dump_json(),
                  repr(settings.database_url), str(settings.root_key_passphrase)):
        assert DB_PASSWORD not in shown
        assert PASSPHRASE not in shown
    assert "**********" in repr(settings)


def _all_text(error: ConfigError) -> str:
    """Everything an operator or a log handler could print for the error."""
    return "\n".join([str(error), repr(error), *map(str, error.args),
                      "".join(traceback.format_exception(error))])


@pytest.mark.parametrize("database_url", [
    f"postgresql+psycopg://vault:{DB_PASSWORD}@db.example.com/vault",  # refused: no TLS
    f"postgresql+psycopg://vault:{DB_PASSWORD}@db.example.com:notaport/vault",  # malformed
    f"oracle://vault:{DB_PASSWORD}@db.example.com/vault",  # unsupported backend
])
def test_secrets_never_appear_in_config_errors(monkeypatch: pytest.MonkeyPatch,
                                               database_url: str) -> None:
    monkeypatch.setenv("SELLERVAULT_DATABASE_URL", database_url)
    monkeypatch.setenv("SELLERVAULT_ROOT_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SELLERVAULT_PORT", "not-a-port")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = _all_text(caught.value)
    assert "database_url" in text and "port" in text
    assert DB_PASSWORD not in text
    assert PASSPHRASE not in text


def test_unknown_variable_error_names_it_without_its_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELLERVAULT_DB_PASSWORD", DB_PASSWORD)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = _all_text(caught.value)
    assert "SELLERVAULT_DB_PASSWORD" in text
    assert DB_PASSWORD not in text


def test_secret_in_config_file_never_appears_in_config_errors(tmp_path: Path) -> None:
    write_config(tmp_path, f'database_url = "postgresql://u:{DB_PASSWORD}@db.example.com/x"\n'
                           f'root_key_passphrase = "{PASSPHRASE}"\nbogus = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=tmp_path)
    text = _all_text(caught.value)
    assert "database_url" in text and "bogus" in text
    assert DB_PASSWORD not in text and PASSPHRASE not in text


# -- database connections in transit ---------------------------------------------------------

@pytest.mark.parametrize("url", [
    "sqlite:///var/sellervault/sellervault.db",
    "postgresql+psycopg://vault:pw@127.0.0.1:5432/vault",
    "postgresql+psycopg://vault:pw@127.8.9.10/vault",
    "postgresql+psycopg://vault:pw@localhost/vault",
    "postgresql+psycopg://vault:pw@[::1]:5432/vault",
    "postgresql://vault@/vault",  # libpq's default: the local socket
    "postgresql+psycopg://vault@/vault?host=/var/run/postgresql",
    "postgresql+psycopg://vault@/vault?host=localhost&host=127.0.0.2",
    "postgresql+psycopg://vault:pw@db.example.com/vault?sslmode=verify-full",
    "postgresql+psycopg://vault:pw@db.example.com/vault?sslmode=verify-ca",
    "postgresql+psycopg://vault:pw@203.0.113.5:5432/vault?sslmode=require",
    "postgresql+psycopg://vault@/vault?host=db.example.com&sslmode=verify-full",
])
def test_database_url_accepted(url: str) -> None:
    check_database_url(url)
    assert load_settings(database_url=url).effective_database_url() == url


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://vault:pw@db.example.com/vault",
    "postgresql+psycopg://vault:pw@203.0.113.5:5432/vault",
    "postgresql+psycopg://vault:pw@10.0.0.7/vault",  # private is not loopback
    "postgresql+psycopg://vault:pw@localhost.attacker.example/vault",
    "postgresql+psycopg://vault:pw@db.example.com/vault?sslmode=disable",
    "postgresql+psycopg://vault:pw@db.example.com/vault?sslmode=allow",
    "postgresql+psycopg://vault:pw@db.example.com/vault?sslmode=prefer",
    # The host can also come from the query string, where libpq takes it from too:
    "postgresql+psycopg://vault:pw@/vault?host=db.example.com",
    "postgresql+psycopg://vault:pw@/vault?host=localhost&host=db.example.com",
    "postgresql+psycopg://vault:pw@/vault?host=/var/run/postgresql,db.example.com",
    # hostaddr is where libpq really connects; host is then only the name for TLS.
    "postgresql+psycopg://vault:pw@localhost/vault?hostaddr=203.0.113.5",
])
def test_database_url_to_remote_host_without_tls_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="TLS"):
        check_database_url(url)
    message = config_error(database_url=url)
    assert "database_url" in message
    assert ":pw@" not in message


@pytest.mark.parametrize("url", ["mysql://vault:pw@127.0.0.1/vault", "not a url at all"])
def test_database_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_database_url(url)
    assert "database_url" in config_error(database_url=url)


# -- database connections in transit: what libpq fills in from its environment -----------------

REMOTE = "192.0.2.2"  # TEST-NET-1: never a real database


@pytest.mark.parametrize(("url", "environ"), [
    # No host in the URL: libpq takes PGHOST, and only a local one goes without TLS.
    ("postgresql://sv@/sellervault", {"PGHOST": REMOTE}),
    ("postgresql://sv@/sellervault", {"PGHOST": f"/var/run/postgresql,{REMOTE}"}),
    ("postgresql+psycopg://sv@/sellervault", {"PGHOST": "db.example.com"}),
    ("postgresql://sv@/sellervault", {"PGHOST": REMOTE, "PGSSLMODE": "prefer"}),
    # No hostaddr in the URL: libpq connects to PGHOSTADDR, whatever the host is called.
    ("postgresql://sv@localhost/sellervault", {"PGHOSTADDR": REMOTE}),
    ("postgresql://sv@127.0.0.1:5432/sellervault", {"PGHOSTADDR": f"127.0.0.1,{REMOTE}"}),
    ("postgresql://sv@/sellervault", {"PGHOSTADDR": REMOTE}),
    # PGSSLMODE counts only when it requires TLS, and the URL's sslmode wins over it.
    ("postgresql://sv@db.example.com/sellervault", {"PGSSLMODE": "disable"}),
    ("postgresql://sv@db.example.com/sellervault", {"PGSSLMODE": "prefer"}),
    ("postgresql://sv@db.example.com/sellervault", {"PGSSLMODE": "allow"}),
    ("postgresql://sv@db.example.com/sellervault?sslmode=disable", {"PGSSLMODE": "verify-full"}),
    ("postgresql://sv@/sellervault?sslmode=prefer", {"PGHOST": REMOTE, "PGSSLMODE": "require"}),
])
def test_database_url_completed_by_libpq_environment_to_a_remote_host_without_tls_is_refused(
        url: str, environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="without TLS"):
        check_database_url(url, environ=environ)


@pytest.mark.parametrize(("url", "environ"), [
    ("postgresql://sv@/sellervault", {"PGHOST": "/var/run/postgresql"}),
    ("postgresql://sv@/sellervault", {"PGHOST": "127.0.0.1"}),
    ("postgresql://sv@/sellervault", {"PGHOST": "localhost,/tmp"}),
    ("postgresql://sv@/sellervault", {"PGHOST": "", "PGHOSTADDR": ""}),  # set but empty: unset
    ("postgresql://sv@/sellervault?sslmode=verify-full", {"PGHOST": REMOTE}),
    ("postgresql://sv@/sellervault", {"PGHOST": REMOTE, "PGSSLMODE": "verify-full"}),
    # What the URL gives wins over the environment:
    ("postgresql://sv@127.0.0.1/sellervault", {"PGHOST": REMOTE}),
    ("postgresql://sv@/sellervault?host=/var/run/postgresql", {"PGHOST": REMOTE}),
    ("postgresql://sv@localhost/sellervault?hostaddr=127.0.0.1", {"PGHOSTADDR": REMOTE}),
    ("postgresql://sv@db.example.com/sellervault", {"PGSSLMODE": "verify-full"}),
    ("postgresql://sv@db.example.com/sellervault", {"PGSSLMODE": "require"}),
    ("postgresql://sv@db.example.com/sellervault?sslmode=verify-ca", {"PGSSLMODE": "disable"}),
    ("postgresql://sv@localhost/sellervault", {"PGSSLMODE": "disable"}),  # loopback: no TLS
    ("sqlite:///var/sellervault/sellervault.db", {"PGHOST": REMOTE, "PGSERVICE": "x"}),
])
def test_database_url_completed_by_libpq_environment_is_accepted_when_local_or_tls(
        url: str, environ: dict[str, str]) -> None:
    check_database_url(url, environ=environ)


@pytest.mark.parametrize(("url", "named"), [
    ("postgresql://sv@localhost/sellervault?service=x", "service"),
    ("postgresql://sv@/sellervault?service=x&sslmode=verify-full", "service"),
    ("postgresql://sv@localhost/sellervault?servicefile=/tmp/pg_service.conf", "servicefile"),
    # psycopg reads a conninfo parameter as a connection string of its own:
    (f"postgresql+psycopg://sv@/sellervault?conninfo=host%3D{REMOTE}%20sslmode%3Ddisable",
     "conninfo"),
    # requiressl overrides an sslmode written before it: this connects without TLS.
    ("postgresql://sv@db.example.com/sellervault?sslmode=verify-full&requiressl=0",
     "requiressl"),
])
def test_database_url_with_a_source_of_its_own_for_host_or_tls_is_refused(url: str,
                                                                         named: str) -> None:
    with pytest.raises(ValueError, match=f"database_url may not .*{named}"):
        check_database_url(url, environ={})


@pytest.mark.parametrize("variable", ["PGSERVICE", "PGSERVICEFILE"])
@pytest.mark.parametrize("url", [
    "postgresql://sv@localhost/sellervault",  # the service could still move host and sslmode
    "postgresql://sv@/sellervault",
    "postgresql://sv@db.example.com/sellervault?sslmode=verify-full",
])
def test_libpq_service_in_the_environment_is_refused_by_name(url: str, variable: str) -> None:
    with pytest.raises(ValueError, match=f"^{variable} is set") as caught:
        check_database_url(url, environ={variable: "/etc/pg_service.conf"})
    assert "database_url" in str(caught.value)


@pytest.mark.parametrize(("url", "environ"), [
    (f"postgresql://sv:{DB_PASSWORD}@/sellervault", {"PGHOST": REMOTE}),
    (f"postgresql://sv:{DB_PASSWORD}@localhost/sellervault", {"PGHOSTADDR": REMOTE}),
    (f"postgresql://sv:{DB_PASSWORD}@db.example.com/sellervault", {"PGSSLMODE": "prefer"}),
    (f"postgresql://sv:{DB_PASSWORD}@localhost/sellervault?service=db.example.com", {}),
    (f"postgresql://sv:{DB_PASSWORD}@/sellervault?conninfo=host%3D{REMOTE}", {}),
    (f"postgresql://sv:{DB_PASSWORD}@localhost/sellervault", {"PGSERVICE": REMOTE}),
])
def test_libpq_refusals_name_the_setting_never_the_url_password_or_host(
        monkeypatch: pytest.MonkeyPatch, url: str, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SELLERVAULT_DATABASE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = _all_text(caught.value)
    assert "database_url" in text
    for secret in (DB_PASSWORD, REMOTE, "db.example.com", "sellervault?"):
        assert secret not in text


def test_load_settings_reads_pghost_from_the_real_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end, through the process environment as a deployment sets it."""
    monkeypatch.setenv("SELLERVAULT_DATABASE_URL", "postgresql://sv@/sellervault")
    assert load_settings().database_url is not None  # libpq's default: the local socket
    monkeypatch.setenv("PGHOST", REMOTE)
    assert "database_url" in config_error()
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    assert load_settings().database_url is not None


# -- Redis connections in transit ----------------------------------------------------------------

REDIS_PASSWORD = "redis-pw-42aa"


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0",
    f"redis://:{REDIS_PASSWORD}@localhost:6379/2",
    "redis://[::1]:6379",
    "redis://",  # redis-py's default host: localhost
    "redis://127.0.0.1:6379?db=3",
    "unix:///run/redis/redis.sock?db=1",
    f"rediss://sellervault:{REDIS_PASSWORD}@redis.internal:6380/0",
    "rediss://redis.internal:6380/0?ssl_ca_certs=/etc/sellervault/redis-ca.pem"
    "&ssl_certfile=/etc/sellervault/c.pem&ssl_keyfile=/etc/sellervault/k.pem",
    "REDISS://redis.internal",  # schemes are case-insensitive
])
def test_redis_url_accepted(url: str) -> None:
    check_redis_url(url)
    assert load_settings(redis_url=url).redis_url is not None


@pytest.mark.parametrize("url", [
    f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0",
    "redis://10.0.0.5:6379",
    "redis://[2001:db8::5]:6379",
    "redis://127.0.0.1.redis.internal:6379",
    "redis://%31%32%37.0.0.1:6379",  # an encoded host is not taken for loopback
])
def test_redis_url_to_a_remote_host_without_tls_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="non-loopback host without TLS; use rediss://"):
        check_redis_url(url)


@pytest.mark.parametrize("url", [
    "redis://?host=redis.internal",  # redis-py would connect there, without TLS
    "rediss://redis.internal?ssl_cert_reqs=none",
    "rediss://redis.internal?ssl_check_hostname=false",
    "redis://127.0.0.1?ssl_ca_certs=/etc/ca.pem",  # TLS files without TLS
    "redis://127.0.0.1?socket_timeout=",
    "unix:///run/redis.sock?path=/tmp/other.sock",
])
def test_redis_url_with_a_parameter_that_could_change_the_connection_is_refused(
        url: str) -> None:
    with pytest.raises(ValueError, match="may carry only the query parameters db"):
        check_redis_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis:127.0.0.1", "127.0.0.1:6379",
                                 "", "redis://127.0.0.1:notaport"])
def test_redis_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="redis_url"):
        check_redis_url(url)


@pytest.mark.parametrize("url", [
    f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0",
    f"redis://:{REDIS_PASSWORD}@127.0.0.1:notaport/0",
    f"rediss://:{REDIS_PASSWORD}@redis.internal/0?ssl_cert_reqs=none",
    f"memcached://:{REDIS_PASSWORD}@127.0.0.1",
])
def test_redis_refusals_name_the_setting_never_the_url_or_its_password(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("SELLERVAULT_REDIS_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = _all_text(caught.value)
    assert "redis_url" in text
    for secret in (REDIS_PASSWORD, "redis.internal", "notaport"):
        assert secret not in text


def test_the_redis_password_is_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELLERVAULT_REDIS_URL", f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.redis_url is not None
    assert REDIS_PASSWORD in settings.redis_url.get_secret_value()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert REDIS_PASSWORD not in shown


# -- alert notifications (notify_*): https:// only, whole channels, plain addresses ----------

WEBHOOK_TOKEN = "hooktoken-4c1f9e"
WEBHOOK_SECRET = "whsec-" + "a1b2c3" * 6
SMTP_PW = "smtp-pw-0e7d3a"
EMAIL = {"SELLERVAULT_NOTIFY_SMTP_HOST": "smtp.example.com",
         "SELLERVAULT_NOTIFY_EMAIL_FROM": "vault@example.com",
         "SELLERVAULT_NOTIFY_EMAIL_TO": "soc@example.com, oncall@example.com"}


def test_notifications_are_off_unless_configured() -> None:
    settings = load_settings()
    assert not settings.webhook_configured and not settings.email_configured
    assert settings.notify_smtp_port == 587 and settings.notify_instance == "sellervault"


def test_both_channels_configured_are_read_with_their_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in {**EMAIL,
                        "SELLERVAULT_NOTIFY_WEBHOOK_URL":
                            f"https://hooks.example.com/in/{WEBHOOK_TOKEN}",
                        "SELLERVAULT_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "SELLERVAULT_NOTIFY_WEBHOOK_CA_FILE": str(ca),
                        "SELLERVAULT_NOTIFY_SMTP_USER": "vault",
                        "SELLERVAULT_NOTIFY_SMTP_PASSWORD": SMTP_PW}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.webhook_configured and settings.email_configured
    assert settings.email_recipients == ["soc@example.com", "oncall@example.com"]
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in (WEBHOOK_TOKEN, WEBHOOK_SECRET, SMTP_PW):
            assert secret not in shown


@pytest.mark.parametrize(("url", "problem"), [
    (f"http://hooks.example.com/in/{WEBHOOK_TOKEN}", "must be an https:// URL"),
    (f"http://127.0.0.1:8080/{WEBHOOK_TOKEN}", "must be an https:// URL"),  # loopback too
    (f"ftp://hooks.example.com/{WEBHOOK_TOKEN}", "must be an https:// URL"),
    (f"hooks.example.com/{WEBHOOK_TOKEN}", "must be an https:// URL"),
    (f"https:///{WEBHOOK_TOKEN}", "names no host"),
    (f"https://user:{WEBHOOK_TOKEN}@hooks.example.com/", "may not carry a user or password"),
])
def test_a_webhook_that_is_not_https_is_refused_without_echoing_the_url(
        monkeypatch: pytest.MonkeyPatch, url: str, problem: str) -> None:
    monkeypatch.setenv("SELLERVAULT_NOTIFY_WEBHOOK_URL", url)
    monkeypatch.setenv("SELLERVAULT_NOTIFY_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = _all_text(caught.value)
    assert "notify_webhook_url" in text and problem in text
    assert WEBHOOK_TOKEN not in text and WEBHOOK_SECRET not in text


@pytest.mark.parametrize(("variables", "problem"), [
    ({"SELLERVAULT_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/"},
     "must be set together"),
    ({"SELLERVAULT_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}, "must be set together"),
    ({"SELLERVAULT_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/",
      "SELLERVAULT_NOTIFY_WEBHOOK_SECRET": "short-secret"}, "at least 32 characters"),
    ({"SELLERVAULT_NOTIFY_SMTP_HOST": "smtp.example.com"}, "must be set together"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_SMTP_USER": "vault"}, "must be set together"),
    ({"SELLERVAULT_NOTIFY_SMTP_PASSWORD": SMTP_PW}, "must be set together"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_EMAIL_TO": "soc@example.com\r\nBcc: spy@evil.example"},
     "an e-mail address"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_EMAIL_TO": "Soc Team <soc@example.com>"}, "an e-mail address"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_EMAIL_TO": "soc@example.com,,"}, "none empty"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_EMAIL_FROM": "vault"}, "an e-mail address"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_SMTP_HOST": "smtp.example.com\r\nX"}, "a host name"),
    ({**EMAIL, "SELLERVAULT_NOTIFY_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "no such file"),
    ({"SELLERVAULT_NOTIFY_INSTANCE": "Acme Vault"}, "lower-case letters"),
])
def test_a_notification_channel_half_configured_or_malformed_is_refused(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings()
    assert SMTP_PW not in _all_text(caught.value)
