"""Kill switches (role ``operator``, who never reads PII): stop every PII reveal and search,
stop everything on one tenant, or stop one account, at once and until cleared.

A switch is a row of ``kill_switches`` in the database every server process shares. Each
process reads the whole (small) table at most every ``CACHE_SECONDS`` of the runtime's clock
and answers requests from that reading, so a switch set through one process holds on every
other within half a second (the policy allows one); the process that sets or clears it
forgets its reading at once. A stopped request is refused with 403 ``kill_switch`` after the
caller is authenticated and authorized (a caller with no grant on the tenant still gets its
404: the switch says nothing to someone who could not have had access), and logged.

Setting and clearing are security events naming the operator and the switch.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Table, delete, select

from sellervault.access.actions import PURPOSE_ACTIONS, Action
from sellervault.access.errors import KillSwitchError, SwitchRequestError, SwitchStateError
from sellervault.access.models import KillSwitchRow
from sellervault.access.roles import Principal, is_tenant_id
from sellervault.audit.events import Outcome, TargetType
from sellervault.store.upsert import insert_into

if TYPE_CHECKING:
    from sellervault.audit.auditor import Auditor
    from sellervault.runtime import Runtime
    from sellervault.store.engine import Store

CACHE_SECONDS = 0.5
EVERYTHING = "*"
ACCOUNT_ID_LENGTH = 28  # "acc_" or "svc_" and 24 hex digits


class Scope(StrEnum):
    REVEALS = "reveals"
    """Every PII reveal and search, on every tenant (subject ``*``)."""
    TENANT = "tenant"
    """Every request on one tenant."""
    ACCOUNT = "account"
    """Every request one account makes."""


_TABLE = cast(Table, KillSwitchRow.__table__)


@dataclass(frozen=True, slots=True)
class Switches:
    """The switches set, as one reading of the table."""

    reveals: bool = False
    tenants: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    def stop(self, principal_id: str, action: Action, tenant_id: str | None) -> bool:
        return (principal_id in self.accounts
                or (tenant_id is not None and tenant_id in self.tenants)
                or (self.reveals and action in PURPOSE_ACTIONS))


def _read(store: Store) -> Switches:
    with store.transaction() as session:
        rows = session.execute(select(KillSwitchRow.scope, KillSwitchRow.subject)).all()
    return Switches(reveals=any(row.scope == Scope.REVEALS for row in rows),
                    tenants=frozenset(r.subject for r in rows if r.scope == Scope.TENANT),
                    accounts=frozenset(r.subject for r in rows if r.scope == Scope.ACCOUNT))


class SwitchBoard:
    """One process's reading of the switches (``Runtime.switches``)."""

    def __init__(self) -> None:
        self._switches = Switches()
        self._read_at = -math.inf
        self._lock = threading.Lock()

    async def check(self, rt: Runtime, principal: Principal, action: Action,
                    tenant_id: str | None) -> None:
        """Refuse (``KillSwitchError``) a request a switch stops."""
        if (await self._current(rt)).stop(principal.id, action, tenant_id):
            raise KillSwitchError()

    def stops_tenant(self, rt: Runtime, tenant_id: str) -> bool:
        """Whether the tenant's switch is set, for work no request carries (a job), from
        blocking code: everything on the tenant stops, a job's too."""
        return tenant_id in rt.store.call(self._current, rt).tenants

    async def _current(self, rt: Runtime) -> Switches:
        now = rt.clock.timestamp()
        if now - self._read_at < CACHE_SECONDS:
            return self._switches
        switches = await rt.store.offload(_read, rt.store)
        with self._lock:
            self._switches, self._read_at = switches, now
        return switches

    def forget(self) -> None:
        with self._lock:
            self._read_at = -math.inf


def _subject(scope: Scope, subject: str | None) -> str:
    """The switch's subject, checked: ``*`` for reveals, a tenant id, an account id."""
    if scope is Scope.REVEALS:
        if subject not in (None, EVERYTHING):
            raise SwitchRequestError("the reveals switch has no subject (it stops them all)")
        return EVERYTHING
    if scope is Scope.TENANT and subject is not None and is_tenant_id(subject):
        return subject
    if (scope is Scope.ACCOUNT and subject is not None and len(subject) == ACCOUNT_ID_LENGTH
            and subject[:4] in ("acc_", "svc_")):
        return subject
    raise SwitchRequestError(f"a {scope.value} switch names one {scope.value} by its id")


def _target(scope: Scope, subject: str) -> dict[str, Any]:
    kinds = {Scope.REVEALS: TargetType.PII_REVEALS, Scope.TENANT: TargetType.TENANT,
             Scope.ACCOUNT: TargetType.ACCOUNT}
    return {"target_type": kinds[scope], "target_id": subject}


def set_switch(rt: Runtime, auditor: Auditor, operator: Principal, scope: Scope,
               subject: str | None) -> None:
    """Set a switch (409 if it is set already: one event per change)."""
    subject = _subject(scope, subject)
    with rt.store.transaction() as session:
        inserted = session.execute(
            insert_into(session, _TABLE).values(scope=scope.value, subject=subject,
                                                set_by=operator.id, set_at=rt.clock.now())
            .on_conflict_do_nothing().returning(_TABLE.c.scope)).first()
        if inserted is None:
            raise SwitchStateError("this kill switch is set already")
        auditor.record(session, Action.KILLSWITCH_SET, Outcome.SUCCESS, **_target(scope, subject))
    rt.switches.forget()


def clear_switch(rt: Runtime, auditor: Auditor, scope: Scope, subject: str | None) -> None:
    """Clear a switch (404 if it is not set)."""
    subject = _subject(scope, subject)
    with rt.store.transaction() as session:
        removed = cast(CursorResult[Any], session.execute(
            delete(KillSwitchRow).where(KillSwitchRow.scope == scope.value,
                                        KillSwitchRow.subject == subject)))
        if removed.rowcount != 1:
            raise SwitchStateError("this kill switch is not set", status=404)
        auditor.record(session, Action.KILLSWITCH_CLEAR, Outcome.SUCCESS,
                       **_target(scope, subject))
    rt.switches.forget()


def list_switches(rt: Runtime, auditor: Auditor) -> list[KillSwitchRow]:
    with rt.store.transaction() as session:
        rows = list(session.scalars(select(KillSwitchRow).order_by(KillSwitchRow.set_at)))
        auditor.record(session, Action.KILLSWITCH_LIST, Outcome.SUCCESS, count=len(rows))
    return rows


