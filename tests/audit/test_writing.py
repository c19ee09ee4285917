"""Writing the security log (``audit.writing``, ``audit.batching``, ``audit.reading``).

``record`` appends a typed event inside the caller's transaction, so an operation and its
event commit together or not at all; ``append`` commits one on its own, batched with others
in a server's event loop on PostgreSQL. ``bootstrap.verify_log`` verifies the chain offline
and records that it ran; a read of the log is itself an event.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import InvalidCredentialsError
from sellervault.audit import batching, reading, verification
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import CHAINED_FIELDS, HASHED_FIELDS
from sellervault.audit.events import Actor, Channel, Outcome, Reason, TargetType
from sellervault.audit.verification import VerifyResult
from sellervault.config import Settings
from sellervault.runtime import Runtime
from tests.conftest import fresh_database, init_instance
from tests.support import (
    ADMIN_EMAIL,
    ADMIN_NAME,
    ADMIN_PASSWORD,
    block_event_writes,
    in_event_loop,
    settings_for,
    unblock_event_writes,
)

API_CALLER = Actor(Channel.API, actor_id="acc_0123456789abcdef", source_ip="203.0.113.9",
                   request_id="req-42")


def append(rt: Runtime, auditor: Auditor, action: str, outcome: Outcome, **fields: Any) -> int:
    """``Auditor.append``, run to its end from this (blocking) test."""
    return rt.store.call(auditor.append, rt.store, action, outcome, **fields)



def events(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as connection:
        return [dict(row._mapping) for row in
                connection.execute(text("SELECT * FROM security_events ORDER BY seq"))]


def verify(rt: Runtime) -> VerifyResult:
    return verification.verify(rt.store, rt.keyring)


# -- recording -------------------------------------------------------------------------------

def test_record_stores_the_event_as_given(runtime: Runtime) -> None:
    auditor = Auditor(runtime.audit, API_CALLER)
    with runtime.store.transaction() as session:
        seq = auditor.record(session, Action.ORDERS_REVEAL, Outcome.DENIED, tenant_id="acme",
                             target_type=TargetType.ORDER, target_id="902-3159896-1390916",
                             purpose="marketing", status=403, reason=Reason.PURPOSE_NOT_PERMITTED)
    row = events(runtime)[-1]
    assert row["seq"] == seq
    assert {name: row[name] for name in HASHED_FIELDS if name not in ("seq", "occurred_at")} == {
        "channel": "api", "action": "orders:reveal", "outcome": "denied",
        "actor_id": "acc_0123456789abcdef", "tenant_id": "acme", "target_type": "order",
        "target_id": "902-3159896-1390916", "source_ip": "203.0.113.9",
        "request_id": "req-42", "purpose": "marketing", "status": 403, "count": None,
        "reason": "purpose_not_permitted"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row["occurred_at"])
    assert verify(runtime) == VerifyResult(True, seq)


def test_events_get_consecutive_numbers(runtime: Runtime) -> None:
    auditor = Auditor(runtime.audit, API_CALLER)
    with runtime.store.transaction() as session:
        first = auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
        second = auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
    with runtime.store.transaction() as session:
        third = auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
    assert [second, third] == [first + 1, first + 2]
    assert first == len(events(runtime)) - 2


def test_auditor_knows_when_its_event_was_committed(runtime: Runtime) -> None:
    auditor = Auditor(runtime.audit, API_CALLER)
    with runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
        assert not auditor.committed
    assert auditor.committed


def test_rolled_back_operation_leaves_no_event(runtime: Runtime) -> None:
    """The event shares the operation's transaction: a failed operation takes it along, and
    the chain stays whole (the next event reuses the number)."""
    before = events(runtime)
    auditor = Auditor(runtime.audit, API_CALLER)
    with pytest.raises(RuntimeError), runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_INGEST, Outcome.SUCCESS, count=5)
        raise RuntimeError("the operation failed after its event was written")
    assert events(runtime) == before
    assert not auditor.committed
    with runtime.store.transaction() as session:
        seq = auditor.record(session, Action.ORDERS_INGEST, Outcome.FAILED)
    assert seq == before[-1]["seq"] + 1
    assert verify(runtime).ok


def test_append_commits_its_event_on_its_own(runtime: Runtime) -> None:
    """``append`` is for an operation that changes nothing else (a read, a reveal): the event
    is committed, and chained, when it returns."""
    auditor = Auditor(runtime.audit, API_CALLER)
    seq = append(runtime, auditor, Action.ORDERS_REVEAL, Outcome.SUCCESS, tenant_id="acme",
                         target_type=TargetType.ORDER, target_id="ord_1", purpose="fulfillment",
                         count=1)
    assert auditor.committed
    row = events(runtime)[-1]  # through another connection
    assert (row["seq"], row["action"], row["purpose"], row["count"]) == (
        seq, "orders:reveal", "fulfillment", 1)
    assert verify(runtime) == VerifyResult(True, seq)


def _write_event(rt: Runtime, how: str) -> int:
    """One event, in a transaction of its own (``record``) or standalone (``append``)."""
    auditor = Auditor(rt.audit, API_CALLER)
    if how == "append":
        return append(rt, auditor, Action.ORDERS_READ, Outcome.SUCCESS)
    with rt.store.transaction() as session:
        return auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)


def test_writers_in_two_processes_keep_one_chain(settings: Settings,
                                                 runtime: Runtime) -> None:
    """Each process remembers the head it last wrote; when another process has moved it
    since, the append reads the real head instead of forking the chain."""
    other = bootstrap.open_runtime(settings)  # a second engine: another process's view
    try:
        seqs = [_write_event(writer, how) for writer, how in [
            (runtime, "record"), (other, "record"), (other, "append"), (runtime, "append"),
            (other, "record"), (runtime, "record"), (runtime, "append"), (other, "append"),
            (runtime, "append"), (runtime, "record")]]
    finally:
        other.close()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert verify(runtime).ok


def test_concurrent_writers_keep_one_chain(runtime: Runtime) -> None:
    """Threads appending standalone events and recording events in transactions, at once."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        seqs = sorted(pool.map(lambda n: _write_event(runtime, ("append", "record")[n % 3 == 0]),
                               range(90)))
    assert seqs == list(range(seqs[0], seqs[0] + 90))
    assert verify(runtime).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (event loop: PG)
