"""Budgets: how many times one principal may do something per window (fixed windows), counted
in the database so every server process enforces one count.

A search by a buyer's email, phone or postal code confirms or maps PII (looping over every ZIP
code maps each order to its postal code), so each principal gets a budget of them. Taking one
unit is a single statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE used < limit RETURNING):
concurrent requests cannot both take the last unit, under READ COMMITTED or anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, case, or_
from sqlalchemy.orm import Session

from sellervault.access.errors import BudgetExhaustedError
from sellervault.access.models import BudgetRow
from sellervault.store.upsert import insert_into

_BUDGETS = cast(Table, BudgetRow.__table__)


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    limit: int
    window_seconds: int


def take(session: Session, budget: Budget, principal_id: str, now: datetime) -> int:
    """Take one unit of ``budget`` for ``principal_id`` in the caller's transaction (it is
    given back if the transaction rolls back); the units used in this window, or
    ``BudgetExhaustedError`` with the seconds until the window ends."""
    moment = int(now.timestamp())
    window = moment - moment % budget.window_seconds
    proposed = insert_into(session, _BUDGETS).values(
        principal_id=principal_id, budget=budget.name, window_start=window, used=1)
    statement = proposed.on_conflict_do_update(
        index_elements=[_BUDGETS.c.principal_id, _BUDGETS.c.budget],
        # A window only moves forward: a process whose clock is behind counts against the
        # newer window another process opened, instead of starting it again at 1.
        set_={"used": case((_BUDGETS.c.window_start < window, 1), else_=_BUDGETS.c.used + 1),
              "window_start": case((_BUDGETS.c.window_start < window, window),
                                   else_=_BUDGETS.c.window_start)},
        where=or_(_BUDGETS.c.window_start < window, _BUDGETS.c.used < budget.limit),
    ).returning(_BUDGETS.c.used)
    used = session.execute(statement).scalar()
    if used is None:
        raise BudgetExhaustedError(retry_after=window + budget.window_seconds - moment)
    return int(used)
