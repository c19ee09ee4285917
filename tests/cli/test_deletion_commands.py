"""`sellervault certificates verify`, offline: a certificate file that reads two ways (a key
twice in one object, the forged value first) is refused with exit 1 and says why, though
its genuine half carries a valid signature; the file as `certificates get` writes it is
accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sellervault.runtime import Runtime
from tests.cli.helpers import Cli
from tests.deletion.helpers import forged_certificate
from tests.deletion.test_certificates import _completed


def test_a_certificate_with_a_key_twice_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    if runtime.store.dialect != "sqlite":
        pytest.skip("offline: the database it came from does not matter")
    done, signed, pem = _completed(runtime)
    document, key = tmp_path / "certificate.json", tmp_path / "certificates.pem"
    key.write_bytes(pem)
    cli = Cli(tmp_path)
    document.write_text(forged_certificate(signed))
    refused = cli.invoke("certificates", "verify", document, "--public-key", key)
    assert refused.code == 1, refused
    assert "certificate invalid" in refused.stderr and "appears twice" in refused.stderr
    assert "250000" not in refused.output
    document.write_text(json.dumps(signed, indent=2))
    accepted = cli.invoke("certificates", "verify", document, "--public-key", key)
    assert accepted.code == 0 and f"request {done.id}" in accepted.stdout
