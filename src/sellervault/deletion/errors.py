"""What the deletion API answers when a request cannot be filed, found or changed. Messages
are fixed: no email, no order content."""

from __future__ import annotations

from sellervault.audit.events import Reason


class DeletionError(Exception):
    code = Reason.INVALID_DELETION
    status = 422


class InvalidDeletionRequestError(DeletionError):
    """The request's fields do not fit its scope (or a time is in the future)."""


class DeletionRequestNotFoundError(DeletionError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("no such deletion request")


class DeletionReturnNotFoundError(DeletionError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("this request returns no data")


class DeletionReturnGoneError(DeletionError):
    code = Reason.ERASED
    status = 410

    def __init__(self) -> None:
        super().__init__("the returned file was discarded 7 days after the request completed; "
                         "its SHA-256 stays in the request and the certificate")


class DeletionScopeNotFoundError(DeletionError):
    """An order or tenant the service does not hold (a buyer scope is never refused: that
    would tell whether a person is a buyer)."""

    code = Reason.NOT_FOUND
    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")


class SecondOfficerRequiredError(DeletionError):
    """A return approved by the officer who filed it."""

    code = Reason.SECOND_PERSON_REQUIRED
    status = 403

    def __init__(self) -> None:
        super().__init__("a security officer other than the one who filed it must approve "
                         "the return")


class DeletionStateError(DeletionError):
    code = Reason.DELETION_STATE
    status = 409


class ErasureLedgerError(Exception):
    """The erasure ledger beside the root key does not hold erasures the database has: it
    is missing, older (restored from a copy), or another vault's. Starting would risk
    reviving what was erased since, so the vault does not start."""


class LegalHoldError(DeletionError):
    """A deletion whose scope holds an order under an active legal hold: the hold prevails
    (GDPR Art. 17(3)(e): data kept for legal claims), until it is released or ends. The
    message names the holds by id (ids, never order content)."""

    code = Reason.LEGAL_HOLD
    status = 409
    NAMED = 10
    """Holds named in the message at most (a tenant may have many)."""

    def __init__(self, hold_ids: list[str]) -> None:
        more = len(hold_ids) - self.NAMED
        named = ", ".join(hold_ids[:self.NAMED]) + (f" and {more} more" if more > 0 else "")
        super().__init__(
            "the scope holds an order under an active legal hold"
            f"{f' ({named})' if hold_ids else ''}: a hold prevails over a deletion until it "
            "is released or ends (or cancel the request)")
        self.hold_ids = hold_ids


class HeldOrderErasedError(DeletionError):
    """A hold on an order a deletion request has erased already (its keys destroyed, its
    row not yet deleted): there is nothing left to keep, and an active hold on it would
    claim there is."""

    code = Reason.ERASED
    status = 410

    def __init__(self) -> None:
        super().__init__("the order is erased on a deletion request: there is nothing left "
                         "to hold")
