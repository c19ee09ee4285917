"""Returning a scope's data before it is deleted (a request filed with ``return: true``).

The data leaves encrypted to the recipient's public key, never in clear: JWE (RFC 7516)
compact serialization, key agreement ``ECDH-ES+A256KW`` and content encryption ``A256GCM``
(RFC 7518), made by joserfc with exactly those two algorithms allowed. The recipient's key
is an EC (P-256, P-384, P-521) or OKP (X25519, X448) public JWK given when the request is
filed; a private key is refused (it must never reach the vault), as is any other type.

The returned file is one JWE per line, each a *part*: ``{"request_id", "part", "orders":
[...]}`` with up to ``RETURN_BATCH`` orders as a PII reader would see them revealed (the
order's fields and its buyer and shipping address in clear). Parts are written one
transaction each, in order-id order, before any key is destroyed (``deletion.execution``'s
first step), so a large tenant never sits whole in memory and a killed execution resumes
after the last part written. The SHA-256 of the file (the parts, each followed by a newline)
goes into the request and its certificate: the recipient checks the file they fetched is
the one certified. Canaries are not returned (they are not anyone's data).

The vault keeps the parts for the security officer to fetch for ``RETURN_KEPT`` after the
request completes (it cannot read them: only the recipient's private key opens them); then
the ``deletion-executions`` job discards them (``discard``), and the digest in the
request and the certificate is what remains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sellervault.deletion.errors import InvalidDeletionRequestError
from sellervault.deletion.models import ReturnedPart
from sellervault.records import erasure
from sellervault.runtime import Runtime
from sellervault.store.engine import Store

KEY_AGREEMENT, CONTENT_ENCRYPTION = "ECDH-ES+A256KW", "A256GCM"
ALGORITHMS = (KEY_AGREEMENT, CONTENT_ENCRYPTION)
"""The only algorithms joserfc may use to make (or, for a recipient, open) a part."""
CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("X25519", "X448")}
RETURN_BATCH = 1000
"""Orders per part: one transaction, one JWE."""
RETURN_KEPT = timedelta(days=7)
"""How long after completion a returned file can be fetched."""


@dataclass(frozen=True)
class Recipient:
    """The public key the returned data is encrypted to: its JWK (canonical JSON, the
    public members only) and its RFC 7638 thumbprint, which the parts and the certificate
    name it by."""

    jwk: str
    key_id: str

    def key(self) -> ECKey | OKPKey:
        return _import(json.loads(self.jwk))


def _import(jwk: dict[str, Any]) -> ECKey | OKPKey:
    return ECKey.import_key(jwk) if jwk["kty"] == "EC" else OKPKey.import_key(jwk)


def recipient(jwk: object) -> Recipient:
    """The recipient's key as given, checked: a public EC or OKP key-agreement key
    (``InvalidDeletionRequestError`` otherwise; the message never repeats the key)."""
    if not isinstance(jwk, dict):
        raise InvalidDeletionRequestError("return_to: a JSON Web Key object")
    if "d" in jwk:
        raise InvalidDeletionRequestError("return_to: that is a private key; send the "
                                          "public key only (and keep the private one)")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty not in CURVES or crv not in CURVES[str(kty)]:
        raise InvalidDeletionRequestError(
            "return_to: an EC key on P-256, P-384 or P-521, or an OKP key on X25519 or X448")
    try:
        key = _import(jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDeletionRequestError("return_to: not a valid public key") from None
    public = {name: value for name, value in key.as_dict(private=False).items()
              if name in ("kty", "crv", "x", "y")}
    chosen = Recipient(json.dumps(public, sort_keys=True, separators=(",", ":")),
                       key.thumbprint())
    try:  # a key that imports but agrees on no secret (a low-order X25519 point) fails here,
        # not in the middle of an execution
        encrypt(chosen, b"{}")
    except (JoseError, ValueError):
        raise InvalidDeletionRequestError("return_to: not a usable public key") from None
    return chosen


def encrypt(to: Recipient, plaintext: bytes) -> str:
    return jwe.encrypt_compact({"alg": KEY_AGREEMENT, "enc": CONTENT_ENCRYPTION,
                                "kid": to.key_id, "cty": "json"},
                               plaintext, to.key(), algorithms=ALGORITHMS)


def write_parts(rt: Runtime, request_id: str, to: Recipient, scope: erasure.Scope,
                batch: int = RETURN_BATCH) -> int:
    """Write the scope's remaining parts, a transaction each (resuming after the last part
    written); the number of orders returned in all. Two executions at once: each part is
    written once (the other's insert conflicts and it reads on)."""
    while True:
        try:
            with rt.store.transaction() as session:
                last = session.execute(
                    select(ReturnedPart.part, ReturnedPart.orders, ReturnedPart.last_order_id)
                    .where(ReturnedPart.request_id == request_id)
                    .order_by(ReturnedPart.part.desc()).limit(1)).first()
                if last is not None and last.orders < batch:
                    return _returned(session, request_id)  # the last part is written
                found = erasure.decrypted_batch(session, rt.keyring, scope,
                                                None if last is None else last.last_order_id,
                                                batch)
                number = 1 if last is None else last.part + 1
                body = {"request_id": request_id, "part": number,
                        "last": len(found) < batch, "orders": [view for _, view in found]}
                session.add(ReturnedPart(
                    request_id=request_id, part=number, orders=len(found),
                    last_order_id=found[-1][0] if found else None,
                    jwe=encrypt(to, json.dumps(body, separators=(",", ":")).encode())))
                session.flush()
        except IntegrityError:  # another execution wrote this part: read on after it
            continue


def _returned(session: Session, request_id: str) -> int:
    return session.scalar(select(func.coalesce(func.sum(ReturnedPart.orders), 0)).where(
        ReturnedPart.request_id == request_id)) or 0


def discard(session: Session, request_ids: list[str]) -> int:
    """Delete the returned files of these requests (the job's, ``RETURN_KEPT`` after their
    completion)."""
    if not request_ids:
        return 0
    result = session.execute(delete(ReturnedPart).where(
        ReturnedPart.request_id.in_(request_ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]


PARTS_PER_READ = 4
"""Parts read per transaction when the file is hashed or sent (a part holds up to
``RETURN_BATCH`` orders, a few MB): a tenant's file, gigabytes, is never held whole."""


def parts(session: Session, request_id: str) -> list[str]:
    """The returned file's lines (each part's JWE), in order (a small file's, whole)."""
    return list(session.scalars(select(ReturnedPart.jwe).where(
        ReturnedPart.request_id == request_id).order_by(ReturnedPart.part)))


def chunks(store: Store, request_id: str, per_read: int | None = None) -> Iterator[bytes]:
    """The returned file, a few parts at a time, each read in a read-only snapshot of its
    own (no writer lock taken, no transaction held while the client reads; the parts of a
    returned request never change; a file discarded meanwhile ends short, which the digest
    the reader checks shows)."""
    per_read = PARTS_PER_READ if per_read is None else per_read
    after = 0
    while True:
        with store.snapshot() as connection:
            rows = connection.execute(select(ReturnedPart.part, ReturnedPart.jwe).where(
                ReturnedPart.request_id == request_id, ReturnedPart.part > after)
                .order_by(ReturnedPart.part).limit(per_read)).all()
        if not rows:
            return
        yield file_bytes([row.jwe for row in rows])
        after = rows[-1].part


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


def digest(store: Store, request_id: str) -> Digest:
    """The returned file's SHA-256 and size, read a few parts at a time."""
    hashed, size = hashlib.sha256(), 0
    for chunk in chunks(store, request_id):
        hashed.update(chunk)
        size += len(chunk)
    return Digest(hashed.hexdigest(), size)


def file_bytes(lines: list[str]) -> bytes:
    """Parts as the file holds them: each JWE and a newline (what ``sha256`` is of)."""
    return "".join(line + "\n" for line in lines).encode("ascii")


def sha256(lines: list[str]) -> str:
    return hashlib.sha256(file_bytes(lines)).hexdigest()


def open_parts(lines: Iterable[str | bytes],
               private_jwk: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The recipient's side: each part's orders in turn, opened with their private key
    (only the algorithms above are accepted), a line at a time (a file of gigabytes is never
    held whole). ``ValueError`` if a part does not open or the parts are not in order."""
    try:
        key = _import(private_jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise ValueError("not a private EC or OKP key") from None
    number, request, last = 0, None, False
    for raw in lines:
        line = raw.decode("ascii") if isinstance(raw, bytes) else raw
        if not line.strip():
            continue
        number += 1
        try:
            body = json.loads(jwe.decrypt_compact(line.strip(), key,
                                                  algorithms=ALGORITHMS).plaintext or b"")
        except (JoseError, ValueError) as error:
            raise ValueError(f"part {number} does not open with this key") from error
        if body.get("part") != number or last:
            raise ValueError(f"part {number} is missing or out of order")
        request = body.get("request_id") if request is None else request
        if body.get("request_id") != request:
            raise ValueError(f"part {number} belongs to another returned file")
        last = body.get("last") is True
        yield body["orders"]
    if not last:  # (a file cut at a part's end would otherwise open as if whole)
        raise ValueError(f"the file ends after part {number}, before its last part")


def open_file(content: bytes, private_jwk: dict[str, Any]) -> list[dict[str, Any]]:
    """Every order of a returned file held in memory (``open_parts``)."""
    return [order for orders in open_parts(content.splitlines(), private_jwk)
            for order in orders]
