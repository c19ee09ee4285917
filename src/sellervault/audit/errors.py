"""Security-log errors. A ``LogError`` means no event can be trusted to land: requests fail
closed (503) rather than be answered without their event. A ``ReviewError`` is an answer."""

from sellervault.audit.events import Reason


class LogError(Exception):
    pass


class ChainHeadMissingError(LogError):
    """The chain's head row is gone (or was reset) in an initialised vault. Only ``init``
    starts a chain; anything else finding no head refuses to write, because a chain started
    again from nothing would hide every event before it."""

    def __init__(self) -> None:
        super().__init__("the security log's head is missing; the log must be investigated")


class ChainAlreadyStartedError(LogError):
    """``init`` asked to start a chain in a database that already holds one."""

    def __init__(self) -> None:
        super().__init__("the security log already has a head")


class LogKeyMissingError(LogError):
    """The security-log key is gone from an initialised vault. A new one would MAC every later
    event under a key the earlier events do not verify with: nothing is written."""

    def __init__(self) -> None:
        super().__init__("the security log's key is missing; the log must be investigated")


class ReviewError(Exception):
    """A review of the log that cannot be recorded (answered, not failed closed)."""

    code = Reason.REVIEW_STATE
    status = 409


class ReviewBeyondTheLogError(ReviewError):
    code = Reason.INVALID_REVIEW
    status = 422

    def __init__(self) -> None:
        super().__init__("the log has no event with that number yet")


class ReviewStateError(ReviewError):
    def __init__(self) -> None:
        super().__init__("a review must go further than the last one (recorded meanwhile?)")
