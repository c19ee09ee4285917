"""Executing a deletion request: a state machine in the database, one transaction and one
security event per step, so a process killed at any point and run again finishes the job
with nothing half-deleted, and two executions at once do each step once.

0. ``returned`` (a request filed with ``return: true`` only): the scope is exported,
   encrypted to the recipient's public key, a part per transaction
   (``deletion.returns``), and the file's SHA-256 recorded. Nothing is destroyed before.
1. ``keys_destroyed``: the scope's data keys are destroyed (a tenant: its key-encryption
   and index keys, a few rows whatever its size). From this commit on, nothing of the scope
   decrypts, in any process (data keys are never cached; a tenant's cached keys are
   evicted: ``Keyring.destroy_tenant_keys``).
2. ``rows_deleted``: the scope's rows, and the blind-index entries in them, are deleted, a
   batch per transaction (a large scope never holds one long transaction; other tenants'
   requests go on), each batch with its rows' data keys (a tenant's, unopenable since step
   1; an order of the buyer ingested after step 1 is erased, not merely deleted).
3. ``verified``: nothing of the scope answers, no destroyed key is left, and the database
   was asked to drop what it still holds of the rows (``Store.reclaim_deleted``).
4. ``certified``: the certificate of sanitization is signed and stored
   (``deletion.certificates``) and the request is ``completed``, in one transaction.

A scope of more than ``FOREGROUND_LIMIT`` orders is executed in the background: ``start``
(the API's execute) begins it and, unless data is to be returned first, destroys its keys
at once (unreadable from that commit), then leaves the rest to the ``deletion-executions``
job (``resume_all``), which runs every executing request on to completion; the request's
``rows_deleted`` against its ``orders`` is the progress.

A legal hold prevails: before any key is destroyed (step 1, and each batch of step 2 of an
order's or a buyer's), the scope's rows are locked and their holds read in the same
transaction (a tenant's: under its hold lock, ``deletion.holds``); one held stops the
execution (409 ``legal_hold``, a refusal event), nothing destroyed.

Each step ends with a conditional update of the request (``WHERE step = the one before``):
of two executions running the same step, one moves the request on and the other's
transaction rolls back (its work repeated idempotently by the winner), so every step is
recorded once."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, Reason, TargetType
from sellervault.crypto.errors import TenantKeysDestroyedError
from sellervault.crypto.keyring import UnknownTenantKeyError
from sellervault.deletion import certificates, holds, ledger, returns
from sellervault.deletion.errors import DeletionStateError, LegalHoldError
from sellervault.deletion.models import DeletionRequest, ReturnedPart
from sellervault.deletion.requests import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    PENDING,
    Request,
    load,
    record_state,
)
from sellervault.records import erasure, tombstones
from sellervault.runtime import Runtime

RETURNED, KEYS_DESTROYED, ROWS_DELETED, VERIFIED, CERTIFIED = (
    "returned", "keys_destroyed", "rows_deleted", "verified", "certified")
STEPS: tuple[str | None, ...] = (None, RETURNED, KEYS_DESTROYED, ROWS_DELETED, VERIFIED,
                                 CERTIFIED)
"""Each step's predecessor comes before it: ``None`` is a request whose execution began
(a request that returns nothing goes from ``None`` to ``keys_destroyed``)."""


log = logging.getLogger("sellervault.deletion")

FOREGROUND_LIMIT = 1000
"""Orders a request's scope may hold to be executed within the request that asks (one batch
of ``_delete_rows``); a larger one goes on in the background."""


class _Overtaken(Exception):
    """Another execution finished this step first: this one's transaction rolls back."""


class _Held(Exception):
    """The scope holds an order under an active legal hold: this step's transaction rolls
    back, nothing destroyed (``_refuse`` records why)."""

    def __init__(self, action: Action, hold_ids: list[str]) -> None:
        super().__init__(action)
        self.action, self.hold_ids = action, hold_ids


@dataclass(frozen=True)
class _Target:
    """What a step needs of the request: its scope, as the records module takes it."""

    id: str
    kind: str
    tenant_id: str
    scope: erasure.Scope
    buyer: str | None
    recipient: returns.Recipient | None
    """Whom the scope is returned to first (none: deleted only)."""

    @classmethod
    def of(cls, row: DeletionRequest) -> _Target:
        digest = bytes.fromhex(row.buyer_digest) if row.buyer_digest else None
        recipient = None if row.return_key is None or row.return_key_id is None else \
            returns.Recipient(row.return_key, row.return_key_id)
        return cls(row.id, row.scope, row.tenant_id,
                   erasure.Scope(row.tenant_id, row.amazon_order_id, digest), row.buyer,
                   recipient)


