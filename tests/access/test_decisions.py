"""access.decisions: the authorization decision, as the web layer and account changes receive it.

- Every role against every action: exactly the role's actions are ALLOWED; the rest FORBIDDEN
  on a tenant the role reaches, and on a system action.
- The tenant rule: a refusal on a tenant the principal holds no grant on at all (neither that
  tenant nor ``*``) is NOT_FOUND, whatever the action or purpose, so the answer does not tell
  an existing tenant from a missing one; a grant of any role on the tenant makes it FORBIDDEN.
- Purposes, for the PII operations only: none is PURPOSE_REQUIRED, one outside the vocabulary
  (compared exactly) PURPOSE_NOT_PERMITTED, a permitted one decided by the policy.
- Separation of duties: never ``pii-reader`` with ``admin`` or ``operator`` (when granted, and
  at every request); an account's creator is never its second person.

The attacker here holds some account and asks for what it should not have: the wrong role,
the wrong tenant, the wrong purpose, or a grant it has lost.
"""

from __future__ import annotations

import re
from itertools import combinations

import pytest

from sellervault.access import decisions
from sellervault.access.actions import PUBLIC_ACTIONS, PURPOSE_ACTIONS, Action
from sellervault.access.decisions import (
    NEVER_WITH_PII,
    PERSONS_ONLY,
    Decision,
    decide,
    decide_approval,
    decide_grants,
    is_permitted_purpose,
    require_permitted_purpose,
)
from sellervault.access.errors import PurposeNotPermittedError
from sellervault.access.policy import policy_text, schema_text
from sellervault.access.roles import ALL_TENANTS, GLOBAL_ROLES, Grant, Principal, Role
from sellervault.records.registry import Purpose
from tests.access.test_policy import ALLOWED, EVERY_ACCOUNT  # what each role may do

TENANT_ACTIONS = [Action.ORDERS_INGEST, Action.ORDERS_READ, Action.ORDERS_SEARCH,
                  Action.ORDERS_REVEAL, Action.CANARIES_LIST, Action.BUYERS_PSEUDONYM]
SYSTEM_ACTIONS = [Action.SESSION_READ, Action.SESSION_DELETE, Action.ACCOUNTS_CREATE,
                  Action.ACCOUNTS_LIST, Action.ACCOUNTS_DISABLE, Action.ACCOUNTS_ENABLE,
                  Action.KILLSWITCH_SET, Action.KILLSWITCH_CLEAR, Action.KILLSWITCH_LIST,
                  Action.APPROVALS_LIST, Action.ACCOUNTS_APPROVE, Action.ACCOUNTS_REJECT,
                  Action.AUDIT_READ, Action.ACCOUNTS_REENROL,
                  Action.ACCOUNTS_READ, Action.ACCOUNTS_OFFBOARD, Action.ACCOUNTS_END_DATE,
                  Action.ACCOUNTS_NETWORKS, Action.GRANTS_ADD, Action.GRANTS_REVOKE,
                  Action.API_KEYS_ROTATE, Action.API_KEYS_REVOKE,
                  Action.ALERTS_LIST, Action.ALERTS_ACKNOWLEDGE, Action.ALERTS_ASSIGN,
                  Action.ALERTS_CLOSE, Action.AUDIT_REVIEW, Action.AUDIT_EXPORT,
                  Action.DELETIONS_CREATE, Action.DELETIONS_LIST, Action.DELETIONS_CANCEL,
                  Action.DELETIONS_EXECUTE, Action.DELETIONS_RETURN_READ,
                  Action.DELETIONS_APPROVE_RETURN, Action.HOLDS_PLACE,
                  Action.HOLDS_LIST, Action.HOLDS_RELEASE, Action.CERTIFICATES_READ,
                  Action.NOTIFICATIONS_LIST, Action.NOTIFICATIONS_RETRY,
                  Action.RESTRICTIONS_PLACE, Action.RESTRICTIONS_LIST,
                  Action.RESTRICTIONS_LIFT, Action.ORDERS_CORRECT]
# Actions no request is decided for (events of the HTTP layer and of bootstrap commands):
# the policy names none of them, so nobody is allowed them.
UNDECIDED_ACTIONS = sorted(set(Action) - set(TENANT_ACTIONS) - set(SYSTEM_ACTIONS)
                           - PUBLIC_ACTIONS)

