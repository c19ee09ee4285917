"""store.maintenance: whatever has the vault open shares it; a restore has it alone, or not
at all. (The processes' side, a real ``serve`` and ``restore``: tests/cli/test_main.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from sellervault import bootstrap
from sellervault.config import Settings
from sellervault.store import maintenance
from sellervault.store.maintenance import Claim


def test_open_runtimes_share_the_claim_and_a_restore_is_refused_while_one_holds_it(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    first, second = bootstrap.open_runtime(settings), bootstrap.open_runtime(settings)
    try:
        with pytest.raises(maintenance.MaintenanceError, match="in use"), \
                maintenance.restoring(settings):
            pytest.fail("a restore began under an open vault")
        first.close()
        with pytest.raises(maintenance.MaintenanceError, match="in use"), \
                maintenance.restoring(settings):
            pytest.fail("a restore began while a runtime still had the vault open")
    finally:
        first.close()
        second.close()
    with maintenance.restoring(settings):  # all closed: it may begin
        pass


def test_nothing_opens_the_vault_and_no_second_restore_begins_during_a_restore(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    with maintenance.restoring(settings):
        with pytest.raises(bootstrap.BootstrapError, match=r"restore .* under way"):
            bootstrap.open_runtime(settings)
        with pytest.raises(maintenance.MaintenanceError), maintenance.restoring(settings):
            pytest.fail("two restores at once")
    bootstrap.open_runtime(settings).close()  # the restore finished: the vault opens again


def test_a_claim_is_released_when_opening_the_vault_fails(
        settings: Settings, initialized: bootstrap.InitResult,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that fails after taking its claim (here: making the system keys) gives the
    claim back: no restore is shut out by a process that never opened."""
    def fail(*_: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(bootstrap, "make_system_keys", fail)
    with pytest.raises(RuntimeError):
        bootstrap.open_runtime(settings)
    with maintenance.restoring(settings):
        pass


def test_a_released_claim_is_released_once_and_not_taken_again(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    claim = maintenance.Claim(settings, exclusive=False)
    claim.release()
    claim.release()  # (twice: nothing more)
    claim.renew()  # (after release: nothing; it must not take the lock back)
    with maintenance.restoring(settings):
        pass


def _terminate_claim_connections(settings: Settings) -> None:
    """What a database restart or ``pg_terminate_backend`` does to a server's claim."""
    assert settings.database_url is not None
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            terminated = connection.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND objid = :low AND classid = :high AND "
                "database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"low": maintenance.ADVISORY_KEY & 0xFFFFFFFF,
                 "high": maintenance.ADVISORY_KEY >> 32})
    finally:
        engine.dispose()
    assert terminated == 1


@pytest.fixture
def lost_claim(settings: Settings, initialized: bootstrap.InitResult) -> Iterator[Claim]:
    """A server's claim whose connection PostgreSQL ended under it."""
    if settings.database_url is None:
        pytest.skip("an flock is held until the process ends: it cannot be lost")
    claim = maintenance.Claim(settings, exclusive=False)
    try:
        _terminate_claim_connections(settings)
        yield claim
    finally:
        claim.release()


def test_a_server_takes_a_lost_claim_again(settings: Settings, lost_claim: Claim) -> None:
    lost = threading.Event()
    assert not lost_claim.held()
    lost_claim.watch(lost.set, every=0.05)
    for _ in range(100):  # (the watcher takes it again within a few checks)
        if lost_claim.held():
            break
        threading.Event().wait(0.05)
    assert lost_claim.held() and not lost.is_set()
    with pytest.raises(maintenance.MaintenanceError), maintenance.restoring(settings):
        pytest.fail("a restore began while the server held its claim again")


def test_a_server_whose_claim_a_restore_took_stops(settings: Settings,
                                                   lost_claim: Claim) -> None:
    lost = threading.Event()
    with maintenance.restoring(settings):  # the restore got in first
        lost_claim.watch(lost.set, every=0.05)
        assert lost.wait(10), "the server was not told to stop"
