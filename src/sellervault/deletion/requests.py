"""The deletion register: deletion and return requests, each on its clock (the policy's 72
hours from receipt, ``SELLERVAULT_DELETION_DEADLINE_HOURS``), filed, listed and cancelled by
a security officer. Executing one is ``deletion.execution``.

A request names its scope: one order, a buyer (every order of their email in the tenant,
found through the blind index) or a whole tenant. The email is used once, to compute the
tenant's blind-index digest of it and the buyer's pseudonym, and is not kept: the register
holds the digest (which names nobody once the tenant's keys are gone) and the security log
the pseudonym.

Filing, cancelling, approving a return and completing are each written to the erasure
ledger before they commit (``deletion.obligations``), so that a restore from a backup taken
before brings the request back as it stood (``record_state``)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, Reason, TargetType
from sellervault.config import Settings
from sellervault.deletion import holds, ledger, obligations, returns
from sellervault.deletion.errors import (
    DeletionRequestNotFoundError,
    DeletionReturnGoneError,
    DeletionReturnNotFoundError,
    DeletionScopeNotFoundError,
    DeletionStateError,
    InvalidDeletionRequestError,
    LegalHoldError,
    SecondOfficerRequiredError,
)
from sellervault.deletion.models import CertificateRow, DeletionRequest
from sellervault.records import erasure
from sellervault.runtime import Runtime
from sellervault.store.ids import new_id

Scope = Literal["order", "buyer", "tenant"]
PENDING, EXECUTING, COMPLETED, CANCELLED = "pending", "executing", "completed", "cancelled"
CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a stated receipt time may be (another machine's clock)."""


@dataclass(frozen=True)
class Request:
    """A request as the register shows it: ids, scope, times, state and counts; never an
    email, never who-asked's text in an event."""

    id: str
    scope: str
    tenant_id: str
    amazon_order_id: str | None
    buyer: str | None
    requested_by: str
    return_data: bool
    received_at: datetime
    deadline: datetime
    status: str
    step: str | None
    created_by: str
    created_at: datetime
    completed_at: datetime | None
    orders: int | None
    data_keys: int | None
    tenant_keys: int | None
    rows_deleted: int | None
    return_sha256: str | None
    return_key_id: str | None
    returned: int | None
    return_approved_by: str | None
    certificate_id: str | None

    @classmethod
    def of(cls, row: DeletionRequest, certificate_id: str | None) -> Request:
        return cls(row.id, row.scope, row.tenant_id, row.amazon_order_id, row.buyer,
                   row.requested_by, row.return_data, row.received_at, row.deadline,
                   row.status, row.step, row.created_by, row.created_at, row.completed_at,
                   row.orders, row.data_keys, row.tenant_keys, row.rows_deleted,
                   row.return_sha256,
                   row.return_key_id, row.returned, row.return_approved_by,
                   certificate_id)


def file_request(rt: Runtime, auditor: Auditor, principal_id: str, *, scope: Scope,
                 tenant_id: str, requested_by: str, return_data: bool = False,
                 return_to: object = None, amazon_order_id: str | None = None,
                 buyer_email: str | None = None,
                 received_at: datetime | None = None) -> Request:
    """Record a request (``pending``) with its deadline: ``received_at`` (now, unless the
    request reached the company earlier) plus the configured hours. An order or tenant the
    service does not hold is refused (404: a typo must not be certified as a deletion); a
    buyer with no orders is not (the certificate will say none were held). ``return_data``:
    the scope is first returned, encrypted to ``return_to`` (the recipient's public JWK:
    ``deletion.returns``). A scope holding an order under an active legal hold is refused
    (409 ``legal_hold``: the hold prevails), with an event of the refusal and nothing else;
    a hold placed after filing stops the execution (``deletion.execution``)."""
    now = rt.clock.now()
    received = _received(received_at, now)
    _check_scope(scope, amazon_order_id, buyer_email)
    if return_data != (return_to is not None):
        raise InvalidDeletionRequestError(
            "return_to: " + ("the recipient's public key is required to return data"
                             if return_data else "only with return: true"))
    recipient = returns.recipient(return_to) if return_data else None
    who = requested_by.strip()
    if not who or not who.isprintable():
        raise InvalidDeletionRequestError("requested_by: say who asked, in one line")
    with rt.store.transaction() as session:
        buyer = _scope_subject(rt, session, scope, tenant_id, amazon_order_id, buyer_email)
        held = holds.active_in(session, erasure.Scope(
            tenant_id, amazon_order_id, buyer.digest if buyer else None), now)
        if held:  # (the refusal's event commits; nothing else is written)
            auditor.record(session, Action.DELETIONS_CREATE, Outcome.DENIED,
                           tenant_id=tenant_id, target_type=TargetType.DELETION_REQUEST,
                           criteria=scope, buyer=buyer.pseudonym if buyer else None,
                           reason=Reason.LEGAL_HOLD)
        else:
            filed = _add(rt.settings, session, auditor, now, principal_id, scope,
                         tenant_id, amazon_order_id, buyer, who, recipient, received,
                         received + timedelta(hours=rt.settings.deletion_deadline_hours))
    if held:
        raise LegalHoldError(held)
    return filed