TENANT_ROLES = sorted(set(Role) - GLOBAL_ROLES)
NOT_PERMITTED = ["marketing", "", "Fulfillment", "FULFILLMENT", "fulfillment ", " fulfillment",
                 "fulfilment", "fulfillment,marketing", "fulfillment\x00", "p" * 64]


def _principal(*grants: tuple[Role, str], account_id: str = "acc_test") -> Principal:
    return Principal(account_id, "person", tuple(Grant(role, tenant) for role, tenant in grants))


def _holding(role: Role, tenant: str = "acme") -> Principal:
    """An account holding ``role`` on ``tenant`` (a service-wide role: on every tenant)."""
    return _principal((role, ALL_TENANTS if role in GLOBAL_ROLES else tenant))


def _ask(principal: Principal, action: Action, tenant: str = "acme",
         purpose: str | None = "fulfillment") -> Decision:
    """The decision as the guard asks it: a tenant for a tenant's action, the purpose stated
    for a PII operation."""
    if action in TENANT_ACTIONS:
        return decide(principal, action, tenant, purpose if action in PURPOSE_ACTIONS else None)
    return decide(principal, action)


# --- every role against every action ------------------------------------------------------

@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_allowed_exactly_its_actions(role: Role) -> None:
    principal = _holding(role)
    for action in [*TENANT_ACTIONS, *SYSTEM_ACTIONS]:
        expected = (Decision.ALLOWED if action in ALLOWED[role] | EVERY_ACCOUNT
                    else Decision.FORBIDDEN)
        assert _ask(principal, action) is expected, (role, action)


@pytest.mark.parametrize("role", list(Role))
def test_no_role_is_allowed_an_action_no_request_is_decided_for(role: Role) -> None:
    principal = _holding(role)
    for action in UNDECIDED_ACTIONS:
        assert decide(principal, action) is Decision.FORBIDDEN, (role, action)
        assert decide(principal, action, "acme", "fulfillment") is Decision.FORBIDDEN


def test_an_account_without_grants_may_only_see_itself() -> None:
    nobody = _principal()
    for action in SYSTEM_ACTIONS:
        assert _ask(nobody, action) is (Decision.ALLOWED if action in EVERY_ACCOUNT
                                        else Decision.FORBIDDEN)
    for action in TENANT_ACTIONS:  # it holds no grant on any tenant
        assert _ask(nobody, action) is Decision.NOT_FOUND


def test_only_the_allowed_decision_allows() -> None:
    assert [decision for decision in Decision if decision.allowed] == [Decision.ALLOWED]


# --- tenants: a grant, no grant, '*' ------------------------------------------------------

@pytest.mark.parametrize("role", TENANT_ROLES)
def test_a_tenant_grant_reaches_its_tenant_only(role: Role) -> None:
    principal = _holding(role, "acme")
    for action in ALLOWED[role]:
        assert _ask(principal, action, tenant="acme") is Decision.ALLOWED
        assert _ask(principal, action, tenant="globex") is Decision.NOT_FOUND


@pytest.mark.parametrize("role", TENANT_ROLES)
def test_a_grant_on_every_tenant_reaches_every_tenant(role: Role) -> None:
    principal = _principal((role, ALL_TENANTS))
    for tenant in ("acme", "globex", "a" * 63):
        for action in TENANT_ACTIONS:
            # PII is granted tenant by tenant: pii-reader on "*" reaches no tenant.
            reaches = action in ALLOWED[role] and role is not Role.PII_READER
            expected = Decision.ALLOWED if reaches else Decision.FORBIDDEN
            assert _ask(principal, action, tenant=tenant) is expected, (role, action, tenant)


@pytest.mark.parametrize("role", TENANT_ROLES)
@pytest.mark.parametrize("purpose", [None, "fulfillment", "marketing"])
def test_a_tenant_without_a_grant_is_not_found_whatever_is_asked(role: Role,
                                                                 purpose: str | None) -> None:
    """Attacker's side: probing another tenant with any action, purpose or none, learns only
    ``NOT_FOUND``: the same answer as for a tenant that does not exist."""
    principal = _holding(role, "acme")
    for action in TENANT_ACTIONS:
        assert _ask(principal, action, tenant="globex", purpose=purpose) is Decision.NOT_FOUND
        assert (_ask(principal, action, tenant="no-such-tenant", purpose=purpose)
                is Decision.NOT_FOUND)


