"""bootstrap: every system key is born on the record, at ``init`` or at the first start
after an upgrade that brought a new one, and exactly once when processes start together."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import delete, select

from sellervault import bootstrap
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.crypto.models import SystemKey
from sellervault.records.canaries import CANARY_SEED_KEY
from sellervault.runtime import Runtime


def _key_events(runtime: Runtime) -> list[tuple[str | None, str]]:
    with runtime.store.engine.connect() as connection:
        rows = connection.execute(select(EventRow.target_id, EventRow.channel).where(
            EventRow.action == "keys:create-system").order_by(EventRow.seq)).all()
    return [(row.target_id, row.channel) for row in rows]


def _stored_names(runtime: Runtime) -> set[str]:
    with runtime.store.engine.connect() as connection:
        return set(connection.scalars(select(SystemKey.name)))


def test_init_makes_every_system_key_and_records_each(runtime: Runtime) -> None:
    assert _stored_names(runtime) == set(bootstrap.SYSTEM_KEYS)
    assert sorted(_key_events(runtime)) == sorted(
        (name, "cli") for name in bootstrap.SYSTEM_KEYS)  # init is a CLI command


def _forget_stored(runtime: Runtime, *names: str) -> None:
    """An instance from before these keys existed."""
    with runtime.store.transaction() as session:
        session.execute(delete(SystemKey).where(SystemKey.name.in_(names)))


def test_a_start_after_an_upgrade_makes_the_new_key_on_the_record(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    _forget_stored(runtime, CANARY_SEED_KEY)
    before = len(_key_events(runtime))
    again = bootstrap.open_runtime(settings, clock)
    try:
        assert _stored_names(again) == set(bootstrap.SYSTEM_KEYS)
        assert _key_events(again)[before:] == [(CANARY_SEED_KEY, "system")]
    finally:
        again.close()
    third = bootstrap.open_runtime(settings, clock)  # nothing missing: nothing made
    third.close()
    assert len(_key_events(runtime)) == before + 1


def test_processes_starting_together_make_each_key_once_and_use_the_stored_one(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    """Both see the key missing (READ COMMITTED lets both pass the check); one stores it and
    records it, the other's insert fails and it records nothing; both go on with the one
    stored key."""
    for _ in range(5):
        _forget_stored(runtime, CANARY_SEED_KEY)
        starting = [Runtime.open(settings, clock) for _ in range(2)]
        before = len(_key_events(runtime))
        made, errors = _start_together(starting)
        try:
            assert errors == []
            assert sorted(made) == [[], [CANARY_SEED_KEY]]
            assert _key_events(runtime)[before:] == [(CANARY_SEED_KEY, "system")]
            keys: list[Any] = []
            for rt in starting:
                with rt.store.read() as db:
                    keys.append(rt.keyring.find_system_key(db, CANARY_SEED_KEY))
            reader = Runtime.open(settings, clock)  # (``runtime`` holds the deleted one)
            with reader.store.read() as db:
                stored = reader.keyring.find_system_key(db, CANARY_SEED_KEY)
            reader.close()
            assert keys == [stored, stored]
        finally:
            for rt in starting:
                rt.close()


def _start_together(starting: list[Runtime]) -> tuple[list[list[str]], list[BaseException]]:
    barrier = threading.Barrier(len(starting))
    made: list[list[str]] = []
    errors: list[BaseException] = []

    def start(rt: Runtime) -> None:
        barrier.wait()
        try:
            made.append(bootstrap.make_system_keys(rt, Auditor(rt.audit, SYSTEM_ACTOR)))
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(rt,)) for rt in starting]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return made, errors