def _add(settings: Settings, session: Session, auditor: Auditor, now: datetime,
         principal_id: str, scope: Scope, tenant_id: str, amazon_order_id: str | None,
         buyer: erasure.Buyer | None, who: str, recipient: returns.Recipient | None,
         received: datetime, deadline: datetime) -> Request:
    """The request's row, pending, its ledger entry and its ``deletions:create`` event."""
    row = DeletionRequest(
        id=f"del_{new_id(now)[:24]}", scope=scope, tenant_id=tenant_id,
        amazon_order_id=amazon_order_id, buyer_digest=buyer.digest.hex() if buyer else None,
        buyer=buyer.pseudonym if buyer else None, requested_by=who,
        return_data=recipient is not None,
        return_key=None if recipient is None else recipient.jwk,
        return_key_id=None if recipient is None else recipient.key_id,
        received_at=received, deadline=deadline, status=PENDING, created_by=principal_id,
        created_at=now, warned=0)
    session.add(row)
    session.flush()
    auditor.record(session, Action.DELETIONS_CREATE, Outcome.SUCCESS, tenant_id=tenant_id,
                   target_type=TargetType.DELETION_REQUEST, target_id=row.id,
                   criteria=scope, buyer=row.buyer)
    ledger.record(settings, session, obligations.of(obligations.REQUEST_FILED, row))
    return Request.of(row, None)


def _received(received_at: datetime | None, now: datetime) -> datetime:
    if received_at is None:
        return now
    if received_at.tzinfo is None:
        raise InvalidDeletionRequestError("received_at: give a time zone")
    if received_at > now + CLOCK_SKEW:
        raise InvalidDeletionRequestError("received_at is in the future")
    return received_at


def _check_scope(scope: Scope, amazon_order_id: str | None, buyer_email: str | None) -> None:
    wanted = {"order": (True, False), "buyer": (False, True), "tenant": (False, False)}
    order_wanted, email_wanted = wanted[scope]
    if (amazon_order_id is not None) != order_wanted:
        raise InvalidDeletionRequestError(
            "amazon_order_id: " + ("required" if order_wanted else "only for scope order"))
    if (buyer_email is not None) != email_wanted:
        raise InvalidDeletionRequestError(
            "buyer_email: " + ("required" if email_wanted else "only for scope buyer"))
    if buyer_email is not None and "@" not in buyer_email:
        raise InvalidDeletionRequestError("buyer_email: not an email address")


def _scope_subject(rt: Runtime, session: Session, scope: Scope, tenant_id: str,
                   amazon_order_id: str | None,
                   buyer_email: str | None) -> erasure.Buyer | None:
    """The buyer of a buyer scope; checks that an order or tenant scope exists."""
    if scope == "order":
        assert amazon_order_id is not None  # (checked: _check_scope)
        if not erasure.order_exists(session, tenant_id, amazon_order_id):
            raise DeletionScopeNotFoundError("order")
        return None
    if not erasure.tenant_held(session, rt.keyring, tenant_id):  # never ingested, or erased
        raise DeletionScopeNotFoundError("tenant")
    if scope == "tenant":
        return None
    assert buyer_email is not None  # (checked: _check_scope)
    return erasure.buyer(session, rt.keyring, rt.keyring.buyer_pseudonyms(session),
                         tenant_id, buyer_email)


def list_requests(rt: Runtime, auditor: Auditor, status: str | None = None,
                  limit: int = 100) -> list[Request]:
    """The register, newest first (``status``: only those)."""
    query = select(DeletionRequest, CertificateRow.id).outerjoin(
        CertificateRow, CertificateRow.request_id == DeletionRequest.id).order_by(
        DeletionRequest.created_at.desc(), DeletionRequest.id.desc()).limit(limit)
    if status is not None:
        query = query.where(DeletionRequest.status == status)
    with rt.store.transaction() as session:
        found = [Request.of(row, certificate) for row, certificate in session.execute(query)]
        auditor.record(session, Action.DELETIONS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.DELETION_REQUEST, count=len(found))
    return found


def get_request(rt: Runtime, auditor: Auditor, request_id: str) -> Request:
    with rt.store.transaction() as session:
        found = load(session, request_id)
        auditor.record(session, Action.DELETIONS_LIST, Outcome.SUCCESS,
                       tenant_id=found.tenant_id, target_type=TargetType.DELETION_REQUEST,
                       target_id=request_id)
        return found


def tenant_of(rt: Runtime, request_id: str) -> str:
    """The tenant a request is about (``DeletionRequestNotFoundError``): what a route acting
    on it by its id holds up to the tenant's kill switch."""
    with rt.store.snapshot() as connection:
        tenant_id = connection.execute(select(DeletionRequest.tenant_id).where(
            DeletionRequest.id == request_id)).scalar()
    if tenant_id is None:
        raise DeletionRequestNotFoundError()
    return str(tenant_id)


