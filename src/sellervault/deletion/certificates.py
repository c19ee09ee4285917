"""Certificates of sanitization (NIST SP 800-88 Rev. 1, appendix G): one per completed
deletion request, signed with Ed25519 under the system key ``certificate-signing`` (used for
nothing else), so anyone holding the public key alone can check one offline (``verify``).

The signed document is canonical JSON (sorted keys, no whitespace, UTF-8) of the
``certificate`` object; the stored and served form is ``{"certificate": {...}, "signature":
hex, "algorithm": "Ed25519", "key_id": ...}``. The appendix's fields map as follows (each
section of the form is an object of the certificate):

- *Person performing sanitization* -> ``performed_by`` (the account that executed the
  request, and this vault's name as the organization);
- *Media information* -> ``media`` (make/vendor, model: the product, its version and the
  database; media type: database records and their data keys; source: the scope;
  classification; backups: what their copies hold, as far as this scope's destruction
  reaches: a tenant's keys are destroyed, an order's or a buyer's data keys only, their
  old copies still wrapped under the tenant's live key until it is rotated);
- *Sanitization details* -> ``sanitization`` (method type **Purge**, method **Cryptographic
  Erase**, the details of what was destroyed and deleted, the tool and version, the
  verification method **Full** and each check's result, the post-sanitization
  classification, and the key rotations still outstanding for the copies outside the live
  database);
- *Media destination* -> ``destination`` (internal reuse: the database stays in service);
- *Person validating sanitization* -> ``verified_by`` (the tool's own verification step,
  run under the same account; a second person countersigns outside, if policy asks);
- and the request itself: who asked (``requested_by``, as recorded), who filed it, its
  scope and counts, its times, and, when data was returned first, the returned file's
  SHA-256, its count of orders and the thumbprint of the key it is encrypted to.

Not mapped: the appendix's phone numbers, postal locations and handwritten signature (a
vault has none; the Ed25519 signature stands for it), and a media serial or property
number (logical storage has none: the vault's name and the request id identify it).

The wording is signed: certificates issued before it changed keep theirs, and verify as
issued (``verify`` checks the stored document, never today's ``document``)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sellervault import __version__
from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.crypto.signatures import PublicKeyError, SigningKey, VerifyKey
from sellervault.deletion import returns
from sellervault.deletion.errors import DeletionScopeNotFoundError
from sellervault.deletion.models import CertificateRow, DeletionRequest
from sellervault.runtime import Runtime
from sellervault.store.ids import new_id

CERTIFICATE_KEY = "certificate-signing"
ALGORITHM = "Ed25519"
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class CertificateError(ValueError):
    """A certificate that does not verify: the reason, never its content."""


def canonical(certificate: dict[str, Any]) -> bytes:
    return _CANONICAL.encode(certificate).encode()


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def document(rt: Runtime, row: DeletionRequest, issued_at: datetime) -> dict[str, Any]:
    """The certificate of a request whose execution has been verified."""
    checks = json.loads(row.verification or "{}")
    cleanup = checks.pop("database_cleanup", None)
    tool = f"SellerVault {__version__}"
    scope = {"kind": row.scope, "tenant": row.tenant_id, "amazon_order_id": row.amazon_order_id,
             "buyer": row.buyer}
    return {
        "type": "certificate-of-sanitization",
        "standard": "NIST SP 800-88 Rev. 1, appendix G",
        "request_id": row.id,
        "requested_by": row.requested_by,
        "filed_by": row.created_by,
        "scope": scope,
        "counts": {"orders": row.orders, "data_keys": row.data_keys,
                   "tenant_keys": row.tenant_keys},
        "performed_by": {"account": row.executed_by, "organization": rt.settings.notify_instance},
        "media": {
            "make_vendor": "SellerVault",
            "model": f"{tool} on {rt.store.dialect}",
            "media_type": "database records and their data keys (logical storage)",
            "source": f"{row.scope} of tenant {row.tenant_id}",
            "classification": "buyer PII (restricted) and order data (confidential)",
            "backups": _copies(row),
        },
        "sanitization": {
            "method_type": "Purge",
            "method": "Cryptographic Erase",
            "details": ("every data key of the scope destroyed (a tenant: its key-encryption "
                        "and index keys first), then its rows and blind-index entries "
                        "deleted"),
            "tool": tool,
            "verification_method": "Full",
            "verification": checks,
            "database_cleanup": cleanup,
            "post_sanitization_classification": _after(row),
            "key_rotations_outstanding": _outstanding(row),
        },
        "destination": "Internal reuse (the database stays in service)",
        "verified_by": {"tool": f"{tool} verification step", "account": row.executed_by},
        "returned": _returned(row),
        "times": {"received": _time(row.received_at), "deadline": _time(row.deadline),
                  "started": _time(row.started_at), "completed": _time(issued_at),
                  "issued": _time(issued_at)},
    }


def _copies(row: DeletionRequest) -> str:
    """What the copies outside the live tables hold, as far as this deletion reached (and
    no further: see ``crypto.keystore.SqlKeyStore``). A tenant's key-encryption keys are
    destroyed, so its data keys' copies open with nothing left; an order's or a buyer's
    data keys are, but the tenant key that wrapped them lives on, and with it whatever old
    copy of those data keys the database still holds."""
    if row.scope == "tenant":
        return ("copies in backups and database logs hold ciphertext under the destroyed "
                "tenant keys, unreadable without them; old copies of those tenant keys in "
                "earlier backups and logs stay wrapped under the vault's root key until it "
                "is rotated (keys rotate-root)")
    return ("the scope's data keys are destroyed, but copies of them in earlier backups, "
            "database logs (WAL, archives, replicas) and not yet vacuumed rows stay wrapped "
            f"under tenant {row.tenant_id}'s key-encryption key, which is still in use: "
            "those copies are unreadable only to whoever lacks that key (and the root key) "
            "until the tenant key is rotated (keys rotate-tenant), then the root key "
            "(keys rotate-root)")


def _after(row: DeletionRequest) -> str:
    if row.scope == "tenant":
        return "none: nothing of the scope is readable with any key the vault still holds"
    return ("none in the vault's live database (nothing of the scope decrypts); copies in "
            "earlier backups and logs stay restricted until the tenant key is rotated")


def _outstanding(row: DeletionRequest) -> list[str]:
    """The key rotations that make the copies outside the live tables unopenable, in order
    (none done by the deletion itself)."""
    if row.scope == "tenant":
        return ["keys rotate-root"]
    return [f"keys rotate-tenant {row.tenant_id}", "keys rotate-root"]


def _returned(row: DeletionRequest) -> dict[str, Any]:
    """What was returned before the purge: the file's SHA-256 (the recipient checks the
    file they fetched against it), the orders in it and the key it is encrypted to."""
    if not row.return_data:
        return {"returned": False}
    return {"returned": True, "sha256": row.return_sha256, "orders": row.returned,
            "recipient_key_thumbprint": row.return_key_id,
            "encryption": f"JWE {returns.KEY_AGREEMENT}, {returns.CONTENT_ENCRYPTION}"}


@dataclass(frozen=True)
class Issued:
    id: str
    signed: dict[str, Any]


def issue(rt: Runtime, session: Session, auditor: Auditor, row: DeletionRequest) -> Issued:
    """Sign and store the request's certificate in the caller's transaction, with a
    ``certificates:issue`` event (one per request: the unique request id in the table)."""
    now = rt.clock.now()
    key = SigningKey(rt.keyring.system_key(session, CERTIFICATE_KEY))
    certificate = document(rt, row, now)
    stored = CertificateRow(id=f"cert_{new_id(now)[:24]}", request_id=row.id,
                            document=canonical(certificate).decode(),
                            signature=key.sign(canonical(certificate)), issued_at=now)
    session.add(stored)
    session.flush()
    auditor.record(session, Action.CERTIFICATES_ISSUE, Outcome.SUCCESS,
                   tenant_id=row.tenant_id, target_type=TargetType.CERTIFICATE,
                   target_id=stored.id)
    return Issued(stored.id, _signed(stored, key.public))


def _signed(row: CertificateRow, public: VerifyKey) -> dict[str, Any]:
    return {"certificate": json.loads(row.document), "signature": row.signature,
            "algorithm": ALGORITHM, "key_id": public.key_id}


def get(rt: Runtime, auditor: Auditor, certificate_id: str) -> dict[str, Any]:
    """The signed certificate (``DeletionScopeNotFoundError``: none has that id)."""
    with rt.store.transaction() as session:
        row = session.scalar(select(CertificateRow).where(CertificateRow.id == certificate_id))
        if row is None:
            raise DeletionScopeNotFoundError("certificate")
        public = SigningKey(rt.keyring.system_key(session, CERTIFICATE_KEY)).public
        auditor.record(session, Action.CERTIFICATES_READ, Outcome.SUCCESS,
                       target_type=TargetType.CERTIFICATE, target_id=certificate_id)
        return _signed(row, public)


def public_key(rt: Runtime, auditor: Auditor) -> str:
    """The certificates' public key (PEM): all an auditor needs to check one."""
    with rt.store.transaction() as session:
        key = SigningKey(rt.keyring.system_key(session, CERTIFICATE_KEY)).public
        auditor.record(session, Action.CERTIFICATES_READ, Outcome.SUCCESS,
                       target_type=TargetType.CERTIFICATE, target_id="public-key")
        return key.pem()


