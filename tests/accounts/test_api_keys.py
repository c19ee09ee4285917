"""accounts.api_keys: a service's keys rotated, revoked, expiring, on SQLite and PostgreSQL,
from the side of whoever holds a key that should have stopped working.

- Rotation gives a new key that works; the old one keeps working for the overlap and is
  refused from its end (an overlap of 0: at once). A rotation never lengthens a key.
- A revoked key is refused at the next request; revoking it again is a 409, an unknown key
  or another account's key a 404. A person has no keys to rotate (404); a disabled service's
  keys are not rotated (409).
- An expired key is refused; a key within 30 days of its end says so (``expires_soon``),
  one further out does not; the ``api-key-expiry`` job announces each such key once.
- A service that reads PII is not rotated by an administrator (its key took a second
  person; a new one must too).
- Two rotations at the same moment end as if one ran after the other (the service's row is
  locked first).
- Each change is an event naming the key by its id, never the key.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import api_keys, approvals, lifecycle
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountStateError,
    ApiKeyNotFoundError,
    ApiKeyStateError,
    PiiServiceKeyError,
    UnauthenticatedError,
)
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import admin_of, system_auditor


def authenticate(rt: Runtime, token: str) -> accounts.Credential:
    return rt.store.call(accounts.authenticate, rt, token)


def refused(rt: Runtime, token: str) -> bool:
    try:
        authenticate(rt, token)
    except UnauthenticatedError:
        return True
    return False


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


@pytest.fixture
def service(runtime: Runtime, initialized: bootstrap.InitResult) -> accounts.NewService:
    return accounts.create_service(runtime, system_auditor(runtime), admin_of(initialized),
                                   name="label printer", grants=[Grant(Role.INGEST, "acme")])


def test_the_old_key_works_for_the_overlap_and_stops_at_its_end(
        runtime: Runtime, initialized: bootstrap.InitResult, service: accounts.NewService,
        clock: ManualClock) -> None:
    issued = api_keys.rotate(runtime, system_auditor(runtime), admin_of(initialized),
                             service.id, timedelta(hours=2))
    assert authenticate(runtime, issued.api_key).principal.id == service.id
    clock.advance(2 * 3600 - 1)
    authenticate(runtime, service.api_key)
    clock.advance(1)
    assert refused(runtime, service.api_key)
    authenticate(runtime, issued.api_key)
    [event] = events(runtime, "api-keys:rotate")
    assert (event.target_type, event.target_id, event.count) == ("api-key", issued.key_id, 1)
    assert issued.api_key not in str(tuple(event))


def test_an_overlap_of_zero_stops_the_old_key_at_once(
        runtime: Runtime, initialized: bootstrap.InitResult,
        service: accounts.NewService) -> None:
    api_keys.rotate(runtime, system_auditor(runtime), admin_of(initialized), service.id,
                    timedelta(0))
    assert refused(runtime, service.api_key)


def test_a_revoked_key_is_refused_at_the_next_request(
        runtime: Runtime, initialized: bootstrap.InitResult,
        service: accounts.NewService) -> None:
    admin = admin_of(initialized)
    [key] = _keys(runtime, service.id)
    api_keys.revoke(runtime, system_auditor(runtime), admin, service.id, key.key_id)
    assert refused(runtime, service.api_key)
    with pytest.raises(ApiKeyStateError):
        api_keys.revoke(runtime, system_auditor(runtime), admin, service.id, key.key_id)
    with pytest.raises(ApiKeyNotFoundError):
        api_keys.revoke(runtime, system_auditor(runtime), admin, service.id, "0" * 16)
    [event] = events(runtime, "api-keys:revoke")
    assert event.target_id == key.key_id


def _keys(rt: Runtime, account_id: str) -> list[api_keys.KeyInfo]:
    with rt.store.transaction() as session:
        return api_keys.keys_of(session, account_id)


def test_another_accounts_key_cannot_be_revoked_through_this_account(
        runtime: Runtime, initialized: bootstrap.InitResult,
        service: accounts.NewService) -> None:
    other = accounts.create_service(runtime, system_auditor(runtime), admin_of(initialized),
                                    name="invoice sender", grants=[Grant(Role.INGEST, "acme")])
    [key] = _keys(runtime, other.id)
    with pytest.raises(ApiKeyNotFoundError):
        api_keys.revoke(runtime, system_auditor(runtime), admin_of(initialized), service.id,
                        key.key_id)
    authenticate(runtime, other.api_key)


def test_only_a_live_service_has_keys_rotated(
        runtime: Runtime, initialized: bootstrap.InitResult,
        service: accounts.NewService) -> None:
    admin = admin_of(initialized)
    with pytest.raises(AccountNotFoundError):  # a person has no API keys
        api_keys.rotate(runtime, system_auditor(runtime), admin, initialized.admin_id,
                        timedelta(0))
    lifecycle.disable(runtime, system_auditor(runtime), admin, service.id)
    with pytest.raises(AccountStateError):
        api_keys.rotate(runtime, system_auditor(runtime), admin, service.id, timedelta(0))
    assert len(_keys(runtime, service.id)) == 1


def test_a_key_expires_and_is_announced_within_thirty_days_once(
        runtime: Runtime, service: accounts.NewService, clock: ManualClock) -> None:
    [key] = _keys(runtime, service.id)
    assert not authenticate(runtime, service.api_key).expires_soon(clock.now())
    assert api_keys.warn_expiring(runtime) == 0
    clock.set(key.expires_at - api_keys.WARN_BEFORE - timedelta(seconds=1))
    assert not authenticate(runtime, service.api_key).expires_soon(clock.now())
    clock.advance(1)
    assert authenticate(runtime, service.api_key).expires_soon(clock.now())
    assert api_keys.warn_expiring(runtime) == 1
    assert api_keys.warn_expiring(runtime) == 0
    [event] = events(runtime, "api-keys:expiring")
    assert (event.target_id, event.count, event.channel) == (key.key_id, 30, "system")
    clock.set(key.expires_at)
    assert refused(runtime, service.api_key)


def test_two_rotations_at_once_end_as_one_after_the_other(
        runtime: Runtime, initialized: bootstrap.InitResult,
        service: accounts.NewService) -> None:
    """With no overlap, the later rotation stops the earlier one's new key: exactly one key
    is live, as if they had run one after the other. (Without the service's row locked
    first, the later one's update does not see the key the earlier one committed meanwhile:
    two live keys, an outcome no order of the two gives.)"""
    at_once = threading.Barrier(2)

    def rotate(_: int) -> str:
        at_once.wait()
        return api_keys.rotate(runtime, system_auditor(runtime), admin_of(initialized),
                               service.id, timedelta(0)).api_key

    with ThreadPoolExecutor(2) as pool:
        new_keys = list(pool.map(rotate, range(2)))
    assert sorted(refused(runtime, key) for key in new_keys) == [False, True]
    assert refused(runtime, service.api_key)
    assert len(events(runtime, "api-keys:rotate")) == 2


def test_an_approved_pii_service_is_never_rotated_by_an_administrator(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """The review's finding: a rotation gave the admin a working PII key with no second
    person. Its key was released by a security officer; a new one takes a new service."""
    admin = admin_of(initialized)
    pii = accounts.create_service(runtime, system_auditor(runtime), admin, name="labels",
                                  grants=[Grant(Role.PII_READER, "acme")])
    approvals.decide(runtime, system_auditor(runtime),
                     Principal("acc_officer", "person", (Grant(Role.SECURITY_OFFICER, "*"),)),
                     pii.id, approve=True)
    with pytest.raises(PiiServiceKeyError):
        api_keys.rotate(runtime, system_auditor(runtime), admin, pii.id, timedelta(0))
    assert len(_keys(runtime, pii.id)) == 1
    authenticate(runtime, pii.api_key)
