"""store.maintenance: servers share the vault; a restore has it alone, or not at all. (The
processes' side, a real ``serve`` and ``restore``: tests/cli/test_main.py.)"""

from __future__ import annotations

import pytest

from sellervault import bootstrap
from sellervault.config import Settings
from sellervault.store import maintenance


def test_servers_share_the_claim_and_a_restore_is_refused_while_one_holds_it(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    with maintenance.serving(settings), maintenance.serving(settings), pytest.raises(
            maintenance.MaintenanceError, match="server is running"), \
            maintenance.restoring(settings):  # (two servers, then a restore)
        pytest.fail("a restore began under a running server")
    with maintenance.restoring(settings):  # every server gone: it may begin
        pass


def test_no_server_starts_and_no_second_restore_begins_during_a_restore(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    with maintenance.restoring(settings):
        with pytest.raises(maintenance.MaintenanceError, match=r"restore .* under way"), \
                maintenance.serving(settings):
            pytest.fail("a server started during a restore")
        with pytest.raises(maintenance.MaintenanceError), maintenance.restoring(settings):
            pytest.fail("two restores at once")
    with maintenance.serving(settings):  # the restore finished: servers start again
        pass


def test_a_claim_is_released_when_its_holder_fails(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    with pytest.raises(RuntimeError), maintenance.serving(settings):
        raise RuntimeError("the server crashed")
    with maintenance.restoring(settings):
        pass
