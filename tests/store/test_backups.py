"""store.backups with deletion.ledger: a backup is one age-encrypted file holding the
database and the data directory's files, never keys/ nor the checkpoint file; it opens with
the vault's backup identity (or an operator's own recipient) only, and a byte changed makes
it unrestorable. Back up, delete a buyer and a tenant, restore: the deleted orders stay gone
(the erasures since the backup are applied again at the first start), the rest reads as
before; without the erasure ledger the same restore would bring them back. The
obligations filed or changed since the backup (deletion requests, restrictions, legal
holds) are there after it as they were before it."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
from pyrage import x25519

from sellervault import bootstrap
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.deletion import deadlines, execution, holds, ledger, requests, retention
from sellervault.records import restrictions
from sellervault.records import service as records
from sellervault.records.errors import (
    OrderErasedError,
    OrderNotFoundError,
    OrderRestrictedError,
)
from sellervault.runtime import Runtime
from sellervault.store import backups
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, events, ingest, officer


@contextmanager
def _opened(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    runtime = bootstrap.open_runtime(settings, clock)
    try:
        yield runtime
    finally:
        runtime.close()


def _reveal(runtime: Runtime, tenant: str, order_id: str) -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  tenant, order_id, "fulfillment")
    return revealed


def _delete(runtime: Runtime, **scope: Any) -> None:
    filed = requests.file_request(runtime, officer(runtime), OFFICER,
                                  requested_by="DSR 6001", **scope)
    assert execution.execute(runtime, officer(runtime), OFFICER, filed.id).status == \
        "completed"


@pytest.fixture
def vault(settings: Settings, initialized: bootstrap.InitResult,
          clock: ManualClock) -> dict[str, Any]:
    """A vault with a buyer's orders, another buyer's, and a second tenant."""
    with _opened(settings, clock) as runtime:
        theirs = ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
        others = ingest(runtime, "acme", 2, start=10)
        globex = ingest(runtime, "globex", 2, start=20)
    return {"theirs": theirs, "others": others, "globex": globex}


def test_a_restore_never_brings_deleted_orders_back(settings: Settings, clock: ManualClock,
                                                    vault: dict[str, Any],
                                                    tmp_path: Path) -> None:
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        _delete(runtime, scope="buyer", tenant_id="acme", buyer_email=BUYER_EMAIL)
        _delete(runtime, scope="tenant", tenant_id="globex")
    restored = bootstrap.restore_backup(settings, backup_file, clock=clock)
    assert restored.reapplied >= 3  # the buyer's keys, its rows, the tenant
    with _opened(settings, clock) as runtime:
        for order in vault["theirs"]:
            with pytest.raises(OrderNotFoundError):
                _reveal(runtime, "acme", order["AmazonOrderId"])
        for order in vault["globex"]:
            with pytest.raises(OrderNotFoundError):
                _reveal(runtime, "globex", order["AmazonOrderId"])
        assert _reveal(runtime, "acme", vault["others"][0]["AmazonOrderId"])[
            "BuyerInfo"]["BuyerEmail"] == vault["others"][0]["BuyerInfo"]["BuyerEmail"]
        with runtime.store.transaction() as session:
            assert runtime.keyring.data_keys_held(session, "globex") == 0
            assert runtime.keyring.data_keys_held(session, "acme") == 2 + \
                runtime.settings.canaries_per_tenant
    again = bootstrap.restore_backup(settings, backup_file, clock=clock)  # (idempotent)
    assert again.reapplied == restored.reapplied


def test_without_the_ledger_the_same_restore_would_revive_them(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path) -> None:
    """The control: the ledger is what keeps a deleted order deleted."""
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        _delete(runtime, scope="order", tenant_id="acme",
                amazon_order_id=vault["theirs"][0]["AmazonOrderId"])
    ledger.path_of(settings).unlink()
    assert bootstrap.restore_backup(settings, backup_file, clock=clock).reapplied == 0
    with _opened(settings, clock) as runtime:
        assert _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])


def _obligations(runtime: Runtime, vault: dict[str, Any]) -> list[str]:
    """A buyer's deletion request, the buyer restricted, another buyer's order held: their
    ids."""
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                  tenant_id="acme", buyer_email=BUYER_EMAIL,
                                  requested_by="DSR 7001")
    restricted = restrictions.restrict(runtime, officer(runtime), OFFICER, "acme",
                                       BUYER_EMAIL, "ticket 7002")
    held = holds.place(runtime, officer(runtime), OFFICER, "acme",
                       vault["others"][0]["AmazonOrderId"], "case 7003",
                       runtime.clock.now() + timedelta(days=900))
    return [filed.id, restricted.id, held.id]


def _register(runtime: Runtime) -> list[Any]:
    """The requests, restrictions and holds as the register lists them."""
    return [requests.list_requests(runtime, officer(runtime)),
            restrictions.list_restrictions(runtime, officer(runtime)),
            holds.list_holds(runtime, officer(runtime))]


def test_a_restore_keeps_the_requests_restrictions_and_holds_filed_since(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path) -> None:
    """Without the ledger's obligations the request's deadline would pass unwarned, the
    restricted buyer's orders read again and the held order go to retention."""
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        ids = _obligations(runtime, vault)
        before = _register(runtime)
    assert bootstrap.restore_backup(settings, backup_file, clock=clock).reapplied == 3
    with _opened(settings, clock) as runtime:  # (a second start: it applies nothing)
        assert ledger.reapply(runtime) == 0
        assert _register(runtime) == before
        assert [(e.target_id, e.criteria) for e in events(runtime, "obligations:")] == [
            (ids[0], "request-filed"), (ids[1], "restriction-placed"), (ids[2], "hold-placed")]
        with pytest.raises(OrderRestrictedError):
            _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])
        clock.advance(timedelta(hours=72))
        assert deadlines.warn(runtime) == 1  # overdue: the request's alarm
        clock.advance(timedelta(days=600))  # every order past its 18 months
        retention.run(runtime)
        assert _reveal(runtime, "acme", vault["others"][0]["AmazonOrderId"])  # held: kept
        with pytest.raises(OrderNotFoundError):
            _reveal(runtime, "acme", vault["others"][1]["AmazonOrderId"])
    written = ledger.path_of(settings).read_text()
    assert BUYER_EMAIL not in written.lower() and "@" not in written


