"""The networks one account may be used from (policy N1: "public access restricted to
approved users"), inside the deployment's allowlist (``network``), which is checked first.

An account with networks of its own signs in and authenticates only from them. From
anywhere else a sign-in fails exactly like a wrong password (same status, body and time: the
password is checked all the same, and the failure counts towards the lockout), and is logged
with the reason ``address_not_allowed`` for the investigator; a session or API key used from
elsewhere is refused (401) as if it were not live. The address is the one the deployment
sees: the TCP peer, or the client a trusted proxy forwards for (``network.client_address``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from sqlalchemy import CursorResult, update

from sellervault.access.actions import Action
from sellervault.access.roles import Principal
from sellervault.accounts.errors import AccountNotFoundError, AccountRequestError
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.network import Networks, NetworkSettingError, parse_address, parse_networks
from sellervault.runtime import Runtime

MAX_NETWORKS = 50
MAX_STORED = 2000  # the column's size


@lru_cache(maxsize=4096)
def _networks(text: str) -> Networks:
    return Networks.parse(text)


def admits(allowed: str | None, source_ip: str | None) -> bool:
    """Whether an account whose networks are ``allowed`` (stored form; None: no networks of
    its own) may be used from ``source_ip``. An unknown address is admitted only by an
    account without networks of its own."""
    if allowed is None:
        return True
    address = parse_address(source_ip) if source_ip else None
    return address is not None and address in _networks(allowed)


def canonical(entries: list[str]) -> str | None:
    """The stored form of a list of CIDRs (422 for one that does not parse); None for an
    empty list, which leaves the deployment's allowlist alone."""
    if len(entries) > MAX_NETWORKS:
        raise AccountRequestError(f"at most {MAX_NETWORKS} networks per account")
    try:
        networks = parse_networks(",".join(entries)) if entries else ()
    except NetworkSettingError as exc:
        raise AccountRequestError(str(exc)) from None
    stored = ",".join(dict.fromkeys(str(network) for network in networks)) or None
    if stored is not None and len(stored) > MAX_STORED:
        raise AccountRequestError(f"the networks take more than {MAX_STORED} characters "
                                  "written out: use fewer, wider ones")
    return stored


def set_networks(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
                 entries: list[str]) -> str | None:
    """Restrict ``account_id`` to ``entries`` (an empty list lifts the restriction); the
    stored form. An administrator's own networks are set by another (nobody lifts their own
    restriction, nor locks themselves out)."""
    if account_id == admin.id:
        raise AccountRequestError("an administrator's own networks are set by another")
    stored = canonical(entries)
    with rt.store.transaction() as session:
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id).values(allowed_networks=stored)
            .execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            raise AccountNotFoundError()
        auditor.record(session, Action.ACCOUNTS_NETWORKS, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id,
                       count=0 if stored is None else stored.count(",") + 1)
    return stored
