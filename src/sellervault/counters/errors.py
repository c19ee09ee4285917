"""Counter errors. Messages are fixed: they never carry a URL, a host's password or a key."""

from __future__ import annotations

from sellervault.audit.events import Reason


class CountersUnavailableError(Exception):
    """The shared counters could not be read or written (Redis down, unreachable, refusing).

    Never a silent pass: a security check that cannot read its counter cannot decide, so the
    request is refused (the web layer answers 503 with ``Retry-After``), and whoever checks
    a count treats this error as "no".
    """

    code = Reason.COUNTERS_UNAVAILABLE
    status = 503
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("a shared counter could not be reached; try again shortly")