def test_a_restore_keeps_the_cancels_lifts_and_releases_made_since(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path) -> None:
    """Filed before the backup, cancelled, lifted and released after it: the restore brings
    back none of them as it was in the backup."""
    with _opened(settings, clock) as runtime:
        filed, restricted, held = _obligations(runtime, vault)
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        requests.cancel_request(runtime, officer(runtime), OFFICER, filed)
        restrictions.lift(runtime, officer(runtime), OFFICER, restricted)
        holds.release(runtime, officer(runtime), OFFICER, held)
        before = _register(runtime)
    assert bootstrap.restore_backup(settings, backup_file, clock=clock).reapplied == 3
    with _opened(settings, clock) as runtime:
        assert _register(runtime) == before
        assert [e.criteria for e in events(runtime, "obligations:")] == [
            "request-state", "restriction-lifted", "hold-released"]
        assert _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])  # not restricted
        clock.advance(timedelta(hours=72))
        assert deadlines.warn(runtime) == 0  # cancelled: no alarm
        clock.advance(timedelta(days=600))
        retention.run(runtime)
        with pytest.raises(OrderNotFoundError):  # released: retention goes on
            _reveal(runtime, "acme", vault["others"][0]["AmazonOrderId"])


def test_a_restore_keeps_a_request_completed_since_completed(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path) -> None:
    """Filed before the backup, executed to its certificate after it: the restore brings it
    back to its verified step with its counts (not pending, to be executed again), its
    erasures reapplied, and the job signs its certificate again."""
    with _opened(settings, clock) as runtime:
        filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                      tenant_id="acme", buyer_email=BUYER_EMAIL,
                                      requested_by="DSR 7004")
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
        assert done.status == "completed"
    bootstrap.restore_backup(settings, backup_file, clock=clock)
    with _opened(settings, clock) as runtime:
        assert execution.resume_all(runtime) == 1
        after = requests.get_request(runtime, officer(runtime), filed.id)
        assert (after.status, after.orders, after.data_keys) == (
            "completed", done.orders, done.data_keys)
        assert after.certificate_id is not None
        with pytest.raises((OrderNotFoundError, OrderErasedError)):
            _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])


