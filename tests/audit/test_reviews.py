"""audit.reviews: who reviewed the log up to which event; each review further than the
last, of an event that exists; two at once never both taken; a reminder when 14 days pass
without one."""

from __future__ import annotations

import contextlib
import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.audit import reviews
from sellervault.audit.auditor import Auditor
from sellervault.audit.errors import ReviewBeyondTheLogError, ReviewStateError
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import ChainHead, EventRow, ReviewRow
from sellervault.clock import ManualClock
from sellervault.monitoring.models import AlertRow
from sellervault.runtime import Runtime

OFFICER = Principal("acc_officer", "person", (Grant(Role.SECURITY_OFFICER, "*"),))


def _auditor(rt: Runtime) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, actor_id=OFFICER.id))


def _head(rt: Runtime) -> int:
    with rt.store.transaction() as session:
        head = session.get(ChainHead, 1)
        assert head is not None
        return head.seq


def test_each_review_goes_further_and_is_an_event(runtime: Runtime) -> None:
    first = reviews.record(runtime, _auditor(runtime), OFFICER, 1)
    second = reviews.record(runtime, _auditor(runtime), OFFICER, _head(runtime))
    assert (first.number, second.number) == (1, 2)
    assert second.reviewer_id == OFFICER.id
    with runtime.store.transaction() as session:
        events = session.scalars(select(EventRow).where(
            EventRow.action == "audit:review")).all()
    assert [(e.target_id, e.count, e.actor_id) for e in events] == [
        ("1", 1, OFFICER.id), (str(second.up_to_seq), 2, OFFICER.id)]
    assert [r.number for r in reviews.list_reviews(runtime, _auditor(runtime))] == [2, 1]


def test_a_review_that_goes_nowhere_or_beyond_the_log_is_refused(runtime: Runtime) -> None:
    head = _head(runtime)
    reviews.record(runtime, _auditor(runtime), OFFICER, head)
    for seq, error in ((head, ReviewStateError), (1, ReviewStateError),
                       (_head(runtime) + 1, ReviewBeyondTheLogError)):
        before = _head(runtime)
        with pytest.raises(error):
            reviews.record(runtime, _auditor(runtime), OFFICER, seq)
        assert _head(runtime) == before  # nothing written, no event
    assert len(reviews.list_reviews(runtime, _auditor(runtime))) == 1


def test_reviews_recorded_at_once_never_go_backwards(runtime: Runtime) -> None:
    """Every review reads the last one, then takes the next number: of several at the same
    moment, those that read the same last one collide on the number, and only one lands.
    Whatever lands goes further than what landed before it (READ COMMITTED included)."""
    def review(barrier: threading.Barrier, seq: int) -> None:
        barrier.wait()
        with contextlib.suppress(ReviewStateError):
            reviews.record(runtime, _auditor(runtime), OFFICER, seq)

    for _ in range(10):
        top = _head(runtime)
        seqs = [top, top - 1, top - 2, top - 3]
        barrier = threading.Barrier(len(seqs))
        threads = [threading.Thread(target=review, args=(barrier, seq)) for seq in seqs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    landed = sorted(reviews.list_reviews(runtime, _auditor(runtime)), key=lambda r: r.number)
    assert [r.number for r in landed] == list(range(1, len(landed) + 1))
    assert all(a.up_to_seq < b.up_to_seq for a, b in itertools.pairwise(landed))


def _due_alerts(rt: Runtime) -> int:
    with rt.store.transaction() as session:
        return len(session.scalars(select(AlertRow).where(
            AlertRow.rule == reviews.LOG_REVIEW_DUE)).all())


def test_fourteen_days_without_a_review_raise_a_reminder(
        runtime: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    assert reviews.remind(runtime) == 0  # the log is new
    clock.advance(timedelta(days=13, hours=23))
    assert reviews.remind(runtime) == 0
    clock.advance(timedelta(hours=2))
    assert reviews.remind(runtime) == 1
    assert _due_alerts(runtime) == 1
    reviews.record(runtime, _auditor(runtime), OFFICER, _head(runtime))
    clock.advance(timedelta(days=1))
    assert reviews.remind(runtime) == 0  # reviewed a day ago
    clock.advance(timedelta(days=14))
    assert reviews.remind(runtime) == 1
    assert _due_alerts(runtime) == 2


def test_a_review_row_written_by_hand_does_not_silence_the_reminder(
        runtime: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    """Someone with write access to the database adds a review without recording one: the
    reminder goes by the review's own event in the chain, which there is none of."""
    clock.advance(timedelta(days=15))
    head = _head(runtime)
    with runtime.store.transaction() as session:
        session.add(ReviewRow(number=1, reviewer_id=OFFICER.id, up_to_seq=head,
                              reviewed_at=runtime.audit.occurred_at()))
    assert reviews.remind(runtime) == 1
    assert _due_alerts(runtime) == 1


def test_a_recorded_review_is_vouched_for_by_its_event(
        runtime: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    clock.advance(timedelta(days=15))
    reviews.record(runtime, _auditor(runtime), OFFICER, 1)  # (an old event: the walk is long)
    clock.advance(timedelta(days=1))
    assert reviews.remind(runtime) == 0


@pytest.mark.parametrize("numbering", ["after-the-last-read", "a-sequence"])
def test_two_reviews_that_read_the_same_last_one_never_both_land(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch, numbering: str) -> None:
    """The interleaving that breaks a check-then-insert: both reviews read the last review
    before either writes, both pass the check, both insert. With the guard (the number is
    the one after the review read), the second insert collides: one lands, one is refused
    (409). With numbers from a sequence instead (what an autoincrement id would be), both
    land, one of them checked against a review that was no longer the last (so it can go
    backwards): the run that shows the guard is what holds.

    PostgreSQL only: SQLite's transactions begin IMMEDIATE, one writer at a time, so there
    both reads cannot come before both writes."""
    if runtime.store.dialect != "postgresql":
        pytest.skip("SQLite serializes whole transactions: this interleaving cannot occur")
    reviews.record(runtime, _auditor(runtime), OFFICER, 1)
    top = _head(runtime)  # (its event is in the log: both reviews go further than 1)
    both_read = threading.Barrier(2, timeout=30)
    read = reviews._last_review

    def read_then_wait(session: Any) -> Any:
        last = read(session)
        both_read.wait()
        return last

    monkeypatch.setattr(reviews, "_last_review", read_then_wait)
    if numbering == "a-sequence":
        numbers = itertools.count(100)
        monkeypatch.setattr(reviews, "_number_after", lambda last: next(numbers))
    outcomes: dict[int, str] = {}

    def review(seq: int) -> None:
        try:
            reviews.record(runtime, _auditor(runtime), OFFICER, seq)
            outcomes[seq] = "landed"
        except ReviewStateError:
            outcomes[seq] = "refused"

    # The further review is sent first; the other one may still land after it.
    threads = [threading.Thread(target=review, args=(seq,)) for seq in (top, top - 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    monkeypatch.undo()
    landed = sorted(reviews.list_reviews(runtime, _auditor(runtime)), key=lambda r: r.number)
    if numbering == "a-sequence":
        assert sorted(outcomes.values()) == ["landed", "landed"], "the race did not happen"
        return
    assert sorted(outcomes.values()) == ["landed", "refused"]
    assert len(landed) == 2
    assert all(a.up_to_seq < b.up_to_seq for a, b in itertools.pairwise(landed))
