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


class SearchRequestError(RecordError):
    code = Reason.INVALID_SEARCH
    status = 422