def start(rt: Runtime, auditor: Auditor, principal_id: str, request_id: str) -> Request:
    """Execute a request whose scope is small enough here and now; a larger one is begun,
    made unreadable (its keys destroyed, when nothing is to be returned first) and left
    ``executing`` for the ``deletion-executions`` job (``resume_all``)."""
    target = _begin(rt, auditor, principal_id, request_id)
    with rt.store.transaction() as session:
        large = erasure.holds_more_than(session, target.scope, FOREGROUND_LIMIT)
    if not large:
        return execute(rt, auditor, principal_id, request_id)
    if target.recipient is None:  # unreadable now; deleted, verified, certified by the job
        return execute(rt, auditor, principal_id, request_id, until=KEYS_DESTROYED)
    with rt.store.transaction() as session:  # (returned first: all of it in the job)
        return load(session, request_id)


def resume_all(rt: Runtime) -> int:
    """The ``deletion-executions`` job: every executing request run on to completion (each
    resumes where it stands), but for those a legal hold or their tenant's kill switch
    stops (left as they stand, their deadline alerts going on); the number completed. One
    that fails (a verification that found an order arrived meanwhile) is left for the next
    run, which goes on from there."""
    with rt.store.snapshot() as connection:
        executing = connection.execute(select(DeletionRequest.id, DeletionRequest.executed_by,
                                              DeletionRequest.tenant_id)
                                       .where(DeletionRequest.status == EXECUTING)).all()
    completed = 0
    for request_id, executed_by, tenant_id in executing:
        if rt.switches.stops_tenant(rt, tenant_id) or _held_back(rt, request_id):
            continue  # (a kill switch on its tenant, or a hold: until it is cleared)
        try:
            done = execute(rt, Auditor(rt.audit, SYSTEM_ACTOR), executed_by or "system",
                           request_id)
        except Exception as exc:  # one request failing must not stop the others: it stays
            # executing, its deadline alerts still run, the next run tries again. (The type
            # only: a database error's text carries the statement's parameters.)
            log.error("deletion request %s: execution failed (%s); retried next run",
                      request_id, type(exc).__name__)
            continue
        completed += done.status == COMPLETED
    _discard_returns(rt)
    return completed


def _held_back(rt: Runtime, request_id: str) -> bool:
    """Whether an active legal hold stops the request where it stands: the job leaves it
    be (the refusal was recorded when the hold first stopped it, and its deadline alerts go
    on) rather than writing a refusal every run; it goes on once the hold is released."""
    with rt.store.transaction() as session:
        row = session.get(DeletionRequest, request_id)
        return row is not None and bool(holds.active_in(session, _Target.of(row).scope,
                                                        rt.clock.now()))


def _discard_returns(rt: Runtime) -> None:
    """Returned files fetched or not, ``returns.RETURN_KEPT`` after their request completed
    (a ``deletions:return-discard`` event per request)."""
    with rt.store.transaction() as session:
        expired = session.execute(select(DeletionRequest.id, DeletionRequest.tenant_id).where(
            DeletionRequest.status == COMPLETED,
            DeletionRequest.completed_at < rt.clock.now() - returns.RETURN_KEPT,
            select(ReturnedPart.request_id).where(
                ReturnedPart.request_id == DeletionRequest.id).exists())).all()
        returns.discard(session, [request_id for request_id, _ in expired])
        for request_id, tenant_id in expired:
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, Action.DELETIONS_RETURN_DISCARD, Outcome.SUCCESS,
                tenant_id=tenant_id, target_type=TargetType.DELETION_REQUEST,
                target_id=request_id)