def test_event_loop_appends_share_one_chain_with_blocking_writers(settings: Settings,
                                                                  runtime: Runtime) -> None:
    """``append_async`` (a server's hot path on PostgreSQL) interleaved with blocking appends
    and transactions of this process and of another one, and many at once (more than one
    batch holds)."""
    other = bootstrap.open_runtime(settings)
    many = batching.BATCH_LIMIT + 6

    async def append_async() -> int:
        return await Auditor(runtime.audit, API_CALLER).append(
            runtime.store, Action.ORDERS_READ, Outcome.SUCCESS)

    async def work() -> tuple[list[int], list[int]]:
        in_turn = []
        for writer, how in [(runtime, "async"), (runtime, "record"), (runtime, "async"),
                            (other, "append"), (runtime, "async"), (runtime, "append"),
                            (other, "record"), (runtime, "async"), (runtime, "async")]:
            in_turn.append(await append_async() if how == "async"
                           else _write_event(writer, how))
        at_once = await asyncio.gather(*[append_async() for _ in range(many)])
        return in_turn, list(at_once)

    try:
        in_turn, at_once = in_event_loop(runtime, work)
    finally:
        other.close()
    assert in_turn == list(range(in_turn[0], in_turn[0] + len(in_turn)))
    assert sorted(at_once) == list(range(in_turn[-1] + 1, in_turn[-1] + 1 + many))
    assert verify(runtime).ok


def _append_async(rt: Runtime, **fields: Any) -> Awaitable[int]:
    return Auditor(rt.audit, API_CALLER).append(rt.store, Action.ORDERS_READ,
                                                        Outcome.SUCCESS, **fields)


def _lock_waiters(rt: Runtime) -> int:
    """Statements of this database waiting for a lock (the chain head's) right now."""
    with rt.store.engine.connect() as connection:
        return connection.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")) or 0


@contextmanager
def _head_held(rt: Runtime) -> Iterator[Connection]:
    """Another writer holding the chain head, until the block ends."""
    with rt.store.engine.connect() as holder:
        holder.execute(text("SELECT seq FROM security_event_head FOR UPDATE"))
        yield holder
        holder.commit()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (event loop: PG)