def _members(settings: Settings, backup_file: Path, tmp_path: Path,
             identity: Any = None) -> list[str]:
    archive = tmp_path / "opened.tar"
    pyrage.decrypt_file(str(backup_file), str(archive),
                        [identity or backups.identity(settings)])
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_a_backup_is_encrypted_and_holds_no_keys(settings: Settings, clock: ManualClock,
                                                 vault: dict[str, Any],
                                                 tmp_path: Path) -> None:
    mine = x25519.Identity.generate()
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, also_to=[str(mine.to_public())],
                          clock=clock)
    assert backup_file.read_bytes().startswith(b"age-encryption.org/v1\n")
    members = _members(settings, backup_file, tmp_path)
    assert "manifest.json" in members and any(m.startswith("database/") for m in members)
    assert "files/tls/server.crt" in members
    assert not [m for m in members if "keys" in m.split("/") or "checkpoints" in m]
    assert _members(settings, backup_file, tmp_path, mine) == members  # the operator's key


def test_a_changed_or_foreign_backup_is_refused(settings: Settings, clock: ManualClock,
                                                vault: dict[str, Any],
                                                tmp_path: Path) -> None:
    backup_file = tmp_path / "vault.age"
    bootstrap.make_backup(settings, backup_file, clock=clock)
    changed = bytearray(backup_file.read_bytes())
    changed[len(changed) // 2] ^= 1
    tampered = tmp_path / "tampered.age"
    tampered.write_bytes(bytes(changed))
    with pytest.raises(backups.BackupError, match="does not open"):
        backups.restore(settings, tampered)
    foreign = tmp_path / "foreign.age"
    pyrage.encrypt_file(str(backup_file), str(foreign),
                        [x25519.Identity.generate().to_public()])
    with pytest.raises(backups.BackupError, match="does not open"):
        backups.restore(settings, foreign)
    with _opened(settings, clock) as runtime:  # and nothing was changed by either
        assert _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])


def _unpack(settings: Settings, backup_file: Path, into: Path) -> Path:
    archive = into.with_suffix(".tar")
    pyrage.decrypt_file(str(backup_file), str(archive), [backups.identity(settings)])
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _repack(settings: Settings, unpacked: Path, out: Path, body: bytes,
            mac: bytes | None, mode: str = "w", extra: dict[str, Path] | None = None) -> Path:
    """An archive made again from ``unpacked``'s members with this manifest and MAC (None:
    none) first, as a backup holds them, encrypted to the vault's *public* recipient, as
    anyone holding it can."""
    rebuilt = out.with_suffix(".tar")
    with tarfile.open(rebuilt, mode) as tar:
        for name, content in ((backups.MANIFEST, body), (backups.MANIFEST_MAC, mac)):
            if content is not None:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        for member in sorted(unpacked.rglob("*")):
            if member.is_file() and member.name not in (backups.MANIFEST, backups.MANIFEST_MAC):
                tar.add(member, arcname=str(member.relative_to(unpacked)))
        for arcname, path in (extra or {}).items():
            tar.add(path, arcname=arcname)
    pyrage.encrypt_file(str(rebuilt), str(out), [backups.identity(settings).to_public()])
    return out