def execute(rt: Runtime, auditor: Auditor, principal_id: str, request_id: str,
            until: str | None = None) -> Request:
    """Run the request's remaining steps (``until``: stop after that one, for tests of a
    stopped execution). A completed request is answered as it is; a cancelled one, 409."""
    target = _begin(rt, auditor, principal_id, request_id)
    steps: dict[str | None, Callable[[Runtime, Auditor, _Target], None]] = {
        None: _destroy_keys if target.recipient is None else _return,
        RETURNED: _destroy_keys, KEYS_DESTROYED: _delete_rows, ROWS_DELETED: _verify,
        VERIFIED: _certify}
    while True:
        step = _step(rt, request_id)
        if step not in steps or (until is not None and step == until):
            break
        try:
            steps[step](rt, auditor, target)
        except _Held as held:
            _refuse(rt, auditor, target, held)
    with rt.store.transaction() as session:
        return load(session, request_id)


def _refuse(rt: Runtime, auditor: Auditor, target: _Target, held: _Held) -> None:
    """A legal hold prevails (``LegalHoldError``, 409): the refusal is an event, and a
    request none of whose steps ran is pending again, so that the officer can cancel it if
    the hold stays; its deadline alerts go on meanwhile. One whose data was returned or
    whose keys went stays executing where it stands: running it again goes on from there
    once the hold is released."""
    with rt.store.transaction() as session:
        session.execute(update(DeletionRequest).where(
            DeletionRequest.id == target.id, DeletionRequest.status == EXECUTING,
            DeletionRequest.step.is_(None)).values(status=PENDING, executed_by=None,
                                                   started_at=None))
        _record(session, auditor, held.action, target, None, Outcome.DENIED,
                Reason.LEGAL_HOLD)
    raise LegalHoldError(held.hold_ids)


def _begin(rt: Runtime, auditor: Auditor, principal_id: str, request_id: str) -> _Target:
    """Pending becomes executing (an ``deletions:execute`` event, the first time); an
    execution that stopped is resumed as it is."""
    with rt.store.transaction() as session:
        began = session.execute(update(DeletionRequest).where(
            DeletionRequest.id == request_id, DeletionRequest.status == PENDING,
            DeletionRequest.return_data.is_(False)
            | DeletionRequest.return_approved_by.is_not(None)).values(
            status=EXECUTING, executed_by=principal_id, started_at=rt.clock.now()))
        row = session.get(DeletionRequest, request_id)
        if row is None:
            load(session, request_id)  # raises: 404
            raise AssertionError("unreachable")
        if row.status == CANCELLED:
            raise DeletionStateError("the request was cancelled")
        if row.status == PENDING:  # (not begun: a return no second officer approved yet)
            raise DeletionStateError("a second security officer must approve the return "
                                     "first (approve-return)")
        if began.rowcount == 1:  # type: ignore[attr-defined]
            auditor.record(session, Action.DELETIONS_EXECUTE, Outcome.SUCCESS,
                           tenant_id=row.tenant_id, target_type=TargetType.DELETION_REQUEST,
                           target_id=row.id, criteria=row.scope, buyer=row.buyer)
        return _Target.of(row)


def _step(rt: Runtime, request_id: str) -> str | None:
    """Where the request stands (a read: no write lock taken)."""
    with rt.store.snapshot() as connection:
        status, step = connection.execute(select(DeletionRequest.status, DeletionRequest.step)
                                          .where(DeletionRequest.id == request_id)).one()
    return step if status == EXECUTING else COMPLETED


def _advance(session: Session, target: _Target, step: str, **values: object) -> None:
    """Move the request from ``step``'s predecessor to ``step``, or roll back if another
    execution did (``_Overtaken``)."""
    before = STEPS[STEPS.index(step) - 1]
    if before == RETURNED and target.recipient is None:
        before = None
    moved = session.execute(update(DeletionRequest).where(
        DeletionRequest.id == target.id, DeletionRequest.status == EXECUTING,
        DeletionRequest.step.is_(None) if before is None else DeletionRequest.step == before,
    ).values(step=step, **values))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise _Overtaken()


def _return(rt: Runtime, auditor: Auditor, target: _Target) -> None:
    assert target.recipient is not None
    returned = returns.write_parts(rt, target.id, target.recipient, target.scope)
    digest = returns.digest(rt.store, target.id).sha256  # (every part written: fixed now)
    try:
        with rt.store.transaction() as session:
            _advance(session, target, RETURNED, return_sha256=digest, returned=returned)
            _record(session, auditor, Action.DELETIONS_RETURN, target, returned)
    except _Overtaken:
        return