def test_event_loop_appends_arriving_meanwhile_go_in_together(runtime: Runtime) -> None:
    """While one append is in the database, the ones arriving meanwhile wait their turn and
    then go in as one statement: one transaction (so one commit) for all of them, where a
    turn each made every request wait for every one before it."""
    async def work() -> list[int]:
        await _append_async(runtime)  # the process's first event: it learns the head
        with _head_held(runtime) as holder:
            tasks = [asyncio.ensure_future(_append_async(runtime))]
            await asyncio.sleep(0.2)  # in the database, waiting for the head
            tasks += [asyncio.ensure_future(_append_async(runtime)) for _ in range(9)]
            await asyncio.sleep(0.2)
            assert _lock_waiters(runtime) == 1  # one statement in flight; nine queued here
            assert not any(task.done() for task in tasks)
            holder.commit()
        return list(await asyncio.gather(*tasks))

    seqs = in_event_loop(runtime, work)
    assert sorted(seqs) == list(range(seqs[0], seqs[0] + 10))
    with runtime.store.engine.connect() as connection:
        transactions = connection.scalar(text(
            "SELECT count(DISTINCT xmin::text) FROM security_events WHERE seq >= :first"),
            {"first": seqs[0]})
    assert transactions == 2  # the first alone, then the nine that queued behind it
    assert verify(runtime).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_event_loop_appends_fail_closed_together_when_the_log_refuses(
        runtime: Runtime) -> None:
    """A database refusing events fails every caller of the batch (each retried alone, each
    refused): none gets a sequence number, nothing is written; once it accepts events again
    the chain goes on intact."""
    async def work() -> list[int | BaseException]:
        await _append_async(runtime)
        block_event_writes(runtime)
        try:
            return list(await asyncio.gather(*[_append_async(runtime) for _ in range(6)],
                                             return_exceptions=True))
        finally:
            unblock_event_writes(runtime)

    before = len(events(runtime))
    outcomes = in_event_loop(runtime, work)
    assert all(isinstance(outcome, DBAPIError) for outcome in outcomes), outcomes
    assert len(events(runtime)) == before + 1
    assert in_event_loop(runtime, lambda: _append_async(runtime)) == before + 2
    assert verify(runtime).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_event_the_database_refuses_does_not_fail_its_batch(runtime: Runtime) -> None:
    """An event the database refuses (a value longer than its column: refused, never cut)
    fails only its own caller; the events that went in the same batch are written."""
    too_long = "o" * 65  # target_id is VARCHAR(64)

    async def work() -> list[int | BaseException]:
        await _append_async(runtime)
        with _head_held(runtime) as holder:
            first = asyncio.ensure_future(_append_async(runtime))
            await asyncio.sleep(0.1)  # in the database, waiting for the head
            batch = [asyncio.ensure_future(_append_async(runtime, target_id=target_id))
                     for target_id in ("ord_1", too_long, "ord_2")]
            await asyncio.sleep(0.1)
            holder.commit()
        return list(await asyncio.gather(first, *batch, return_exceptions=True))

    outcomes = in_event_loop(runtime, work)
    assert isinstance(outcomes[2], DBAPIError)
    assert [type(outcome) for i, outcome in enumerate(outcomes) if i != 2] == [int] * 3
    assert too_long not in {row["target_id"] for row in events(runtime)}
    assert {"ord_1", "ord_2"} <= {row["target_id"] for row in events(runtime)}
    assert verify(runtime).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_event_loop_appends_to_two_databases_stay_apart(runtime: Runtime,
                                                        tmp_path: Path) -> None:
    """Two instances served from one event loop (as in a test process or an embedding): each
    event goes to its own database's chain, however their appends interleave."""
    with fresh_database("postgresql", tmp_path / "second") as url:
        second_settings = settings_for(tmp_path / "second" / "data", url)
        init_instance(second_settings)
        second = bootstrap.open_runtime(second_settings)
        try:
            async def work() -> None:
                await second.store.open_async(2)
                try:  # (each database's first append teaches this process its head)
                    await _append_async(runtime, target_id="ord_False")
                    await _append_async(second, target_id="ord_True")
                    await asyncio.gather(*[_append_async(rt, target_id=f"ord_{rt is second}")
                                           for rt in (runtime, second) * 8])
                finally:
                    await second.store.close_async()

            before = len(events(runtime)), len(events(second))
            in_event_loop(runtime, work)
            mine = [row["target_id"] for row in events(runtime)[before[0]:]]
            theirs = [row["target_id"] for row in events(second)[before[1]:]]
            assert (mine, theirs) == (["ord_False"] * 9, ["ord_True"] * 9)
            assert verify(runtime).ok and verify(second).ok
        finally:
            second.close()


