"""The lifecycle commands (cli/lifecycle_commands.py) against a real TLS server: an
administrator lists and shows accounts, adds and revokes grants, rotates and revokes a
service's keys, sets an end date and networks, and offboards a leaver; each command says
what it did, and a refusal exits 1 with the server's code, never a traceback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.cli.helpers import Cli
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, Server


@pytest.fixture(scope="module")
def admin(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(tmp_path_factory.mktemp("lifecycle-cli") / "admin")
    logged_in = cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                        "--email", ADMIN_EMAIL, "--totp",
                        server.next_totp(server.admin_totp_secret), "--password-stdin",
                        stdin=ADMIN_PASSWORD + "\n")
    assert logged_in.code == 0, logged_in
    return cli


@pytest.fixture
def printer(admin: Cli) -> str:
    created = admin.invoke("accounts", "create", "--kind", "service", "--name",
                           "cli label printer", "--grant", "ingest:acme", "--json")
    assert created.code == 0, created
    return str(created.json()["id"])


def test_grants_and_keys_change_and_show(admin: Cli, printer: str) -> None:
    assert admin.invoke("grants", "add", printer, "analyst:acme").code == 0
    shown = admin.invoke("accounts", "show", printer, "--json").json()
    assert {(g["role"], g["tenant"]) for g in shown["grants"]} == {("ingest", "acme"),
                                                                   ("analyst", "acme")}
    revoked = admin.invoke("grants", "revoke", printer, "analyst:acme")
    assert revoked.code == 0 and "Revoked analyst:acme" in revoked.stdout
    rotated = admin.invoke("api-keys", "rotate", printer, "--overlap-hours", "0", "--json")
    assert rotated.code == 0, rotated
    new_key = rotated.json()
    assert new_key["api_key"].startswith("svk_")
    assert admin.invoke("api-keys", "revoke", printer, new_key["key_id"]).code == 0
    again = admin.invoke("api-keys", "revoke", printer, new_key["key_id"])
    assert again.code == 1 and "key_state" in again.stderr
    text = admin.invoke("accounts", "show", printer)
    assert f"api key {new_key['key_id']}" in text.stdout and new_key["api_key"] not in text.stdout
    listed = admin.invoke("accounts", "list", "--json")
    assert printer in {a["id"] for a in listed.json()}


def test_end_date_networks_and_offboarding(server: Server, admin: Cli, printer: str) -> None:
    assert admin.invoke("accounts", "end-date", printer).code == 1  # neither a time nor --clear
    ahead = (server.runtime.clock.now() + timedelta(days=30)).isoformat()
    assert admin.invoke("accounts", "end-date", printer, ahead).code == 0
    too_far = admin.invoke("accounts", "end-date", printer, "2099-01-01T00:00:00+00:00")
    assert too_far.code == 1 and "at most ten years ahead" in too_far.stderr
    assert admin.invoke("accounts", "end-date", printer, "--clear").code == 0
    set_networks = admin.invoke("accounts", "networks", printer, "203.0.113.0/24")
    assert set_networks.code == 0 and "203.0.113.0/24" in set_networks.stdout
    bad = admin.invoke("accounts", "networks", printer, "10.0.0.1/8")
    assert bad.code == 1 and "invalid_account" in bad.stderr
    done = admin.invoke("accounts", "offboard", printer)
    assert done.code == 0, done
    assert "1 API key(s) revoked, 1 grant(s) removed" in done.stdout
    shown = admin.invoke("accounts", "show", printer, "--json").json()
    assert (shown["status"], shown["grants"]) == ("disabled", [])


def test_every_lifecycle_command_explains_itself(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    for command in (["accounts", "show"], ["accounts", "offboard"], ["accounts", "end-date"],
                    ["accounts", "networks"], ["accounts", "list"], ["grants", "add"],
                    ["grants", "revoke"], ["api-keys", "rotate"], ["api-keys", "revoke"]):
        helped = cli.invoke(*command, "--help")
        assert helped.code == 0 and len(helped.stdout) > 200, command