@pytest.mark.parametrize("role", TENANT_ROLES)
def test_a_grant_of_any_role_on_the_tenant_makes_a_refusal_forbidden(role: Role) -> None:
    """The tenant's data is acknowledged to whoever holds any grant on it: what its role may
    not do there is FORBIDDEN, not NOT_FOUND."""
    principal = _holding(role, "acme")
    for action in set(TENANT_ACTIONS) - ALLOWED[role]:
        assert _ask(principal, action, tenant="acme") is Decision.FORBIDDEN, (role, action)


@pytest.mark.parametrize("role", sorted(GLOBAL_ROLES))
def test_a_service_wide_role_is_never_told_not_found(role: Role) -> None:
    principal = _holding(role)
    for action in TENANT_ACTIONS:
        assert _ask(principal, action, tenant="globex") is not Decision.NOT_FOUND


def test_a_system_action_is_never_not_found() -> None:
    for principal in (_principal(), _holding(Role.ANALYST), _holding(Role.INGEST)):
        for action in SYSTEM_ACTIONS:
            assert decide(principal, action) is not Decision.NOT_FOUND


def test_a_tenant_action_asked_without_a_tenant_is_forbidden() -> None:
    """A route that forgot its tenant gets no answer about every tenant (nor a 404)."""
    reader = _principal((Role.PII_READER, ALL_TENANTS), (Role.INGEST, ALL_TENANTS))
    for action in TENANT_ACTIONS:
        assert decide(reader, action, None, "fulfillment") is Decision.FORBIDDEN


# --- purposes -----------------------------------------------------------------------------

@pytest.mark.parametrize("action", sorted(PURPOSE_ACTIONS))
def test_a_pii_operation_without_a_purpose_needs_one(action: Action) -> None:
    reader = _holding(Role.PII_READER)
    assert decide(reader, action, "acme") is Decision.PURPOSE_REQUIRED
    assert decide(reader, action, "acme", None) is Decision.PURPOSE_REQUIRED


@pytest.mark.parametrize("purpose", NOT_PERMITTED)
@pytest.mark.parametrize("action", sorted(PURPOSE_ACTIONS))
def test_a_pii_operation_for_a_purpose_outside_the_vocabulary_is_refused(
        action: Action, purpose: str) -> None:
    """Compared exactly: no case folding, no trimming, one purpose."""
    reader = _holding(Role.PII_READER)
    assert decide(reader, action, "acme", purpose) is Decision.PURPOSE_NOT_PERMITTED
    assert not is_permitted_purpose(purpose)


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize("action", sorted(PURPOSE_ACTIONS))
def test_every_permitted_purpose_allows_the_pii_role(action: Action, purpose: Purpose) -> None:
    assert is_permitted_purpose(purpose.value)
    assert decide(_holding(Role.PII_READER), action, "acme", purpose.value) is Decision.ALLOWED


@pytest.mark.parametrize("role", sorted(set(Role) - {Role.PII_READER}))
@pytest.mark.parametrize("action", sorted(PURPOSE_ACTIONS))
def test_a_permitted_purpose_does_not_make_another_role_a_pii_reader(role: Role,
                                                                    action: Action) -> None:
    """Attacker's side: the wrong role with the right purpose is FORBIDDEN; with a purpose
    outside the vocabulary the purpose is refused first (on a tenant it holds a grant on)."""
    principal = _holding(role)
    for purpose in Purpose:
        assert decide(principal, action, "acme", purpose.value) is Decision.FORBIDDEN
    assert decide(principal, action, "acme", "marketing") is Decision.PURPOSE_NOT_PERMITTED
    assert decide(principal, action, "acme") is Decision.PURPOSE_REQUIRED