def _destroy_keys(rt: Runtime, auditor: Auditor, target: _Target) -> None:
    """A tenant's few key rows, or the data keys of a smaller scope's orders, destroyed in
    one transaction that does nothing else: a tenant's orders and data keys are counted at
    the start of step 2, not here (two counts over a million rows would keep a large tenant
    readable for seconds longer)."""
    now = rt.clock.now()
    try:
        with rt.store.transaction() as session:
            if target.kind == "tenant":  # its key-encryption keys: a few rows, whatever
                # its size; every data key is unopenable from this commit, and deleted with
                # its order's row, a batch at a time (_delete_rows). No hold is placed in
                # the tenant until this commits (and none after: its keys are gone).
                holds.lock_tenant(session, target.tenant_id, exclusive=True)
                held = holds.active_in(session, target.scope, now)
                if held:
                    raise _Held(Action.DELETIONS_DESTROY_KEYS, held)
                ledger.record(rt.settings, session,
                              ledger.Erasure(target.tenant_id, tenant_keys=True))
                destroyed = rt.keyring.destroy_tenant_keys(session, target.tenant_id,
                                                           data_keys=False)
                values: dict[str, object] = {"tenant_keys": destroyed.tenant_keys}
                counted = destroyed.tenant_keys
            else:  # (the rows locked: a hold placed meanwhile is seen, or waits and
                # then finds its order erased)
                locked = erasure.lock_scope(session, target.scope, now)
                if locked.held:
                    raise _Held(Action.DELETIONS_DESTROY_KEYS, holds.active_in(
                        session, target.scope, now, locked.held))
                ids = locked.data_key_ids  # (one per order)
                ledger.record(rt.settings, session, ledger.Erasure(target.tenant_id,
                                                                   data_keys=ids))
                destroyed = rt.keyring.destroy_data_keys(session, target.tenant_id, ids)
                values = {"orders": len(ids), "data_keys": destroyed.data_keys,
                          "tenant_keys": 0, "data_key_ids": json.dumps(sorted(ids))}
                counted = destroyed.data_keys
            _advance(session, target, KEYS_DESTROYED, **values)
            _record(session, auditor, Action.DELETIONS_DESTROY_KEYS, target, counted)
    except _Overtaken:
        return


def _count_tenant(rt: Runtime, target: _Target) -> None:
    """A tenant's orders and the data keys its key destruction left unopenable, recorded
    once before its rows go (exact: an erased tenant takes no ingest)."""
    with rt.store.transaction() as session:
        if session.scalar(select(DeletionRequest.orders).where(
                DeletionRequest.id == target.id)) is not None:
            return
        session.execute(update(DeletionRequest).where(
            DeletionRequest.id == target.id, DeletionRequest.orders.is_(None)).values(
            orders=erasure.count(session, target.scope),
            data_keys=rt.keyring.data_keys_held(session, target.tenant_id)))


def _delete_rows(rt: Runtime, auditor: Auditor, target: _Target) -> None:
    if target.kind == "tenant":
        _count_tenant(rt, target)
    deleted, after = 0, None
    while True:  # a batch per transaction: nothing long-held, other tenants go on
        with rt.store.transaction() as session:
            now = rt.clock.now()
            batch = erasure.next_batch(session, target.scope, after, erasure.DELETE_BATCH,
                                       None if target.kind == "tenant" else now)
            if batch.held:  # (an order of the buyer ingested after the keys went, and put
                # under a hold since: it stays, and so does the request, until released)
                raise _Held(Action.DELETIONS_DELETE_ROWS, holds.active_in(
                    session, target.scope, now, batch.held))
            key_ids = [o.data_key_id for o in batch.orders]
            order_ids = [o.id for o in batch.orders]
            if order_ids and target.kind != "tenant":  # (a tenant's entry says it all,
                # and an erased tenant takes no ingest: it needs no tombstones)
                buried = _tombstones(rt, session, target.tenant_id, batch)
                ledger.record(rt.settings, session, ledger.Erasure(
                    target.tenant_id, data_keys=key_ids, orders=order_ids,
                    tombstones=[ledger.tombstone_entry(t) for t in buried]))
                tombstones.bury(session, target.tenant_id, buried, rt.clock.now())
            rt.keyring.destroy_data_keys(session, target.tenant_id, key_ids)
            erasure.delete_orders(session, order_ids)
            if order_ids:  # (the progress, in the batch's own transaction)
                session.execute(update(DeletionRequest).where(
                    DeletionRequest.id == target.id).values(
                    rows_deleted=func.coalesce(DeletionRequest.rows_deleted, 0)
                    + len(order_ids)))
        deleted += len(order_ids)
        if not order_ids:
            break
        after = batch.after  # (a tenant's walk goes on from there; a buyer's starts again)
    try:
        with rt.store.transaction() as session:
            _advance(session, target, ROWS_DELETED)
            if target.kind == "tenant":  # (made under its destroyed index key: nothing left
                tombstones.forget_tenant(session, target.tenant_id)  # to withhold them from)
            _record(session, auditor, Action.DELETIONS_DELETE_ROWS, target, deleted)
    except _Overtaken:
        return


