"""Record errors. Messages are fixed: no order content, no PII, no key material."""


class RecordError(Exception):
    code = "record_error"
    status = 400


class OrderNotFoundError(RecordError):
    """Also raised for an order of another tenant: its existence is not disclosed."""

    code = "not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("order not found")


class OrderErasedError(RecordError):
    code = "erased"
    status = 410

    def __init__(self) -> None:
        super().__init__("the order's personal data has been erased")


class SearchRequestError(RecordError):
    code = "invalid_search"
    status = 422