def parse(text: str) -> Any:
    """A certificate file as JSON, unambiguously or not at all (``CertificateError``): a
    key twice in one object (``json`` keeps the last, a reader or another parser may see the
    first: a forged ``scope`` shown above the signed one), and NaN or Infinity (not JSON),
    are refused rather than read one way here and another way elsewhere."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in items:
            if key in found:
                raise CertificateError(f"a key appears twice in one object ({key!r}): the "
                                       "file could be read two ways")
            found[key] = value
        return found

    def constant(name: str) -> Any:
        raise CertificateError(f"not JSON ({name})")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError:
        raise CertificateError("not JSON") from None


def verify(signed: Any, public_key_pem: bytes) -> dict[str, Any]:
    """Check a signed certificate with the public key alone; the certificate if it holds,
    else ``CertificateError`` saying why (nothing here needs the vault)."""
    try:
        key = VerifyKey.from_pem(public_key_pem)
    except PublicKeyError as exc:
        raise CertificateError(str(exc)) from None
    if not isinstance(signed, dict) or set(signed) != {"certificate", "signature",
                                                       "algorithm", "key_id"}:
        raise CertificateError("not a signed certificate (certificate, signature, "
                               "algorithm, key_id)")
    certificate, signature = signed["certificate"], signed["signature"]
    if signed["algorithm"] != ALGORITHM or not isinstance(certificate, dict) \
            or not isinstance(signature, str):
        raise CertificateError("not an Ed25519-signed certificate")
    if signed["key_id"] != key.key_id:
        raise CertificateError("signed with another key than this public key")
    if not key.verifies(canonical(certificate), signature):
        raise CertificateError("the signature does not match the certificate: it was "
                               "changed, or not signed by this key")
    return certificate


def render_html(signed: dict[str, Any]) -> str:
    """A printable form: one table of the certificate's fields, every value escaped; no
    script, no style sheet or image from elsewhere."""
    rows = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in value:
                walk(f"{prefix}.{key}" if prefix else key, value[key])
        else:
            shown = "" if value is None else str(value)
            rows.append(f"<tr><th>{html.escape(prefix)}</th><td>{html.escape(shown)}</td></tr>")

    walk("", signed["certificate"])
    walk("signature", {"algorithm": signed["algorithm"], "key_id": signed["key_id"],
                       "value": signed["signature"]})
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Certificate of sanitization</title></head><body>"
            "<h1>Certificate of sanitization</h1>"
            "<p>NIST SP 800-88 Rev. 1, appendix G. Check it with <code>sellervault "
            "certificates verify</code> and the vault's public key.</p>"
            f"<table>{''.join(rows)}</table></body></html>")