@pytest.mark.parametrize("purpose", [None, "marketing", "fulfillment"])
def test_a_purpose_is_not_part_of_the_question_for_other_actions(purpose: str | None) -> None:
    """A masked read, an ingest: a stated purpose neither allows nor refuses them."""
    assert decide(_holding(Role.ANALYST), Action.ORDERS_READ, "acme", purpose) is Decision.ALLOWED
    assert (decide(_holding(Role.ANALYST), Action.ORDERS_INGEST, "acme", purpose)
            is Decision.FORBIDDEN)
    assert decide(_holding(Role.ADMIN), Action.ACCOUNTS_LIST, None, purpose) is Decision.ALLOWED


def test_the_service_check_of_a_purpose_refuses_what_the_decision_refuses() -> None:
    for purpose in Purpose:
        require_permitted_purpose(purpose.value)
    for refused in [None, *NOT_PERMITTED]:
        with pytest.raises(PurposeNotPermittedError):
            require_permitted_purpose(refused)


def test_purpose_actions_are_those_the_policy_decides_with_a_purpose() -> None:
    """``PURPOSE_ACTIONS`` is the schema's list of actions whose context holds a purpose."""
    declared: set[str] = set()
    for names, context in re.findall(r'action\s+((?:"[^"]+"\s*,?\s*)+)appliesTo\s*\{[^;]*?'
                                     r'context:\s*\{([^}]*)\}', schema_text()):
        if "purpose" in context:
            declared |= set(re.findall(r'"([^"]+)"', names))
    assert declared == {action.value for action in PURPOSE_ACTIONS}


def test_a_purpose_outside_the_vocabulary_never_reaches_the_policy() -> None:
    """Free text (up to 64 characters of any header) is refused before Cedar is asked, so it
    cannot fill the decision cache and push out the answers real requests need."""
    reader = _holding(Role.PII_READER)
    before = decisions._decide.cache_info().currsize
    for n in range(50):
        assert (decide(reader, Action.ORDERS_REVEAL, "acme", f"probe-{n}")
                is Decision.PURPOSE_NOT_PERMITTED)
    assert decisions._decide.cache_info().currsize == before


# --- the cache: the question is the whole principal ---------------------------------------

def test_a_grant_withdrawn_is_a_different_question() -> None:
    """Decisions are cached; the key is the whole principal, grants included, so the same
    account with a grant taken away is refused at once, never answered from the cache."""
    before = _principal((Role.PII_READER, "acme"), account_id="acc_cached")
    after = _principal((Role.ANALYST, "acme"), account_id="acc_cached")
    gone = _principal(account_id="acc_cached")
    assert decide(before, Action.ORDERS_REVEAL, "acme", "fulfillment") is Decision.ALLOWED
    assert decide(after, Action.ORDERS_REVEAL, "acme", "fulfillment") is Decision.FORBIDDEN
    assert decide(gone, Action.ORDERS_REVEAL, "acme", "fulfillment") is Decision.NOT_FOUND


# --- separation of duties ------------------------------------------------------------------

@pytest.mark.parametrize(("first", "second"), list(combinations(list(Role), 2)))
def test_pii_reader_is_never_held_with_admin_or_operator(first: Role, second: Role) -> None:
    grants = [_grant(first), _grant(second)]
    conflict = {first, second} & NEVER_WITH_PII and Role.PII_READER in {first, second}
    assert decide_grants(grants) is (Decision.SEPARATION_OF_DUTIES if conflict
                                     else Decision.ALLOWED), (first, second)


def _grant(role: Role, tenant: str = "acme") -> Grant:
    return Grant(role, ALL_TENANTS if role in GLOBAL_ROLES else tenant)


def test_separation_of_duties_holds_on_any_tenant_and_among_other_grants() -> None:
    assert decide_grants([]) is Decision.ALLOWED
    assert decide_grants([Grant(Role.PII_READER, "acme"), Grant(Role.PII_READER, "globex"),
                          Grant(Role.ANALYST, ALL_TENANTS)]) is Decision.ALLOWED
    for pii in (Grant(Role.PII_READER, "globex"), Grant(Role.PII_READER, "acme")):
        for other in NEVER_WITH_PII:
            grants = [Grant(Role.INGEST, "acme"), Grant(other, ALL_TENANTS), pii]
            assert decide_grants(grants) is Decision.SEPARATION_OF_DUTIES
            assert decide_grants(iter(grants)) is Decision.SEPARATION_OF_DUTIES


