"""Record errors. Messages are fixed: no order content, no PII, no key material."""

from sellervault.audit.events import Reason


class RecordError(Exception):
    code = Reason.RECORD_ERROR
    status = 400


class OrderNotFoundError(RecordError):
    """Also raised for an order of another tenant: its existence is not disclosed."""

    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("order not found")


class OrderErasedError(RecordError):
    code = Reason.ERASED
    status = 410

    def __init__(self) -> None:
        super().__init__("the order's personal data has been erased")


class OrderRestrictedError(RecordError):
    """451 (RFC 7725: unavailable for legal reasons): the buyer asked for their data's
    processing to be restricted (``records.restrictions``); it is kept, not used."""

    code = Reason.PROCESSING_RESTRICTED
    status = 451

    def __init__(self) -> None:
        super().__init__("the processing of this buyer's data is restricted")


class RestrictionError(RecordError):
    code = Reason.INVALID_RESTRICTION
    status = 422


class RestrictionStateError(RestrictionError):
    code = Reason.RESTRICTION_STATE
    status = 409


class RestrictionNotFoundError(RestrictionError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self, what: str = "restriction") -> None:
        super().__init__(f"no such {what}")


class CorrectionError(RecordError):
    """A correction of a field that cannot be corrected, or with a value that cannot be it."""

    code = Reason.INVALID_CORRECTION
    status = 422


class CorrectionStateError(CorrectionError):
    """An order that may not be corrected now: under a legal hold, a canary, or an email
    correction while the buyer's processing is restricted."""

    code = Reason.CORRECTION_STATE
    status = 409


class CanaryNotCorrectedError(CorrectionStateError):
    """A correction asked of a canary: refused like any order that may not be corrected,
    and a touch of the canary (``records.corrections``: its event, the corrector locked)."""

    def __init__(self, order_id: str) -> None:
        super().__init__("this order may not be corrected")
        self.order_id = order_id


class SearchRequestError(RecordError):
    code = Reason.INVALID_SEARCH
    status = 422
