"""The peers' certificates (``peers``), one pair per test session."""

from tests.notifications.peers import other_tls, tls

__all__ = ["other_tls", "tls"]
