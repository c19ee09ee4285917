"""Security-log errors. Either one means no event can be trusted to land: requests fail
closed (503) rather than be answered without their event."""


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
