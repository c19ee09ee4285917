"""deletion.obligations: the requests, restrictions and holds in the erasure ledger. Applied
at a start, an entry only moves a row forward and never breaks the one active restriction a
buyer may have; a database holding obligations the file lacks does not start, as for
erasures. (The restore itself: tests/store/test_backups.py.)"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from sellervault import bootstrap
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.deletion import execution, holds, ledger, requests
from sellervault.deletion.errors import ErasureLedgerError
from sellervault.deletion.models import CertificateRow, DeletionRequest, ErasureApplied
from sellervault.records import restrictions
from sellervault.records.models import Restriction
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, events, ingest, officer


def test_a_database_with_obligations_the_file_lacks_does_not_start(
        runtime: Runtime, settings: Settings, clock: ManualClock) -> None:
    """No erasure at all, only a request, a restriction and a hold: the ledger lost (or an
    older copy put back) would let a restore drop them unnoticed."""
    orders = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                          tenant_id="acme", requested_by="DSR 8001")
    restrictions.restrict(runtime, officer(runtime), OFFICER, "acme", BUYER_EMAIL, "DSR 8002")
    holds.place(runtime, officer(runtime), OFFICER, "acme", orders[0]["AmazonOrderId"],
                "case 8003", clock.now().replace(year=clock.now().year + 1))
    ledger.path_of(settings).unlink()
    with pytest.raises(ErasureLedgerError, match="lacks 3 entries"):
        ledger.reapply(runtime)
    with pytest.raises(bootstrap.BootstrapError, match="lacks 3 entries"):
        bootstrap.open_runtime(settings, clock)


def test_an_entry_moves_rows_forward_only(runtime: Runtime, clock: ManualClock) -> None:
    """Entries a database lacks whose rows are there, or have moved on (a transaction that
    rolled back after writing ahead, the buyer restricted again since): nothing undone,
    and no second active restriction of the buyer; recorded, so applied once."""
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    first = restrictions.restrict(runtime, officer(runtime), OFFICER, "acme", BUYER_EMAIL,
                                  "DSR 8101")
    restrictions.lift(runtime, officer(runtime), OFFICER, first.id)
    clock.advance(60)
    again = restrictions.restrict(runtime, officer(runtime), OFFICER, "acme", BUYER_EMAIL,
                                  "DSR 8102")
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                                  tenant_id="acme", requested_by="DSR 8103")
    requests.cancel_request(runtime, officer(runtime), OFFICER, filed.id)
    with runtime.store.transaction() as session:
        session.execute(delete(Restriction).where(Restriction.id == first.id))
        session.execute(delete(ErasureApplied))
    assert ledger.reapply(runtime) == 5
    listed = restrictions.list_restrictions(runtime, officer(runtime))
    assert [(r.id, r.lifted_at) for r in listed] == [(again.id, None)]
    assert requests.get_request(runtime, officer(runtime), filed.id).status == "cancelled"
    assert events(runtime, "obligations:") == []
    assert ledger.reapply(runtime) == 0


def test_a_completion_whose_certificate_was_never_signed_is_certified_not_left_without(
        runtime: Runtime) -> None:
    """The signing failed (here: the certificates table gone for a moment) and the
    completion rolled back; whatever the ledger holds, the next start must not mark the
    request completed with no certificate for good: the execution signs it."""
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                  tenant_id="acme", buyer_email=BUYER_EMAIL,
                                  requested_by="DSR 7100")
    with runtime.store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE certificates RENAME TO certificates_away"))
    try:
        with pytest.raises(DBAPIError):
            execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    finally:
        with runtime.store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE certificates_away RENAME TO certificates"))
    stopped = requests.get_request(runtime, officer(runtime), filed.id)
    assert (stopped.status, stopped.step) == ("executing", execution.VERIFIED)
    ledger.reapply(runtime)  # (what the next start does)
    assert execution.resume_all(runtime) == 1
    done = requests.get_request(runtime, officer(runtime), filed.id)
    assert (done.status, done.orders) == ("completed", 2)
    assert done.certificate_id is not None


def test_a_restored_completion_without_its_certificate_is_certified_again(
        runtime: Runtime) -> None:
    """A backup from before the certificate: the entry brings the request back to its
    verified step with its counts, and the job signs a certificate of them."""
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                  tenant_id="acme", buyer_email=BUYER_EMAIL,
                                  requested_by="DSR 7101")
    done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    with runtime.store.transaction() as session:  # (as a backup from before would hold it)
        session.execute(delete(CertificateRow))
        session.execute(update(DeletionRequest).values(status="executing", step="verified",
                                                       completed_at=None))
        session.execute(delete(ErasureApplied))
    ledger.reapply(runtime)
    assert execution.resume_all(runtime) == 1
    again = requests.get_request(runtime, officer(runtime), filed.id)
    assert (again.status, again.orders, again.data_keys) == ("completed", done.orders,
                                                             done.data_keys)
    assert again.certificate_id is not None