def load(session: Session, request_id: str) -> Request:
    """One request as the register shows it (``DeletionRequestNotFoundError``)."""
    found = session.execute(select(DeletionRequest, CertificateRow.id).outerjoin(
        CertificateRow, CertificateRow.request_id == DeletionRequest.id).where(
        DeletionRequest.id == request_id)).first()
    if found is None:
        raise DeletionRequestNotFoundError()
    return Request.of(found[0], found[1])


def cancel_request(rt: Runtime, auditor: Auditor, principal_id: str,
                   request_id: str) -> Request:
    """Cancel a request that has not begun (``pending``): one conditional update, so a
    cancel and an execute at the same moment cannot both win."""
    with rt.store.transaction() as session:
        changed = session.execute(update(DeletionRequest).where(
            DeletionRequest.id == request_id, DeletionRequest.status == PENDING).values(
            status=CANCELLED, cancelled_by=principal_id, cancelled_at=rt.clock.now()))
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            load(session, request_id)  # (404 if there is none)
            raise DeletionStateError("only a pending request can be cancelled: its "
                                     "execution has begun, or it is done or cancelled")
        found = load(session, request_id)
        auditor.record(session, Action.DELETIONS_CANCEL, Outcome.SUCCESS,
                       tenant_id=found.tenant_id, target_type=TargetType.DELETION_REQUEST,
                       target_id=request_id, buyer=found.buyer)
        record_state(rt.settings, session, request_id)
        return found


def record_state(settings: Settings, session: Session, request_id: str) -> None:
    """The request's state as the caller's transaction leaves it, written to the ledger
    (``deletion.obligations``) before it commits: a cancel, a return's approval, a completion
    (its status, step, times and counts), which a restore from an earlier backup must not
    undo."""
    row = session.get(DeletionRequest, request_id, populate_existing=True)
    assert row is not None  # (the caller changed it in this transaction)
    ledger.record(settings, session, obligations.of(obligations.REQUEST_STATE, row))


def approve_return(rt: Runtime, auditor: Auditor, principal_id: str,
                   request_id: str) -> Request:
    """A second security officer approves a pending request's return (and so the recipient
    key it names, by its thumbprint): until then it is not executed. The officer who filed
    it cannot (403); one conditional update, so it is approved once (409 after that)."""
    with rt.store.transaction() as session:
        row = _returning(session, request_id)
        if row.created_by == principal_id:
            raise SecondOfficerRequiredError()
        approved = session.execute(update(DeletionRequest).where(
            DeletionRequest.id == request_id, DeletionRequest.status == PENDING,
            DeletionRequest.return_approved_by.is_(None)).values(
            return_approved_by=principal_id, return_approved_at=rt.clock.now()))
        if approved.rowcount != 1:  # type: ignore[attr-defined]
            raise DeletionStateError("only a pending return not yet approved can be approved")
        auditor.record(session, Action.DELETIONS_APPROVE_RETURN, Outcome.SUCCESS,
                       tenant_id=row.tenant_id, target_type=TargetType.DELETION_REQUEST,
                       target_id=request_id, buyer=row.buyer)
        found = load(session, request_id)
        record_state(rt.settings, session, request_id)
        return found


def _returning(session: Session, request_id: str) -> DeletionRequest:
    """A request that returns data (404 for no such request, or one that returns none)."""
    row = session.get(DeletionRequest, request_id)
    if row is None:
        raise DeletionRequestNotFoundError()
    if not row.return_data:
        raise DeletionReturnNotFoundError()
    return row


@dataclass(frozen=True)
class ReturnedFile:
    sha256: str
    size: int
    chunks: Iterator[bytes]
    """The file, read a few parts at a time as it is taken (``returns.chunks``)."""


def returned_file(rt: Runtime, auditor: Auditor, request_id: str) -> ReturnedFile:
    """The request's returned file (``deletion.returns``: a JWE per line, encrypted to the
    recipient), exactly the bytes whose SHA-256 the request and its certificate hold: read
    once to check that digest, then handed out a few parts at a time (a tenant's file is
    gigabytes; it is never held whole). 404 for a request that returns nothing; 409 before
    its data is returned, or when what is stored no longer matches; 410 once discarded."""
    with rt.store.transaction() as session:
        row = _returning(session, request_id)
        if row.return_sha256 is None:
            raise DeletionStateError("the data is not returned yet: execute the request")
        expected, tenant_id, buyer, returned = (row.return_sha256, row.tenant_id, row.buyer,
                                                row.returned)
    found = returns.digest(rt.store, request_id)
    if found.size == 0:
        raise DeletionReturnGoneError()
    if not hmac.compare_digest(found.sha256, expected):
        raise DeletionStateError("the returned file no longer matches its recorded SHA-256")
    with rt.store.transaction() as session:
        auditor.record(session, Action.DELETIONS_RETURN_READ, Outcome.SUCCESS,
                       tenant_id=tenant_id, target_type=TargetType.DELETION_REQUEST,
                       target_id=request_id, buyer=buyer, count=returned)
    return ReturnedFile(found.sha256, found.size, returns.chunks(rt.store, request_id))
