"""Orders to delete: a tenant's synthetic orders, some of them one buyer's."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime

OFFICER = "acc_" + "5" * 24
SECOND_OFFICER = "acc_" + "6" * 24
BUYER_EMAIL = "dana.deleteme@marketplace.example.test"


def officer(runtime: Runtime) -> Auditor:
    return Auditor(runtime.audit, Actor(Channel.API, actor_id=OFFICER))


def ingest(runtime: Runtime, tenant: str, count: int, *, start: int = 0,
           buyer_email: str | None = None) -> list[dict[str, Any]]:
    """``count`` orders into ``tenant`` (every one of ``buyer_email``'s, if given)."""
    orders = list(synthetic_orders(count, start=start))
    if buyer_email is not None:
        for order in orders:
            order["BuyerInfo"]["BuyerEmail"] = buyer_email
    records.ingest(runtime, Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_ingest")),
                   tenant, [map_order(validate_order(order)) for order in orders])
    return orders


def events(runtime: Runtime, prefix: str = "deletions:") -> list[Any]:
    with runtime.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(
            EventRow.action.startswith(prefix)).order_by(EventRow.seq)))


def approve_return(runtime: Runtime, request_id: str) -> None:
    """The second officer's approval a request that returns data waits for."""
    from sellervault.deletion import requests
    requests.approve_return(runtime, Auditor(runtime.audit, Actor(
        Channel.API, actor_id=SECOND_OFFICER)), SECOND_OFFICER, request_id)


def forged_certificate(signed: dict[str, Any]) -> str:
    """A signed certificate's file with a forged scope and counts shown first and the
    genuine certificate after, in one object: keys twice (a reviewer's forgery)."""
    genuine = json.dumps(signed["certificate"], sort_keys=True)
    forged = ('{"scope":{"kind":"tenant","tenant":"acme","amazon_order_id":null,"buyer":null},'
              '"counts":{"orders":250000,"data_keys":250000,"tenant_keys":2},')
    tail = json.dumps({k: signed[k] for k in ("signature", "algorithm", "key_id")})
    return '{"certificate":' + forged + genuine[1:] + "," + tail[1:]
