"""deletion.returns: a request filed with ``return: true`` first returns its scope encrypted
to the recipient's public key (JWE ECDH-ES+A256KW / A256GCM, nothing else), a part per
batch, then deletes it; the file's SHA-256 is in the request and the certificate, and only
the recipient's private key opens it. A private key, another key type or a curve outside
the list is refused when filing; a part edited afterwards is refused when fetched; a part
made with another algorithm, or a file with parts swapped, does not open."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwe
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import select, update

from sellervault.clock import ManualClock
from sellervault.deletion import certificates, execution, requests, returns
from sellervault.deletion.errors import (
    DeletionReturnNotFoundError,
    DeletionStateError,
    InvalidDeletionRequestError,
    SecondOfficerRequiredError,
)
from sellervault.deletion.models import DeletionRequest, ReturnedPart
from sellervault.records import erasure
from sellervault.records import service as records
from sellervault.records.errors import OrderNotFoundError
from sellervault.runtime import Runtime
from tests.deletion.helpers import (
    BUYER_EMAIL,
    OFFICER,
    SECOND_OFFICER,
    approve_return,
    events,
    ingest,
    officer,
)


@pytest.fixture(scope="module")
def recipient_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


def _public(key: ECKey | OKPKey) -> dict[str, Any]:
    return key.as_dict(private=False)


def _file(runtime: Runtime, key: ECKey | OKPKey | None, approve: bool = True,
          **fields: Any) -> requests.Request:
    filed = requests.file_request(
        runtime, officer(runtime), OFFICER, tenant_id="acme", requested_by="DSR 4712",
        return_data=key is not None, return_to=None if key is None else _public(key),
        **fields)
    if key is not None and approve:
        approve_return(runtime, filed.id)
    return filed


def _execute(runtime: Runtime, request_id: str) -> requests.Request:
    return execution.execute(runtime, officer(runtime), OFFICER, request_id)


def _fetch(runtime: Runtime, request_id: str) -> bytes:
    returned = requests.returned_file(runtime, officer(runtime), request_id)
    content = b"".join(returned.chunks)
    assert (len(content), hashlib.sha256(content).hexdigest()) == (returned.size,
                                                                   returned.sha256)
    return content


def test_a_buyer_is_returned_to_the_recipient_then_erased(runtime: Runtime,
                                                           recipient_key: ECKey) -> None:
    theirs = ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    ingest(runtime, "acme", 2, start=10)
    filed = _file(runtime, recipient_key, scope="buyer", buyer_email=BUYER_EMAIL)
    assert filed.return_key_id == recipient_key.thumbprint()
    done = _execute(runtime, filed.id)
    assert (done.status, done.returned) == ("completed", 3)
    content = _fetch(runtime, filed.id)
    assert hashlib.sha256(content).hexdigest() == done.return_sha256
    opened = returns.open_file(content, recipient_key.as_dict(private=True))
    assert sorted(order["AmazonOrderId"] for order in opened) == sorted(
        order["AmazonOrderId"] for order in theirs)
    assert {order["BuyerInfo"]["BuyerEmail"] for order in opened} == {BUYER_EMAIL}
    assert {order["ShippingAddress"]["Name"] for order in opened} == {
        order["ShippingAddress"]["Name"] for order in theirs}
    for order in theirs:  # then gone, as for any deletion
        with pytest.raises(OrderNotFoundError):
            runtime.store.call(records.reveal, runtime, officer(runtime), "acme",
                               order["AmazonOrderId"], "fulfillment")
    assert [e.action for e in events(runtime) if e.target_id == filed.id][:4] == [
        "deletions:create", "deletions:approve-return", "deletions:execute",
        "deletions:return"]


def test_the_certificate_names_the_returned_files_digest(runtime: Runtime,
                                                         recipient_key: ECKey) -> None:
    ingest(runtime, "acme", 1)
    filed = _file(runtime, recipient_key, scope="order",
                  amazon_order_id="902-0000000-0000000")
    done = _execute(runtime, filed.id)
    assert done.certificate_id is not None
    signed = certificates.get(runtime, officer(runtime), done.certificate_id)
    assert signed["certificate"]["returned"] == {
        "returned": True, "sha256": done.return_sha256, "orders": 1,
        "recipient_key_thumbprint": recipient_key.thumbprint(),
        "encryption": "JWE ECDH-ES+A256KW, A256GCM"}


def test_each_part_is_a_jwe_of_exactly_the_allowed_algorithms(runtime: Runtime,
                                                              recipient_key: ECKey) -> None:
    ingest(runtime, "acme", 1)
    filed = _file(runtime, recipient_key, scope="tenant")
    _execute(runtime, filed.id)
    [line] = _fetch(runtime, filed.id).decode().splitlines()
    header = json.loads(base64.urlsafe_b64decode(line.split(".")[0] + "=="))
    assert (header["alg"], header["enc"], header["kid"]) == (
        "ECDH-ES+A256KW", "A256GCM", recipient_key.thumbprint())
    assert line.count(".") == 4  # compact serialization: five parts
    other = ECKey.generate_key("P-256", private=True)
    with pytest.raises(ValueError, match="does not open"):
        returns.open_file(line.encode() + b"\n", other.as_dict(private=True))
    opened = returns.open_file(line.encode() + b"\n", recipient_key.as_dict(private=True))
    assert [order["AmazonOrderId"] for order in opened] == ["902-0000000-0000000"]  # no
    # canary of the tenant is returned (nobody's data), though the tenant held some


def test_a_part_made_with_another_algorithm_does_not_open(recipient_key: ECKey) -> None:
    body = json.dumps({"request_id": "del_x", "part": 1, "orders": []}).encode()
    direct = jwe.encrypt_compact({"alg": "ECDH-ES", "enc": "A256GCM"}, body,
                                 ECKey.import_key(_public(recipient_key)))
    with pytest.raises(ValueError, match="does not open"):
        returns.open_file(direct.encode() + b"\n", recipient_key.as_dict(private=True))


def test_a_large_scope_is_returned_in_parts_in_order(runtime: Runtime,
                                                     recipient_key: ECKey) -> None:
    """Parts of ``batch`` orders, one transaction each; the last one shorter (an empty one
    when the count divides evenly). Swapped parts do not open as a file."""
    ingest(runtime, "acme", 5, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, recipient_key, scope="buyer", buyer_email=BUYER_EMAIL)
    scope = erasure.Scope("acme", email_digest=_digest(runtime, filed.id))
    to = returns.recipient(_public(recipient_key))
    assert returns.write_parts(runtime, filed.id, to, scope, batch=2) == 5
    assert returns.write_parts(runtime, filed.id, to, scope, batch=2) == 5  # done: nothing
    with runtime.store.transaction() as session:
        lines = returns.parts(session, filed.id)
        counts = list(session.scalars(select(ReturnedPart.orders).where(
            ReturnedPart.request_id == filed.id).order_by(ReturnedPart.part)))
    assert counts == [2, 2, 1]
    key = recipient_key.as_dict(private=True)
    assert len(returns.open_file(returns.file_bytes(lines), key)) == 5
    with pytest.raises(ValueError, match="part 1 is missing or out of order"):
        returns.open_file(returns.file_bytes([lines[1], lines[0], lines[2]]), key)
    with pytest.raises(ValueError, match="ends after part 2, before its last part"):
        returns.open_file(returns.file_bytes(lines[:2]), key)  # cut at a part's end
    with pytest.raises(ValueError, match="part 4 is missing or out of order"):
        returns.open_file(returns.file_bytes([*lines, lines[2]]), key)  # past the last
    # Read back a part per transaction (a tenant's file is never held whole): the same
    # bytes, the same digest as the whole file's.
    whole = returns.file_bytes(lines)
    assert b"".join(returns.chunks(runtime.store, filed.id, per_read=1)) == whole
    assert [len(c) for c in returns.chunks(runtime.store, filed.id, per_read=2)] == [
        len(returns.file_bytes(lines[:2])), len(returns.file_bytes(lines[2:]))]
    assert returns.digest(runtime.store, filed.id) == returns.Digest(
        hashlib.sha256(whole).hexdigest(), len(whole))
    assert [len(orders) for orders in returns.open_parts(whole.splitlines(), key)] == [2, 2, 1]


def _digest(runtime: Runtime, request_id: str) -> bytes:
    with runtime.store.transaction() as session:
        row = session.get(DeletionRequest, request_id)
        assert row is not None and row.buyer_digest is not None
        return bytes.fromhex(row.buyer_digest)


def test_two_executions_at_once_write_each_part_once(runtime: Runtime,
                                                     recipient_key: ECKey) -> None:
    """On PostgreSQL both read the same last part and insert the next: one insert conflicts
    and that execution reads on; the file is each order once."""
    for round_ in range(3):
        theirs = ingest(runtime, "acme", 3, start=100 * round_, buyer_email=BUYER_EMAIL)
        filed = _file(runtime, recipient_key, scope="buyer", buyer_email=BUYER_EMAIL)
        assert _execute_at_once(runtime, filed.id) == []
        opened = returns.open_file(_fetch(runtime, filed.id),
                                   recipient_key.as_dict(private=True))
        assert sorted(o["AmazonOrderId"] for o in opened) == sorted(
            o["AmazonOrderId"] for o in theirs), round_
        mine = [e.action for e in events(runtime) if e.target_id == filed.id]
        assert mine.count("deletions:return") == 1


def _execute_at_once(runtime: Runtime, request_id: str) -> list[BaseException]:
    barrier, errors = threading.Barrier(2), []

    def run() -> None:
        barrier.wait()
        try:
            _execute(runtime, request_id)
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_a_part_edited_after_the_return_is_refused_when_fetched(
        runtime: Runtime, recipient_key: ECKey) -> None:
    ingest(runtime, "acme", 1)
    filed = _file(runtime, recipient_key, scope="order",
                  amazon_order_id="902-0000000-0000000")
    _execute(runtime, filed.id)
    with runtime.store.transaction() as session:
        session.execute(update(ReturnedPart).where(ReturnedPart.request_id == filed.id)
                        .values(jwe=ReturnedPart.jwe + "x"))
    with pytest.raises(DeletionStateError, match="no longer matches"):
        _fetch(runtime, filed.id)


def test_a_return_is_fetched_only_when_there_is_one(runtime: Runtime,
                                                    recipient_key: ECKey) -> None:
    ingest(runtime, "acme", 2)
    deletion_only = _file(runtime, None, scope="order", amazon_order_id="902-0000000-0000000")
    with pytest.raises(DeletionReturnNotFoundError):
        _fetch(runtime, deletion_only.id)
    with pytest.raises(DeletionReturnNotFoundError):  # nor approved
        approve_return(runtime, deletion_only.id)
    pending = _file(runtime, recipient_key, scope="order",
                    amazon_order_id="902-0000000-0000001")
    with pytest.raises(DeletionStateError, match="not returned yet"):
        _fetch(runtime, pending.id)


@pytest.mark.parametrize(("key", "message"), [
    ({"kty": "OKP", "crv": "X25519", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
     "not a usable public key"),  # a low-order point: no shared secret
    (ECKey.generate_key("P-256", private=True).as_dict(private=True), "private key"),
    (RSAKey.generate_key(2048, private=False).as_dict(private=False), "EC key on P-256"),
    ({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}, "EC key on P-256"),
    ({"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "OKP key on X25519"),
    ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "not a valid public key"),
    ("a key", "a JSON Web Key object"),
])
def test_a_recipient_key_that_is_not_a_public_key_agreement_key_is_refused(
        runtime: Runtime, key: object, message: str) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(InvalidDeletionRequestError, match=message) as refused:
        requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                              tenant_id="acme", requested_by="DSR", return_data=True,
                              return_to=key)
    if isinstance(key, dict):
        assert all(str(value) not in str(refused.value) for value in key.values()
                   if len(str(value)) > 4)
    assert requests.list_requests(runtime, officer(runtime)) == []


def test_return_and_its_key_come_together(runtime: Runtime, recipient_key: ECKey) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(InvalidDeletionRequestError, match="public key is required"):
        requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                              tenant_id="acme", requested_by="DSR", return_data=True)
    with pytest.raises(InvalidDeletionRequestError, match="only with return"):
        requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                              tenant_id="acme", requested_by="DSR",
                              return_to=_public(recipient_key))


def test_an_x25519_recipient_is_returned_to(runtime: Runtime) -> None:
    key = OKPKey.generate_key("X25519", private=True)
    ingest(runtime, "acme", 1)
    filed = _file(runtime, key, scope="order", amazon_order_id="902-0000000-0000000")
    _execute(runtime, filed.id)
    opened = returns.open_file(_fetch(runtime, filed.id), key.as_dict(private=True))
    assert [order["AmazonOrderId"] for order in opened] == ["902-0000000-0000000"]


def test_a_return_waits_for_a_second_officer(runtime: Runtime, recipient_key: ECKey) -> None:
    """The officer who filed it cannot approve it; until another does, executing it does
    nothing (no part written, no key destroyed); approved once."""
    ingest(runtime, "acme", 1)
    filed = _file(runtime, recipient_key, approve=False, scope="order",
                  amazon_order_id="902-0000000-0000000")
    with pytest.raises(SecondOfficerRequiredError):
        requests.approve_return(runtime, officer(runtime), OFFICER, filed.id)
    with pytest.raises(DeletionStateError, match="approve the return first"):
        _execute(runtime, filed.id)
    assert requests.get_request(runtime, officer(runtime), filed.id).status == "pending"
    assert runtime.store.call(records.reveal, runtime, officer(runtime), "acme",
                              "902-0000000-0000000", "fulfillment")
    approve_return(runtime, filed.id)
    with pytest.raises(DeletionStateError, match="not yet approved"):
        approve_return(runtime, filed.id)
    done = _execute(runtime, filed.id)
    assert (done.status, done.return_approved_by) == ("completed", SECOND_OFFICER)


def test_a_returned_file_is_discarded_seven_days_after_completion(
        runtime: Runtime, recipient_key: ECKey, clock: ManualClock) -> None:
    from sellervault.deletion.errors import DeletionReturnGoneError

    ingest(runtime, "acme", 1)
    filed = _file(runtime, recipient_key, scope="order",
                  amazon_order_id="902-0000000-0000000")
    done = _execute(runtime, filed.id)
    clock.advance((returns.RETURN_KEPT - timedelta(seconds=1)).total_seconds())
    execution.resume_all(runtime)
    assert _fetch(runtime, filed.id)  # (still there a second before)
    clock.advance(2)
    execution.resume_all(runtime)
    with pytest.raises(DeletionReturnGoneError):
        _fetch(runtime, filed.id)
    assert [e.action for e in events(runtime) if e.target_id == filed.id].count(
        "deletions:return-discard") == 1
    assert requests.get_request(runtime, officer(runtime), filed.id).return_sha256 == \
        done.return_sha256