def test_a_backup_made_by_anyone_but_this_vault_is_refused(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path) -> None:
    """The public recipient lets anyone make a file that opens; only this vault can make its
    manifest's MAC: a changed manifest, a wrong or missing MAC, or a member swapped under
    the genuine manifest is refused, and nothing is written."""
    bootstrap.make_backup(settings, tmp_path / "real.age", clock=clock)
    unpacked = _unpack(settings, tmp_path / "real.age", tmp_path / "unpacked")
    body = (unpacked / backups.MANIFEST).read_bytes()
    mac = (unpacked / backups.MANIFEST_MAC).read_bytes()
    certificate = settings.data_dir / "tls" / "server.crt"
    before = certificate.read_bytes()
    changed = json.loads(body)
    changed["created_at"] = "2020-01-01T00:00:00+00:00"
    refused = {
        "not made by this vault": [(json.dumps(changed).encode(), mac), (body, b"0" * 64)],
        "no authenticated manifest": [(body, None)]}
    for message, forgeries in refused.items():
        for number, (forged_body, forged_mac) in enumerate(forgeries):
            forged = _repack(settings, unpacked, tmp_path / f"{number}.age", forged_body,
                             forged_mac)
            with pytest.raises(backups.BackupError, match=message):
                backups.restore(settings, forged)
    with pytest.raises(backups.BackupError, match="not the archive it writes"):  # gzipped
        backups.restore(settings, _repack(settings, unpacked, tmp_path / "z.age", body, mac,
                                          mode="w:gz"))
    huge = body + b" " * backups.MAX_MANIFEST_BYTES  # (read only up to a manifest's size)
    with pytest.raises(backups.BackupError, match="no authenticated manifest"):
        backups.restore(settings, _repack(settings, unpacked, tmp_path / "h.age", huge,
                                          backups.manifest_mac(settings, huge).encode()))
    (unpacked / "files" / "extra.txt").write_text("not in the manifest")
    with pytest.raises(backups.BackupError, match="files its manifest does not list"):
        backups.restore(settings, _repack(settings, unpacked, tmp_path / "u.age", body, mac))
    (unpacked / "files" / "extra.txt").unlink()
    (unpacked / "files" / "tls" / "server.crt").write_text("swapped")
    with pytest.raises(backups.BackupError, match="do not match its manifest"):
        backups.restore(settings, _repack(settings, unpacked, tmp_path / "s.age", body, mac))
    assert certificate.read_bytes() == before
    with _opened(settings, clock) as runtime:  # and nothing was changed by any of them
        assert _reveal(runtime, "acme", vault["theirs"][0]["AmazonOrderId"])


@pytest.mark.parametrize("name", ["keys/erasures.jsonl", "keys/root.json", "../outside.txt",
                                  "/etc/passwd", "checkpoints/checkpoints.jsonl",
                                  "sellervault.db"])
def test_even_an_authentic_manifest_cannot_write_what_a_backup_never_holds(
        settings: Settings, clock: ManualClock, vault: dict[str, Any], tmp_path: Path,
        name: str) -> None:
    """Defence in depth: a manifest MACed with the vault's own key (a bug, or a key taken
    from keys/) still cannot name the ledger, the root key or anything outside."""
    bootstrap.make_backup(settings, tmp_path / "real.age", clock=clock)
    ledger_before = ledger.path_of(settings).read_bytes() if ledger.path_of(
        settings).exists() else None
    unpacked = _unpack(settings, tmp_path / "real.age", tmp_path / "unpacked")
    payload = tmp_path / "payload"
    payload.write_text("")
    member = f"files/{name}"  # (the name as it stands: "files/../outside.txt" and all)
    manifest = json.loads((unpacked / backups.MANIFEST).read_text())
    manifest["files"].append(name)
    manifest["sha256"][member] = backups._sha256(payload)
    body = json.dumps(manifest).encode()
    forged = _repack(settings, unpacked, tmp_path / "forged.age", body,
                     backups.manifest_mac(settings, body).encode(), extra={member: payload})
    with pytest.raises(backups.BackupError, match="may not restore"):
        backups.restore(settings, forged)
    assert (ledger.path_of(settings).read_bytes() if ledger.path_of(settings).exists()
            else None) == ledger_before
    assert not (settings.data_dir.parent / "outside.txt").exists()
