"""notifications.dead_letters: the dead letter list without SQL. A notification that failed
its five attempts is listed (ids, channel, attempts, the reason code; never the URL), sent
again on request (due now, attempts afresh) and delivered by the next run of the job; only a
dead letter is retried, and two retries at once move it once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.notifications import dead_letters, service
from sellervault.runtime import Runtime
from tests.notifications.peers import Notified
from tests.notifications.test_outbox import events, raise_one, rows, webhook_only


def _officer(rt: Runtime) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, actor_id="acc_" + "6" * 24))


def _dead_letter(notified: Notified) -> tuple[Runtime, str]:
    rt, clock, receiver = webhook_only(notified), notified.clock, notified.receiver
    receiver.statuses.extend([503] * 5)
    raise_one(rt)
    service.deliver_due(rt)
    for wait in (30, 120, 480, 1920):
        clock.advance(timedelta(seconds=wait))
        service.deliver_due(rt)
    [row] = rows(rt)
    assert row.status == "dead"
    return rt, row.id


def test_a_dead_letter_is_listed_retried_and_delivered(notified: Notified) -> None:
    rt, letter_id = _dead_letter(notified)
    [listed] = dead_letters.list_notifications(rt, _officer(rt))
    assert (listed.id, listed.channel, listed.attempts, listed.last_reason, listed.last_code) \
        == (letter_id, "webhook", 5, "notification_refused", 503)
    assert notified.receiver.url not in repr(listed)
    retried = dead_letters.retry(rt, _officer(rt), letter_id)
    assert (retried.status, retried.attempts) == ("pending", 0)
    assert service.deliver_due(rt) == 1  # the receiver answers 200 now
    assert [n.id for n in dead_letters.list_notifications(rt, _officer(rt), "delivered")] == [
        letter_id]
    assert dead_letters.list_notifications(rt, _officer(rt)) == []
    assert [e[0] for e in events(rt, "notifications:retry")] == ["notifications:retry"]
    assert [e[0] for e in events(rt, "notifications:list")] == ["notifications:list"] * 3


def test_only_a_dead_letter_is_retried(notified: Notified) -> None:
    rt, letter_id = _dead_letter(notified)
    dead_letters.retry(rt, _officer(rt), letter_id)
    with pytest.raises(dead_letters.NotDeadError):
        dead_letters.retry(rt, _officer(rt), letter_id)  # pending now
    with pytest.raises(dead_letters.NoSuchNotificationError):
        dead_letters.retry(rt, _officer(rt), "ntf_" + "0" * 24)
    assert len(events(rt, "notifications:retry")) == 1


def test_two_retries_at_once_move_it_once(notified: Notified) -> None:
    rt, letter_id = _dead_letter(notified)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def retry() -> None:
        barrier.wait()
        try:
            dead_letters.retry(rt, _officer(rt), letter_id)
            outcomes.append("retried")
        except dead_letters.NotDeadError:
            outcomes.append("refused")

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused", "retried"]
    assert len(events(rt, "notifications:retry")) == 1