def _tombstones(rt: Runtime, session: Session, tenant_id: str,
                batch: erasure.Batch) -> list[tombstones.Tombstone]:
    """The batch's tombstones (``records.tombstones``); none once the whole tenant is being
    erased (its index key is gone, and it takes no ingest to withhold anything from)."""
    try:
        index = rt.keyring.blind_index(session, tenant_id)
    except (UnknownTenantKeyError, TenantKeysDestroyedError):
        return []
    return [tombstones.Tombstone(digest, expires_at) for digest, expires_at in zip(
        tombstones.digests(index, batch.amazon_order_ids), batch.expires_at, strict=True)]


def _verify(rt: Runtime, auditor: Auditor, target: _Target) -> None:
    cleanup = rt.store.reclaim_deleted()
    with rt.store.transaction() as session:
        row = session.get(DeletionRequest, target.id)
        assert row is not None
        checks = {"rows_absent": erasure.count(session, target.scope) == 0}
        if target.kind == "tenant":
            checks["keys_destroyed"] = not erasure.tenant_held(
                session, rt.keyring, target.tenant_id) and not rt.keyring.data_keys_held(
                session, target.tenant_id)
        else:
            checks["keys_destroyed"] = not rt.keyring.data_keys_held(
                session, target.tenant_id, json.loads(row.data_key_ids or "[]"))
    if not all(checks.values()):  # (an order of the buyer ingested meanwhile, say): the
        # request goes back a step, so that running it again deletes what is left first
        with rt.store.transaction() as session:
            session.execute(update(DeletionRequest).where(
                DeletionRequest.id == target.id, DeletionRequest.step == ROWS_DELETED)
                .values(step=KEYS_DESTROYED))
            _record(session, auditor, Action.DELETIONS_VERIFY, target, None, Outcome.FAILED,
                    Reason.DELETION_STATE)
        failed = ", ".join(name for name, passed in checks.items() if not passed)
        raise DeletionStateError(f"verification failed ({failed}): run the execution again")
    found = json.dumps({**checks, "database_cleanup": cleanup}, sort_keys=True)
    try:
        with rt.store.transaction() as session:
            _advance(session, target, VERIFIED, verification=found)
            _record(session, auditor, Action.DELETIONS_VERIFY, target, None)
    except _Overtaken:
        return


def _certify(rt: Runtime, auditor: Auditor, target: _Target) -> None:
    """The certificate, signed and stored, and the request completed: one transaction (a
    certificate is never without its completed request, nor one request with two)."""
    try:
        with rt.store.transaction() as session:
            now = rt.clock.now()
            _advance(session, target, CERTIFIED, status=COMPLETED, completed_at=now)
            row = session.get(DeletionRequest, target.id)
            assert row is not None
            certificates.issue(rt, session, auditor, row)
            _record(session, auditor, Action.DELETIONS_COMPLETE, target, row.orders)
            # (last, once nothing but the commit can fail: a restore keeps it completed)
            record_state(rt.settings, session, target.id)
    except _Overtaken:
        return


def _record(session: Session, auditor: Auditor, action: Action, target: _Target,
            count: int | None, outcome: Outcome = Outcome.SUCCESS,
            reason: Reason | None = None) -> None:
    auditor.record(session, action, outcome, tenant_id=target.tenant_id,
                   target_type=TargetType.DELETION_REQUEST, target_id=target.id,
                   criteria=target.kind, buyer=target.buyer, count=count, reason=reason)