@pytest.mark.parametrize("role", sorted(NEVER_WITH_PII))
def test_an_account_holding_both_anyway_never_reads_pii(role: Role) -> None:
    """The decision at each request backs the rule at granting up (the Cedar forbid): such an
    account keeps what pii-reader gives short of PII, and loses every PII operation."""
    both = _principal((role, ALL_TENANTS), (Role.PII_READER, "acme"))
    for action in sorted(PURPOSE_ACTIONS):
        for purpose in Purpose:
            assert decide(both, action, "acme", purpose.value) is Decision.FORBIDDEN
    assert decide(both, Action.ORDERS_READ, "acme") is Decision.ALLOWED


def test_the_policy_forbids_pii_to_exactly_the_roles_never_held_with_it() -> None:
    rule = policy_text().split("service-wide-roles-never-read-pii", 1)[1]
    listed = set(re.findall(r'"([a-z-]+)"', rule.split("when", 1)[1].split(";", 1)[0]))
    assert listed == {role.value for role in NEVER_WITH_PII}


def test_an_accounts_creator_is_never_its_second_person() -> None:
    creator = _principal((Role.SECURITY_OFFICER, ALL_TENANTS), account_id="acc_creator")
    other = _principal((Role.SECURITY_OFFICER, ALL_TENANTS), account_id="acc_other")
    assert decide_approval(creator, "acc_creator") is Decision.SECOND_PERSON_REQUIRED
    assert decide_approval(other, "acc_creator") is Decision.ALLOWED
    assert decide_approval(other, None) is Decision.ALLOWED  # (created by `init`: nobody)


def test_a_service_is_never_a_second_person() -> None:
    """A service's API key went to the administrator who made it: one holding
    security-officer (made before services were refused it) would let that administrator
    approve their own PII service."""
    service = Principal("svc_officer", "service", (Grant(Role.SECURITY_OFFICER, ALL_TENANTS),))
    assert decide_approval(service, "acc_creator") is Decision.SECOND_PERSON_REQUIRED


@pytest.mark.parametrize("role", sorted(PERSONS_ONLY))
def test_admin_and_security_officer_are_for_persons_only(role: Role) -> None:
    grants = [Grant(role, ALL_TENANTS)]
    assert decide_grants(grants, "person") is Decision.ALLOWED
    assert decide_grants(grants, "service") is Decision.PERSONS_ONLY_ROLE
    assert decide_grants([Grant(Role.OPERATOR, ALL_TENANTS), Grant(Role.AUDITOR, ALL_TENANTS),
                          Grant(Role.INGEST, "acme")], "service") is Decision.ALLOWED


@pytest.mark.parametrize("role", sorted(PERSONS_ONLY))
def test_a_service_holding_a_persons_only_role_anyway_may_do_nothing(role: Role) -> None:
    """Made before the rule: the policy's guardrail leaves it inert, every action refused,
    those of its other grants too."""
    service = Principal("svc_old", "service", (Grant(role, ALL_TENANTS),
                                               Grant(Role.ANALYST, "acme")))
    person = Principal("acc_same", "person", service.grants)
    for action in (ALLOWED[role] | ALLOWED[Role.ANALYST]) - EVERY_ACCOUNT:
        assert not _ask(service, action).allowed, action
        assert _ask(person, action).allowed, action


def test_pii_reader_is_granted_on_named_tenants_only() -> None:
    """``*`` is for roles without PII: an analyst or ingest service may cover every tenant,
    a PII reader is granted each seller's buyers one tenant at a time."""
    assert decide_grants([Grant(Role.PII_READER, ALL_TENANTS)]) is Decision.PII_ON_EVERY_TENANT
    assert decide_grants([Grant(Role.ANALYST, ALL_TENANTS), Grant(Role.PII_READER, "acme"),
                          Grant(Role.PII_READER, ALL_TENANTS)]) is Decision.PII_ON_EVERY_TENANT
    assert decide_grants([Grant(Role.ANALYST, ALL_TENANTS), Grant(Role.INGEST, ALL_TENANTS),
                          Grant(Role.PII_READER, "acme")]) is Decision.ALLOWED
