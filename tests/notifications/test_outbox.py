"""notifications.outbox and the ``alert-notifications`` job (``service.deliver_due``), on
SQLite and PostgreSQL, against a real HTTPS receiver and a real SMTP server:

- an alert enqueues one notification per configured channel in its own transaction (none when
  notifications are off, none twice for one alert, none for an alert whose transaction fails);
- the job delivers each once, signed, and records each attempt (``notifications:deliver``, by
  the system); what goes out carries ids, the rule, times and the status, never the alert's
  subject (a caller's address) nor anything else; no secret reaches an event, a row or a log;
- a failure is retried after 30 s, 2 min, 8 min, 32 min (the injected clock), and after the
  fifth attempt the notification is a dead letter (``notifications:dead``), sent no more;
- two deliverers that read the same due rows send each once; the same interleaving without
  the claim's conditions sends duplicates (the test can fail);
- an SMTP server that stalls (an EHLO reply dripped a line at a time) costs one attempt its
  deadline, not the run: the webhook behind it still goes out, the e-mail is retried later;
  and a run starts no attempt once its time is up, leaving the rest due for the next run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select, text, update

from sellervault.audit.models import EventRow
from sellervault.jobs.registry import ALERT_NOTIFICATIONS, Registry
from sellervault.jobs.runner import Runner, RunStatus
from sellervault.jobs.scheduler import system_actor
from sellervault.monitoring import alerts
from sellervault.monitoring.models import AlertRow
from sellervault.notifications import email, outbox, service
from sellervault.notifications.models import NotificationRow
from sellervault.runtime import Runtime
from tests.notifications.peers import (
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    Notified,
    finishes_within,
    stalling_peer,
    stalling_smtp,
)
from tests.support import block_event_writes, unblock_event_writes

WINDOW = "2026-12-05T10:00:00.000000Z"
ADDRESS = "203.0.113.77"  # an alert's subject when no account was identified
TABLE: Table = NotificationRow.__table__  # type: ignore[assignment]


def webhook_only(notified: Notified) -> Runtime:
    settings = notified.rt.settings.model_copy(update={
        "notify_smtp_host": None, "notify_email_from": None, "notify_email_to": None})
    return replace(notified.rt, settings=settings)


def email_only(notified: Notified) -> Runtime:
    settings = notified.rt.settings.model_copy(update={
        "notify_webhook_url": None, "notify_webhook_secret": None})
    return replace(notified.rt, settings=settings)


def with_smtp_port(rt: Runtime, port: int) -> Runtime:
    return replace(rt, settings=rt.settings.model_copy(update={"notify_smtp_port": port}))


def stalling_attempts(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """An e-mail attempt ends only at its deadline, ``seconds``: no step of it times out."""
    monkeypatch.setattr(email, "DEADLINE_SECONDS", seconds)
    monkeypatch.setattr(email, "TIMEOUT_SECONDS", 60.0)


def raise_one(rt: Runtime, subject: str = "acc_mallory", window: str = WINDOW) -> str:
    alert_id = alerts.raise_alert(rt, "unauthorized-calls", "high", subject,
                                  None if subject.startswith("address:") else subject, window)
    assert alert_id is not None
    return alert_id


def rows(rt: Runtime) -> list[Any]:
    with rt.store.snapshot() as connection:
        return list(connection.execute(select(TABLE).order_by(TABLE.c.channel)))


def events(rt: Runtime, prefix: str = "notifications:") -> list[tuple[Any, ...]]:
    with rt.store.snapshot() as connection:
        return [tuple(row) for row in connection.execute(
            select(EventRow.action, EventRow.outcome, EventRow.channel, EventRow.criteria,
                   EventRow.count, EventRow.reason, EventRow.status)
            .where(EventRow.action.startswith(prefix)).order_by(EventRow.seq))]


def test_an_alert_enqueues_one_notification_per_configured_channel_with_it(
        notified: Notified, runtime: Runtime) -> None:
    alert_id = raise_one(notified.rt)
    assert [(r.alert_id, r.channel, r.status, r.attempts) for r in rows(runtime)] == [
        (alert_id, "email", "pending", 0), (alert_id, "webhook", "pending", 0)]
    # the same window again: no alert, so nothing enqueued twice
    assert alerts.raise_alert(notified.rt, "unauthorized-calls", "high", "acc_mallory",
                              "acc_mallory", WINDOW) is None
    assert len(rows(runtime)) == 2
    # notifications off (the plain runtime): the alert, and nothing to send
    raise_one(runtime, "acc_other")
    assert len(rows(runtime)) == 2


def test_an_alert_whose_transaction_fails_leaves_no_notification(notified: Notified) -> None:
    block_event_writes(notified.rt)  # the alert's event fails: its transaction rolls back
    try:
        with pytest.raises(Exception):  # noqa: B017 (whatever the database raises)
            raise_one(notified.rt)
    finally:
        unblock_event_writes(notified.rt)
    with notified.rt.store.snapshot() as connection:
        assert connection.execute(select(AlertRow.id)).all() == []
    assert rows(notified.rt) == []


def test_an_alert_is_delivered_once_on_each_channel_signed_and_says_nothing_more(
        notified: Notified, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rt = notified.rt
    alert_id = raise_one(rt, "address:" + ADDRESS)
    assert service.deliver_due(rt) == 2
    assert service.deliver_due(rt) == 0  # nothing due any more: nothing sent twice

    [delivery] = notified.receiver.deliveries
    assert delivery.verified
    document = json.loads(delivery.body)
    alert = alerts.get_alert(rt, alert_id)
    assert document == {
        "version": 1, "type": "alert", "service": "acme-vault",
        "notification_id": delivery.headers["x-sellervault-delivery"],
        "alert": {"id": alert_id, "rule": "unauthorized-calls", "severity": "high",
                  "principal_id": None, "created_at": alert.created_at, "status": "open"}}
    [(_, _, content, logged_in)] = notified.smtp.inbox.messages
    assert logged_in
    assert alert_id.encode() in content
    assert {(r.channel, r.status, r.attempts) for r in rows(rt)} == {
        ("webhook", "delivered", 1), ("email", "delivered", 1)}
    assert sorted(events(rt)) == [
        ("notifications:deliver", "success", "system", channel, 1, None, None)
        for channel in ("email", "webhook")]

    # Nothing secret or personal anywhere: what went out, the log lines (but the test SMTP
    # server's own), the events, the rows.
    secrets_ = [WEBHOOK_SECRET, SMTP_PASSWORD, notified.receiver.url, "soc@acme.example"]
    logged = "\n".join(record.getMessage() for record in caplog.records
                        if record.name != "mail.log")
    for leak in [WEBHOOK_SECRET, SMTP_PASSWORD, notified.receiver.url, ADDRESS]:
        assert leak.encode() not in delivery.body and leak.encode() not in content
    for leak in [*secrets_, ADDRESS]:
        assert leak not in logged
    with rt.store.snapshot() as connection:
        stored = " ".join(str(tuple(row)) for table in ("security_events",
                                                        "alert_notifications")
                          for row in connection.execute(text(f"SELECT * FROM {table}")))
    for leak in secrets_:
        assert leak not in stored


def test_a_failure_is_retried_with_backoff_then_becomes_a_dead_letter(
        notified: Notified, caplog: pytest.LogCaptureFixture) -> None:
    rt, clock, receiver = webhook_only(notified), notified.clock, notified.receiver
    receiver.statuses.extend([503] * 6)
    raise_one(rt)
    waits = [timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8),
             timedelta(minutes=32)]
    assert service.deliver_due(rt) == 0
    for wait in waits:
        clock.advance(wait - timedelta(seconds=1))
        service.deliver_due(rt)  # not due yet
        clock.advance(timedelta(seconds=1))
        assert service.deliver_due(rt) == 0
    assert len(receiver.deliveries) == 5 and all(d.verified for d in receiver.deliveries)
    [row] = rows(rt)
    assert (row.status, row.attempts, row.last_reason, row.last_status) == (
        "dead", 5, "notification_refused", 503)
    failed = ("notifications:deliver", "failed", "system", "webhook")
    assert events(rt) == [(*failed, n, "notification_refused", 503) for n in range(1, 6)] + [
        ("notifications:dead", "failed", "system", "webhook", 5, "notification_refused", None)]
    clock.advance(timedelta(days=1))
    assert service.deliver_due(rt) == 0 and len(receiver.deliveries) == 5
    assert "dead letter" in caplog.text


def test_a_failure_then_a_success_delivers_it_once(notified: Notified) -> None:
    rt, clock, receiver = webhook_only(notified), notified.clock, notified.receiver
    receiver.statuses.append(500)
    raise_one(rt)
    assert service.deliver_due(rt) == 0
    clock.advance(timedelta(seconds=30))
    assert service.deliver_due(rt) == 1
    [row] = rows(rt)
    assert (row.status, row.attempts, row.last_reason) == ("delivered", 2,
                                                           "notification_refused")
    assert [event[:2] + event[4:5] for event in events(rt)] == [
        ("notifications:deliver", "failed", 1), ("notifications:deliver", "success", 2)]


def _interleaved(monkeypatch: pytest.MonkeyPatch, deliverers: int) -> None:
    """Every deliverer reads the due rows before any of them takes one: the interleaving in
    which a check-then-write claim sends a notification twice."""
    everyone_read = threading.Barrier(deliverers, timeout=30)
    local = threading.local()
    read = outbox._due_rows

    def read_then_wait(rt: Runtime, now: datetime, limit: int) -> list[Any]:
        found = read(rt, now, limit)
        if not getattr(local, "waited", False):
            local.waited = True
            everyone_read.wait()
        return found

    monkeypatch.setattr(outbox, "_due_rows", read_then_wait)


def _unguarded_take(rt: Runtime, notification_id: str, claim_id: str,
                    now: datetime) -> int | None:
    """The claim without its conditions: takes whatever was read as due."""
    with rt.store.transaction() as session:
        taken = session.execute(
            update(TABLE).where(TABLE.c.id == notification_id)
            .values(claim_id=claim_id, claimed_until=now + outbox.LEASE,
                    attempts=TABLE.c.attempts + 1).returning(TABLE.c.attempts)).first()
    return None if taken is None else int(taken.attempts)


@pytest.mark.parametrize("claim", ["conditional", "check-then-write"])
def test_two_deliverers_reading_the_same_rows_send_each_notification_once(
        notified: Notified, monkeypatch: pytest.MonkeyPatch, claim: str) -> None:
    rt, receiver = webhook_only(notified), notified.receiver
    ids = {raise_one(rt, f"acc_{n}") for n in range(4)}
    _interleaved(monkeypatch, 2)
    if claim == "check-then-write":
        monkeypatch.setattr(outbox, "_take", _unguarded_take)
    with ThreadPoolExecutor(2) as pool:
        sent = sum(pool.map(lambda _: service.deliver_due(rt), range(2)))
    received = receiver.delivery_ids()
    if claim == "check-then-write":  # the guard is what the other run shows working
        assert len(received) > len(set(received)), "the race did not happen"
        return
    assert sorted(received) == sorted({r.id for r in rows(rt)}) and sent == 4
    assert {r.alert_id for r in rows(rt)} == ids
    assert all(r.status == "delivered" and r.attempts == 1 for r in rows(rt))


def test_the_job_delivers_them_and_its_run_counts_them(notified: Notified) -> None:
    raise_one(notified.rt)
    runner = Runner(notified.rt, Registry([ALERT_NOTIFICATIONS]), system_actor())
    result = runner.run_now(ALERT_NOTIFICATIONS.name)
    assert (result.status, result.count) == (RunStatus.SUCCEEDED, 2)
    assert len(notified.receiver.deliveries) == len(notified.smtp.inbox.messages) == 1
    assert events(notified.rt, "jobs:run")[-1][:5] == ("jobs:run", "success", "system", None, 2)


def test_a_stalling_smtp_server_fails_its_attempt_and_the_webhook_behind_it_goes_out(
        notified: Notified, monkeypatch: pytest.MonkeyPatch) -> None:
    stalling_attempts(monkeypatch, 0.5)
    raise_one(email_only(notified), "acc_first")  # its e-mail is the oldest due
    notified.clock.advance(timedelta(seconds=1))
    raise_one(webhook_only(notified), "acc_second")
    with stalling_peer(stalling_smtp("ehlo")) as port:
        started = time.monotonic()
        sent = finishes_within(20, lambda: service.deliver_due(with_smtp_port(notified.rt,
                                                                              port)))
    assert sent == 1 and time.monotonic() - started < 5
    assert [d.verified for d in notified.receiver.deliveries] == [True]
    assert [(r.channel, r.status, r.attempts, r.last_reason) for r in rows(notified.rt)] == [
        ("email", "pending", 1, "notification_unreachable"),
        ("webhook", "delivered", 1, None)]
    # retried 30 s later, through a server that answers: delivered on its second attempt
    notified.clock.advance(timedelta(seconds=30))
    assert service.deliver_due(notified.rt) == 1
    assert len(notified.smtp.inbox.messages) == 1
    assert [(r.channel, r.status, r.attempts) for r in rows(notified.rt)] == [
        ("email", "delivered", 2), ("webhook", "delivered", 1)]


def test_a_run_starts_no_attempt_once_its_time_is_up(
        notified: Notified, monkeypatch: pytest.MonkeyPatch) -> None:
    stalling_attempts(monkeypatch, 0.5)
    monkeypatch.setattr(service, "RUN_SECONDS", 0.2)  # (one stalled attempt outlasts it)
    rt = email_only(notified)
    for n in range(3):
        raise_one(rt, f"acc_{n}")
    with stalling_peer(stalling_smtp("ehlo")) as port:
        stalled = with_smtp_port(rt, port)
        started = time.monotonic()
        assert finishes_within(20, lambda: service.deliver_due(stalled)) == 0
        elapsed = time.monotonic() - started
        assert sorted(r.attempts for r in rows(rt)) == [0, 0, 1]  # the rest: the next run's
        assert finishes_within(20, lambda: service.deliver_due(stalled)) == 0
    assert elapsed < 0.2 + 0.5 + 1
    assert sorted(r.attempts for r in rows(rt)) == [0, 1, 1]
    assert all(r.status == "pending" for r in rows(rt))
