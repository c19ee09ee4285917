"""accounts.approvals: a second person for every service that may read PII.

- A service's ``pii-reader`` grants name tenants; ``pii-reader`` on ``*`` is refused and
  nothing is written.
- A service holding ``pii-reader`` is created pending: its API key exists but authenticates
  nothing until someone other than its creator approves it; a rejected one never works.
- Only a pending account can be decided, once; the creator cannot decide, even holding the
  security-officer role; every step is an event.

The attacker here is an administrator minting a PII credential for themselves (the review's
finding: before, the key worked at once, for 365 days, with no second person).
"""

from __future__ import annotations

from typing import Any

import pytest

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import approvals
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    NotPendingError,
    SecondPersonRequiredError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account
from sellervault.runtime import Runtime
from tests.accounts.test_service import account, admin_principal, auditor, events, table

OFFICER = Principal("acc_0000000000000000000000aa", "person",
                    (Grant(Role.SECURITY_OFFICER, "*"),))
PII_ON_ACME = [Grant(Role.PII_READER, "acme")]


def authenticate(rt: Runtime, token: str) -> Principal:
    """``accounts.authenticate``, run to its end from this (blocking) test."""
    return rt.store.call(accounts.authenticate, rt, token).principal



def _service(rt: Runtime, initialized: bootstrap.InitResult,
             grants: list[Grant]) -> accounts.NewService:
    return accounts.create_service(rt, auditor(rt), admin_principal(initialized),
                                   name="label printer", grants=grants)


def _decide(rt: Runtime, who: Principal, account_id: str, *, approve: bool) -> str:
    return approvals.decide(rt, auditor(rt), who, account_id, approve=approve)


def test_a_service_may_not_read_pii_on_every_tenant(runtime: Runtime,
                                                    initialized: bootstrap.InitResult) -> None:
    before = table(runtime, Account)
    with pytest.raises(AccountRequestError):
        _service(runtime, initialized, [Grant(Role.PII_READER, "*")])
    assert table(runtime, Account) == before


def test_a_pii_service_is_pending_and_its_key_works_only_after_approval(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    created = _service(runtime, initialized, PII_ON_ACME)
    assert created.status == "pending" and account(runtime, created.id)["status"] == "pending"
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, created.api_key)
    assert [(e["target_id"], e["reason"]) for e in events(runtime, "accounts:create")][-1] == (
        created.id, "approval_required")

    assert _decide(runtime, OFFICER, created.id, approve=True) == "active"
    principal = authenticate(runtime, created.api_key)
    assert principal.id == created.id and principal.roles == {Role.PII_READER}
    [approved] = events(runtime, "accounts:approve")
    assert (approved["target_id"], approved["outcome"]) == (created.id, "success")


def test_a_service_without_pii_is_active_at_once(runtime: Runtime,
                                                 initialized: bootstrap.InitResult) -> None:
    created = _service(runtime, initialized, [Grant(Role.INGEST, "acme"),
                                              Grant(Role.ANALYST, "acme")])
    assert created.status == "active"
    assert authenticate(runtime, created.api_key).id == created.id


def test_the_creator_cannot_approve_even_as_a_security_officer(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """An account holding admin and security-officer alone is still one person."""
    created = _service(runtime, initialized, PII_ON_ACME)
    both = Principal(initialized.admin_id, "person", (Grant(Role.ADMIN, "*"),
                                                      Grant(Role.SECURITY_OFFICER, "*")))
    for approve in (True, False):
        with pytest.raises(SecondPersonRequiredError):
            _decide(runtime, both, created.id, approve=approve)
    assert account(runtime, created.id)["status"] == "pending"
    assert events(runtime, "accounts:approve") == []


def test_a_service_cannot_approve_even_holding_security_officer(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """One made before services were refused the role: its key is its creator's, so its
    approval would be the creator's own."""
    created = _service(runtime, initialized, PII_ON_ACME)
    service_officer = Principal("svc_" + "1" * 24, "service",
                                (Grant(Role.SECURITY_OFFICER, "*"),))
    with pytest.raises(SecondPersonRequiredError):
        _decide(runtime, service_officer, created.id, approve=True)
    assert account(runtime, created.id)["status"] == "pending"


def test_a_rejected_service_never_works(runtime: Runtime,
                                        initialized: bootstrap.InitResult) -> None:
    created = _service(runtime, initialized, PII_ON_ACME)
    assert _decide(runtime, OFFICER, created.id, approve=False) == "rejected"
    with pytest.raises(NotPendingError):
        _decide(runtime, OFFICER, created.id, approve=True)
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, created.api_key)
    assert [e["target_id"] for e in events(runtime, "accounts:reject")] == [created.id]


@pytest.mark.parametrize("target", ["active", "unknown"])
def test_only_a_pending_account_can_be_decided(runtime: Runtime,
                                               initialized: bootstrap.InitResult,
                                               target: str) -> None:
    if target == "active":
        account_id = _service(runtime, initialized, [Grant(Role.INGEST, "acme")]).id
        expected: Any = NotPendingError
    else:
        account_id, expected = "svc_" + "0" * 24, AccountNotFoundError
    with pytest.raises(expected):
        _decide(runtime, OFFICER, account_id, approve=True)


def test_the_pending_list_shows_what_would_be_granted(runtime: Runtime,
                                                      initialized: bootstrap.InitResult) -> None:
    pending = _service(runtime, initialized, PII_ON_ACME)
    _service(runtime, initialized, [Grant(Role.INGEST, "acme")])
    listed = approvals.list_pending(runtime, auditor(runtime))
    assert [(p.id, p.kind, p.grants, p.created_by) for p in listed] == [
        (pending.id, "service", PII_ON_ACME, initialized.admin_id)]
    assert [e["count"] for e in events(runtime, "approvals:list")] == [1]