def test_free_text_is_refused_at_record_time(runtime: Runtime) -> None:
    before = events(runtime)
    auditor = Auditor(runtime.audit, API_CALLER)
    with pytest.raises(TypeError), runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.ERROR, detail="Traceback: buyer x")
    assert events(runtime) == before


def test_read_events_is_itself_an_event(runtime: Runtime) -> None:
    before = events(runtime)
    page = reading.read_events(runtime.store, Auditor(runtime.audit, API_CALLER), limit=1)
    assert page.events == [{**{name: before[0][name] for name in CHAINED_FIELDS},
                            "prev_hash": before[0]["prev_hash"], "hash": before[0]["hash"]}]
    assert page.next_cursor == before[0]["seq"]
    last = events(runtime)[-1]
    assert (last["action"], last["outcome"], last["count"]) == ("audit:read", "success", 1)


# -- no PII in the log: a failed login from the attacker's side -------------------------------

PROBE_EMAIL = "mallory.prober@example.test"
PROBE_PASSWORD = "Tr0ub4dor&3 guessed"


def test_failed_logins_leave_no_email_or_password_in_the_log(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    auditor = Auditor(runtime.audit, API_CALLER)
    code = pyotp.TOTP(initialized.totp_secret).now()
    attempts = [
        (ADMIN_EMAIL, PROBE_PASSWORD, code),  # a real account, a wrong password
        (PROBE_EMAIL, ADMIN_PASSWORD, code),  # an unknown email
        (ADMIN_EMAIL, ADMIN_PASSWORD, "000000" if code != "000000" else "111111"),  # bad TOTP
        (ADMIN_EMAIL.upper(), PROBE_PASSWORD, code),
    ]
    for email, password, totp_code in attempts:
        with pytest.raises(InvalidCredentialsError):
            accounts.login(runtime, auditor, email=email, password=password,
                           totp_code=totp_code)

    logged = events(runtime)
    denied = [row for row in logged if row["action"] == "session:create"]
    assert len(denied) == len(attempts)
    assert {(row["outcome"], row["status"], row["reason"]) for row in denied} == {
        ("denied", 401, "invalid_credentials")}
    assert [row["target_id"] for row in denied] == [
        initialized.admin_id, None, initialized.admin_id, initialized.admin_id]

    secrets = [ADMIN_EMAIL, PROBE_EMAIL, PROBE_PASSWORD, ADMIN_PASSWORD, ADMIN_NAME,
               "alice.admin", "mallory.prober", "Tr0ub4dor", initialized.totp_secret]
    for row in logged:
        for column, value in row.items():
            shown = str(value).lower()
            for secret in secrets:
                assert secret.lower() not in shown, (row["seq"], column)
    assert verify(runtime).ok


# -- offline verification --------------------------------------------------------------------

def test_verify_log_passes_and_records_itself(settings: Settings,
                                              initialized: bootstrap.InitResult) -> None:
    first = bootstrap.verify_log(settings)
    assert first.ok and first.first_bad_seq is None and first.problem is None
    assert first.events >= 2  # init's own events: accounts:create and system:init
    second = bootstrap.verify_log(settings)
    assert second == VerifyResult(True, first.events + 1)  # the first run is in the log now
    rt = bootstrap.open_runtime(settings)
    try:
        logged = events(rt)
    finally:
        rt.close()
    assert [(row["action"], row["outcome"], row["channel"], row["count"]) for row in logged[-2:]
            ] == [("audit:verify", "success", "cli", first.events),
                  ("audit:verify", "success", "cli", second.events)]


def test_verify_log_reports_tampering_and_records_the_failure(
        settings: Settings, runtime: Runtime) -> None:
    with runtime.store.engine.begin() as connection:
        connection.execute(text(
            "UPDATE security_events SET actor_id = 'acc_someone_else' WHERE seq = 1"))
    result = bootstrap.verify_log(settings)
    assert not result.ok
    assert result.first_bad_seq == 1
    assert result.events == 0
    last = [event for event in events(runtime) if event["action"] == "audit:verify"][-1]
    assert (last["action"], last["outcome"], last["count"]) == ("audit:verify", "failed", 0)


def test_verify_log_refuses_an_uninitialised_directory(settings: Settings) -> None:
    with pytest.raises(bootstrap.BootstrapError):
        bootstrap.verify_log(settings)
