"""The one permissions vocabulary: every route declares one of these, every event names one."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    # Reachable without a principal: they establish or describe one.
    SESSION_CREATE = "session:create"
    PASSWORD_CHANGE = "password:change"  # noqa: S105 - an action name, not a secret
    ENROLMENT_START = "enrolment:start"
    ENROLMENT_FINISH = "enrolment:finish"
    HEALTH_READ = "health:read"
    DOCS_READ = "docs:read"
    # Any authenticated account: who am I.
    SESSION_READ = "session:read"
    SESSION_DELETE = "session:delete"  # logout
    # Accounts and grants.
    ACCOUNTS_CREATE = "accounts:create"
    ACCOUNTS_LIST = "accounts:list"
    ACCOUNTS_LOCK = "accounts:lock"  # a temporary lock after failed sign-ins (by the system)
    ACCOUNTS_DISABLE = "accounts:disable"
    ACCOUNTS_ENABLE = "accounts:enable"
    ACCOUNTS_REENROL = "accounts:reenrol"  # a new enrolment token: a lost authenticator
    ACCOUNTS_READ = "accounts:read"  # one account, its grants and its API keys
    ACCOUNTS_OFFBOARD = "accounts:offboard"  # a leaver: disabled, every credential and grant gone
    ACCOUNTS_END_DATE = "accounts:end-date"  # set or clear the day access stops
    ACCOUNTS_NETWORKS = "accounts:networks"  # the networks one account may be used from
    GRANTS_ADD = "grants:add"
    GRANTS_REVOKE = "grants:revoke"
    API_KEYS_ROTATE = "api-keys:rotate"  # a new key; the old ones end after an overlap
    API_KEYS_REVOKE = "api-keys:revoke"
    API_KEYS_EXPIRING = "api-keys:expiring"  # a key expires within 30 days (by the system)
    # A service that may read PII waits for a second person (a security officer).
    APPROVALS_LIST = "approvals:list"
    ACCOUNTS_APPROVE = "accounts:approve"
    ACCOUNTS_REJECT = "accounts:reject"
    # Kill switches (operators).
    KILLSWITCH_SET = "killswitch:set"
    KILLSWITCH_CLEAR = "killswitch:clear"
    KILLSWITCH_LIST = "killswitch:list"
    # Alerts (security officers); raised by the system's detectors.
    ALERTS_RAISE = "alerts:raise"
    ALERTS_LIST = "alerts:list"
    ALERTS_ACKNOWLEDGE = "alerts:acknowledge"
    ALERTS_ASSIGN = "alerts:assign"
    ALERTS_CLOSE = "alerts:close"
    NOTIFICATIONS_LIST = "notifications:list"  # the outbox: pending, delivered, dead letters
    NOTIFICATIONS_RETRY = "notifications:retry"  # a dead letter sent again
    # Alert notifications (webhook, e-mail), sent by the system's job (notifications):
    # each delivery attempt (success or failed), and a notification given up (dead letter).
    NOTIFICATIONS_DELIVER = "notifications:deliver"
    NOTIFICATIONS_DEAD = "notifications:dead"
    # Orders of a tenant.
    ORDERS_INGEST = "orders:ingest"
    ORDERS_WITHHOLD = "orders:withhold"  # orders deleted on request sent again: not stored
    ORDERS_READ = "orders:read"
    ORDERS_SEARCH = "orders:search"
    ORDERS_REVEAL = "orders:reveal"
    CANARIES_LIST = "canaries:list"
    CANARIES_TOUCHED = "canaries:touched"  # a canary read, revealed or found (the system's)
    CANARIES_REFRESH = "canaries:refresh"  # a canary's dates moved forward (the system's)
    BUYERS_PSEUDONYM = "buyers:pseudonym"  # an investigator asks for one buyer's pseudonym
    # Security log.
    AUDIT_READ = "audit:read"
    AUDIT_EXPORT = "audit:export"  # the log (or a filtered part) streamed out for a SIEM
    AUDIT_RETENTION = "audit:purge"  # the retention job removed the events before a point
    AUDIT_REVIEW = "audit:review"  # a security officer or auditor reviewed the log up to an event
    # Requests that matched no route.
    HTTP_UNROUTED = "http:unrouted"
    # Requests the HTTP layer refused before the application saw them (web.refusals).
    HTTP_REFUSED = "http:refused"
    # Bootstrap commands run against the data directory.
    SYSTEM_INIT = "system:init"
    SYSTEM_SERVE = "system:serve"
    AUDIT_VERIFY = "audit:verify"
    KEYS_CREATE_TENANT = "keys:create-tenant"  # a tenant's first keys, at its first ingest
    KEYS_CREATE_SYSTEM = "keys:create-system"  # a service-wide key, at init or a start
    KEYS_ROTATE_ROOT = "keys:rotate-root"
    KEYS_ROTATE_TENANT = "keys:rotate-tenant"
    # Deletion and return requests (sellervault.deletion): filed, read, cancelled, executed,
    # and each step of an execution (the system's record of what it destroyed and checked).
    DELETIONS_CREATE = "deletions:create"
    DELETIONS_LIST = "deletions:list"  # the register, and one request
    DELETIONS_CANCEL = "deletions:cancel"
    DELETIONS_EXECUTE = "deletions:execute"
    DELETIONS_APPROVE_RETURN = "deletions:approve-return"  # a second officer's yes to a return
    DELETIONS_RETURN = "deletions:return"  # the scope exported, encrypted to the recipient
    DELETIONS_RETURN_READ = "deletions:return-read"  # the returned file fetched
    DELETIONS_RETURN_DISCARD = "deletions:return-discard"  # kept 7 days, then discarded
    DELETIONS_DESTROY_KEYS = "deletions:destroy-keys"  # the scope's data (or tenant) keys
    DELETIONS_DELETE_ROWS = "deletions:delete-rows"  # the scope's rows and index entries
    DELETIONS_VERIFY = "deletions:verify"  # nothing of the scope answers or decrypts
    DELETIONS_COMPLETE = "deletions:complete"  # done, with its certificate
    BACKUPS_CREATE = "backups:create"  # an encrypted backup written (store.backups)
    BACKUPS_RESTORE = "backups:restore"  # a backup put in place (and its erasures reapplied)
    ERASURES_REAPPLY = "erasures:reapply"  # a restored database given the erasures since
    # ... and the requests, restrictions and holds filed or changed since (one each)
    OBLIGATIONS_REAPPLY = "obligations:reapply"
    DELETIONS_DUE = "deletions:due"  # a deadline warning (24, 8, 1 hours left) or overdue
    CERTIFICATES_ISSUE = "certificates:issue"  # a completed deletion's signed certificate
    CERTIFICATES_READ = "certificates:read"  # one read, or the public key
    # Retention from the order's life (deletion.retention) and legal holds (deletion.holds).
    RETENTION_REMOVE_PII = "retention:remove-pii"  # buyer PII past 30 days after delivery
    RETENTION_REMOVE_ORDERS = "retention:remove-orders"  # orders past 18 months
    RETENTION_FORGET_TOMBSTONES = "retention:forget-tombstones"  # deleted orders' 18 months up
    HOLDS_PLACE = "holds:place"
    HOLDS_LIST = "holds:list"
    HOLDS_RELEASE = "holds:release"
    # A buyer's processing restricted until lifted (a data subject's right; security officers).
    RESTRICTIONS_PLACE = "restrictions:place"
    RESTRICTIONS_LIST = "restrictions:list"
    RESTRICTIONS_LIFT = "restrictions:lift"
    ORDERS_CORRECT = "orders:correct"  # one PII field of an order set anew (rectification)
    # Periodic jobs (sellervault.jobs): a run, by the scheduler or by hand; the schedule read.
    JOBS_RUN = "jobs:run"
    JOBS_LIST = "jobs:list"


PUBLIC_ACTIONS = frozenset(
    {Action.SESSION_CREATE, Action.PASSWORD_CHANGE, Action.ENROLMENT_START,
     Action.ENROLMENT_FINISH, Action.HEALTH_READ, Action.DOCS_READ}
)

# Decided with a stated purpose as the policy's context (the schema's ``context: { purpose }``):
# the PII operations.
PURPOSE_ACTIONS = frozenset({Action.ORDERS_REVEAL, Action.ORDERS_SEARCH})
