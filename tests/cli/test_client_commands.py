"""The server-facing commands (cli/client_commands.py) run as the real executable against a
real TLS server: login, accounts create, import and orders get, each user in its own shell."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from sellervault.accounts.models import Account
from sellervault.records.models import Order
from sellervault.records.synthetic import synthetic_order, synthetic_orders
from tests.cli.helpers import Cli, Result, mode
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, NEW_PASSWORD, Server, totp_code

TENANT = "acme"
IMPORT_TENANT = "acme-import"
OTHER = "globex"
READER_EMAIL = "rita.reader@example.test"


@dataclass
class Users:
    admin: Cli
    ingest: Cli
    reader: Cli
    ingest_key: str
    workdir: Path

    def token(self, cli: Cli) -> str:
        token: str = cli.credentials()["token"]
        return token


def login_person(server: Server, cli: Cli, email: str, password: str, secret: str) -> Result:
    return cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--email", email, "--totp", server.next_totp(secret), "--password-stdin",
                   stdin=password + "\n")


def login_service(server: Server, cli: Cli, key: str) -> Result:
    return cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=key + "\n")


@pytest.fixture(scope="module")
def users(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """An admin, an ingest service and a PII reader, each logged in through the CLI."""
    base = tmp_path_factory.mktemp("cli-users")
    admin = Cli(base / "admin")
    logged_in = login_person(server, admin, ADMIN_EMAIL, ADMIN_PASSWORD,
                             server.admin_totp_secret)
    assert logged_in.code == 0, logged_in
    admin_token = admin.credentials()["token"]

    ingest_key = server.create_service(admin_token, "acme seller app",
                                       [{"role": "ingest", "tenant": TENANT},
                                        {"role": "ingest", "tenant": IMPORT_TENANT}])
    ingest = Cli(base / "ingest")
    logged_in = login_service(server, ingest, ingest_key)
    assert logged_in.code == 0, logged_in

    # A person: enrolled (their own password and authenticator) before the CLI login.
    _, created = server.create_person(admin_token, READER_EMAIL, "Rita Reader",
                                      [{"role": "pii-reader", "tenant": TENANT},
                                       {"role": "pii-reader", "tenant": IMPORT_TENANT}])
    reader = Cli(base / "reader")  # in-process: the subprocess login is the admin's above
    logged_in = reader.invoke("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                              "--email", READER_EMAIL,
                              "--totp", server.next_totp(created["totp_secret"]),
                              "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert logged_in.code == 0, logged_in
    return Users(admin, ingest, reader, ingest_key, base)


def ingest(server: Server, users: Users, orders: list[dict[str, Any]],
           tenant: str = TENANT) -> None:
    with server.client(users.ingest_key) as client:
        response = client.post(f"/tenants/{tenant}/orders", json={"orders": orders})
    assert response.status_code == 200, response.text


def api_get(server: Server, token: str, path: str, **params: str) -> Any:
    """A GET as ``token``; a search states its purpose, as it must."""
    headers = {"X-Access-Purpose": "fulfillment"} if params else {}
    with server.client(token, **headers) as client:
        return client.get(path, params=params)


PII_PARTS = ("BuyerInfo", "ShippingAddress")


def pii_values(order: dict[str, Any]) -> list[str]:
    """The buyer's distinctive values (short ones like "US" would match anywhere)."""
    return [value for part in PII_PARTS for value in (order.get(part) or {}).values()
            if isinstance(value, str) and len(value) >= 5]


# -- login -----------------------------------------------------------------------------------

def test_person_login_stores_an_owner_only_token(server: Server, users: Users) -> None:
    stored = users.admin.credentials()
    assert mode(users.admin.credentials_file) == 0o600
    assert mode(users.admin.credentials_file.parent) == 0o700
    assert stored["server"] == server.base_url
    assert stored["token"].startswith("svs_")
    assert ADMIN_PASSWORD not in users.admin.credentials_file.read_text()


def test_service_login_stores_its_api_key_owner_only(users: Users) -> None:
    assert mode(users.ingest.credentials_file) == 0o600
    assert users.ingest.credentials()["token"] == users.ingest_key


def test_wrong_password_fails_and_never_prints_it(server: Server, users: Users) -> None:
    cli = Cli(users.workdir / "wrong-password")
    wrong = "not the admins password 123"
    code = totp_code(server.admin_totp_secret, server.runtime.clock)
    result = cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                     "--email", ADMIN_EMAIL, "--totp", code, "--password-stdin",
                     stdin=wrong + "\n")
    assert result.code == 1, result
    assert "invalid_credentials" in result.stderr
    assert wrong not in result.output
    assert not cli.credentials_file.exists()


def test_login_without_email_or_api_key_is_refused(server: Server) -> None:
    result = Cli(Path("/nonexistent")).invoke("login", "--server", server.base_url,
                                              "--password-stdin", stdin="whatever\n")
    assert result.code == 1, result
    assert "give --email" in result.stderr


def test_wrong_api_key_is_refused(server: Server, users: Users) -> None:
    cli = Cli(users.workdir / "wrong-key")
    result = cli.invoke("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                        "--api-key-stdin", stdin="svk_not-a-real-key\n")
    assert result.code == 1, result
    assert not cli.credentials_file.exists()


# -- accounts create -------------------------------------------------------------------------

def test_admin_creates_a_service_whose_key_works(server: Server, users: Users) -> None:
    result = users.admin.run("accounts", "create", "--kind", "service", "--name",
                             "acme backfill", "--grant", f"ingest:{TENANT}", "--json")
    assert result.code == 0, result
    created = result.json()
    assert set(created) == {"id", "api_key", "status"}
    assert created["status"] == "active"  # no pii-reader: no approval needed
    order = synthetic_order(1, prefix="906")
    with server.client(created["api_key"]) as client:
        response = client.post(f"/tenants/{TENANT}/orders", json={"orders": [order]})
        refused = client.post(f"/tenants/{OTHER}/orders", json={"orders": [order]})
    assert response.status_code == 200, response.text
    assert refused.status_code == 404  # the grant is for TENANT only


def test_a_person_created_by_an_admin_enrols_on_the_cli_then_signs_in(
        server: Server, users: Users) -> None:
    """The admin gets a token and nothing else; the person, given the token, gets their own
    TOTP secret, sets their own password and gets recovery codes; the token then works no
    more, and a recovery code signs in once in place of a code."""
    email = "pat.picker@example.test"
    result = users.admin.invoke("accounts", "create", "--kind", "person", "--name", "Pat Picker",
                                "--email", email, "--grant", f"pii-reader:{TENANT}",
                                "--grant", "analyst:*", "--json")
    assert result.code == 0, result
    created = result.json()
    assert set(created) == {"id", "enrolment_token", "expires_at"}
    pat = Cli(users.workdir / "pat")
    where = ("--server", server.base_url, "--ca-cert", server.ca_file)
    started = pat.invoke("enrol", "start", *where, stdin=created["enrolment_token"] + "\n")
    assert started.code == 0, started
    secret = started.stdout.split("authenticator now): ", 1)[1].split()[0]
    finished = pat.invoke("enrol", "finish", "--totp", server.next_totp(secret), *where,
                          stdin=f"{created['enrolment_token']}\n{NEW_PASSWORD}\n")
    assert finished.code == 0, finished
    codes = [line.strip() for line in finished.stdout.splitlines()[1:] if line.strip()]
    assert len(codes) == 10 and len(set(codes)) == 10
    again = pat.invoke("enrol", "start", *where, stdin=created["enrolment_token"] + "\n")
    assert again.code == 1 and "invalid_enrolment" in again.stderr
    logged_in = pat.invoke("login", *where, "--email", email, "--totp", codes[0],
                           "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert logged_in.code == 0, logged_in
    replayed = pat.invoke("login", *where, "--email", email, "--totp", codes[0],
                          "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert replayed.code == 1


def test_a_person_changes_their_password_on_the_cli_secrets_on_stdin_only(
        server: Server, users: Users) -> None:
    """Current and new password on standard input; a refusal (wrong password, too recent, a
    reused or common new one) names its code and never prints a password."""
    email = "cleo.changer@example.test"
    admin_token = users.token(users.admin)
    _, created = server.create_person(admin_token, email, "Cleo Changer",
                                      [{"role": "analyst", "tenant": TENANT}])
    cleo = Cli(users.workdir / "cleo")
    where = ("--server", server.base_url, "--ca-cert", server.ca_file)
    new = "a brand new passphrase of mine"

    def change(current: str, new_password: str) -> Result:
        return cleo.invoke("password", "change", *where, "--email", email,
                           "--totp", server.next_totp(created["totp_secret"]),
                           stdin=f"{current}\n{new_password}\n")

    too_soon = change(NEW_PASSWORD, new)  # enrolled a moment ago
    assert too_soon.code == 1 and "password_too_recent" in too_soon.stderr
    with server.runtime.store.transaction() as session:  # a day goes by, for Cleo only
        session.execute(update(Account).where(Account.id == created["id"]).values(
            password_changed_at=server.runtime.clock.now() - timedelta(days=1)))
    for current, new_password, refusal in [
            ("not my passphrase at all", new, "invalid_credentials"),
            (NEW_PASSWORD, NEW_PASSWORD, "password_reused"),
            (NEW_PASSWORD, "qwerty123456!", "password_policy")]:
        refused = change(current, new_password)
        assert refused.code == 1 and refusal in refused.stderr, refused
        assert current not in refused.output and new_password not in refused.output
    changed = change(NEW_PASSWORD, new)
    assert changed.code == 0, changed
    assert new not in changed.output and NEW_PASSWORD not in changed.output
    logged_in = cleo.invoke("login", *where, "--email", email,
                            "--totp", server.next_totp(created["totp_secret"]),
                            "--password-stdin", stdin=new + "\n")
    assert logged_in.code == 0, logged_in


def test_an_admin_reenrols_a_person_on_the_cli(server: Server, users: Users) -> None:
    _, created = server.create_person(users.token(users.admin), "remy.renew@example.test",
                                      "Remy Renew", [{"role": "analyst", "tenant": TENANT}])
    result = users.admin.invoke("accounts", "reenrol", created["id"], "--json")
    assert result.code == 0, result
    assert set(result.json()) == {"id", "enrolment_token", "expires_at"}
    started = Cli(users.workdir / "remy").invoke(
        "enrol", "start", "--server", server.base_url, "--ca-cert", server.ca_file,
        stdin=result.json()["enrolment_token"] + "\n")
    assert started.code == 0, started
    refused = users.reader.invoke("accounts", "reenrol", created["id"])
    assert refused.code == 1 and "forbidden" in refused.stderr


def test_accounts_create_without_json_shows_the_secret_once(users: Users) -> None:
    result = users.admin.invoke("accounts", "create", "--kind", "service", "--name", "acme reports",
                             "--grant", f"analyst:{TENANT}")
    assert result.code == 0, result
    assert "Created service account svc_" in result.stdout
    assert "api_key: svk_" in result.stdout


def test_a_pii_service_waits_for_a_security_officer(server: Server, users: Users) -> None:
    """The admin creates it and is told its key waits; a security officer lists and approves
    it through the CLI; the admin's own `approvals approve` is refused."""
    created = users.admin.invoke("accounts", "create", "--kind", "service", "--name",
                                 "acme labels", "--grant", f"pii-reader:{TENANT}")
    assert created.code == 0, created
    assert "its key works once a security officer (not you)" in created.stdout
    account_id = next(word for word in created.stdout.split() if word.startswith("svc_"))
    account_id = account_id.rstrip(".")
    refused = users.admin.invoke("approvals", "approve", account_id)
    assert refused.code == 1 and "forbidden" in refused.stderr

    officer_token, _ = server.create_person(
        users.token(users.admin), "otto.officer@example.test", "Otto Officer",
        [{"role": "security-officer", "tenant": "*"}])
    cli = Cli(users.workdir / "officer")  # logged in as the admin is, with the officer's token
    cli.credentials_file.parent.mkdir(parents=True)
    cli.credentials_file.write_text(json.dumps({**users.admin.credentials(),
                                                "token": officer_token}))
    listed = cli.invoke("approvals", "list")
    assert listed.code == 0, listed
    assert account_id in listed.stdout and f"pii-reader:{TENANT}" in listed.stdout
    approved = cli.invoke("approvals", "approve", account_id)
    assert approved.code == 0, approved
    assert f"Account {account_id} is now active." in approved.stdout
    again = cli.invoke("approvals", "reject", account_id)
    assert again.code == 1 and "not waiting for approval" in again.stderr


def test_accounts_create_needs_the_admin_role(users: Users) -> None:
    result = users.ingest.invoke("accounts", "create", "--kind", "service", "--name", "sneaky",
                                 "--grant", "admin:*", "--json")
    assert result.code == 1, result
    assert "forbidden" in result.stderr
    assert result.stdout == ""


def test_accounts_create_needs_a_login(users: Users) -> None:
    result = Cli(users.workdir / "nobody").invoke("accounts", "create", "--kind", "service",
                                                  "--name", "x", "--json")
    assert result.code == 1, result
    assert "not logged in: run `sellervault login` first" in result.stderr


def test_a_malformed_grant_is_refused_before_any_request(users: Users) -> None:
    result = Cli(users.workdir / "nobody").invoke("accounts", "create", "--kind", "service",
                                                  "--name", "x", "--grant", "ingest")
    assert result.code == 1, result
    assert "a grant is ROLE:TENANT" in result.stderr


# -- import ----------------------------------------------------------------------------------

def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_import_streams_a_file_and_rerunning_does_not_duplicate(server: Server,
                                                                users: Users) -> None:
    orders = list(synthetic_orders(300, prefix="903"))
    file = write_jsonl(users.workdir / "orders.jsonl", [json.dumps(o) for o in orders])
    args = ("import", file, "--tenant", IMPORT_TENANT, "--quiet", "--batch-size", "128")

    first = users.ingest.run(*args)
    assert first.code == 0, first
    assert first.stdout.strip() == f"Imported 300 orders into tenant {IMPORT_TENANT}."
    assert first.stderr == ""  # --quiet: no progress bar
    again = users.ingest.run(*args)
    assert again.code == 0, again
    assert again.stdout.strip() == f"Imported 300 orders into tenant {IMPORT_TENANT}."

    reader = users.token(users.reader)
    postal = "98121"
    expected = {o["AmazonOrderId"] for o in orders
                if o["ShippingAddress"]["PostalCode"] == postal}
    found = api_get(server, reader, f"/tenants/{IMPORT_TENANT}/orders", postal_code=postal)
    assert found.status_code == 200, found.text
    ids = [o["AmazonOrderId"] for o in found.json()["orders"]]
    assert len(ids) == len(set(ids))  # each once: re-sent orders updated, not duplicated
    # (and the tenant's canaries in that postal code: modelled on its orders, they look alike)
    assert set(ids) - expected <= canaries_of(server, IMPORT_TENANT)
    assert expected <= set(ids)
    last = orders[-1]
    by_email = api_get(server, reader, f"/tenants/{IMPORT_TENANT}/orders",
                       buyer_email=last["BuyerInfo"]["BuyerEmail"]).json()["orders"]
    assert [o["AmazonOrderId"] for o in by_email] == [last["AmazonOrderId"]]
    shown = api_get(server, reader, f"/tenants/{IMPORT_TENANT}/orders/{last['AmazonOrderId']}")
    assert shown.json()["order"]["OrderStatus"] == last["OrderStatus"]


def test_import_with_a_progress_bar_reports_the_count(users: Users) -> None:
    file = write_jsonl(users.workdir / "few.jsonl",
                       [json.dumps(o) for o in synthetic_orders(3, prefix="907")] + [""])
    result = users.ingest.invoke("import", file, "--tenant", IMPORT_TENANT)
    assert result.code == 0, result
    assert f"Imported 3 orders into tenant {IMPORT_TENANT}." in result.stdout


def test_import_stops_at_a_line_that_is_not_json(server: Server, users: Users) -> None:
    """Batches before the bad line are stored (each all or nothing); the batch holding it is
    never sent; the error names the line and how many orders were stored."""
    orders = list(synthetic_orders(300, prefix="904"))
    lines = [json.dumps(o) for o in orders]
    lines.insert(250, '{"AmazonOrderId": "904-broken", ')  # becomes line 251
    file = write_jsonl(users.workdir / "broken.jsonl", lines)
    result = users.ingest.invoke("import", file, "--tenant", IMPORT_TENANT, "--quiet",
                                 "--batch-size", "100")
    assert result.code == 1, result
    assert "line 251 of broken.jsonl is not valid JSON" in result.stderr
    assert "after 200 orders were stored" in result.stderr
    assert "Imported" not in result.stdout

    reader = users.token(users.reader)
    stored = api_get(server, reader,
                     f"/tenants/{IMPORT_TENANT}/orders/{orders[199]['AmazonOrderId']}")
    assert stored.status_code == 200
    for missing in (orders[200], orders[249], orders[299]):
        response = api_get(server, reader,
                           f"/tenants/{IMPORT_TENANT}/orders/{missing['AmazonOrderId']}")
        assert response.status_code == 404


def test_import_names_the_line_of_an_invalid_order(server: Server, users: Users) -> None:
    orders = list(synthetic_orders(10, prefix="908"))
    marker = "not-a-date-marker@example.test"
    orders[6]["PurchaseDate"] = marker  # line 7
    lines = [json.dumps(o) for o in orders]
    lines.insert(2, "")  # blank lines are skipped but still counted: the bad order is line 8
    file = write_jsonl(users.workdir / "invalid.jsonl", lines)
    result = users.ingest.invoke("import", file, "--tenant", IMPORT_TENANT, "--quiet")
    assert result.code == 1, result
    assert "line 8 of invalid.jsonl: invalid_request" in result.stderr
    assert "PurchaseDate" in result.stderr
    assert "after 0 orders were stored" in result.stderr
    assert marker not in result.output
    reader = users.token(users.reader)
    response = api_get(server, reader,
                       f"/tenants/{IMPORT_TENANT}/orders/{orders[0]['AmazonOrderId']}")
    assert response.status_code == 404  # the batch was all or nothing


def test_import_error_naming_a_markup_like_file_is_printed_verbatim(users: Users) -> None:
    """Rich markup in a file name (or a server message) must not crash the error path."""
    file = write_jsonl(users.workdir / "orders[bold].jsonl", ["not json"])
    result = users.ingest.invoke("import", file, "--tenant", TENANT, "--quiet")
    assert result.code == 1, result
    assert "line 1 of orders[bold].jsonl is not valid JSON" in result.stderr


def test_import_into_an_ungranted_tenant_fails(users: Users) -> None:
    file = write_jsonl(users.workdir / "other.jsonl",
                       [json.dumps(o) for o in synthetic_orders(2, prefix="909")])
    result = users.ingest.invoke("import", file, "--tenant", OTHER, "--quiet")
    assert result.code == 1, result
    assert "lines 1-2 of other.jsonl: not_found" in result.stderr
    assert "after 0 orders were stored" in result.stderr


def test_import_of_a_missing_file_is_a_usage_error(users: Users) -> None:
    result = users.ingest.invoke("import", users.workdir / "nope.jsonl", "--tenant", TENANT)
    assert result.code == 2, result
    assert "does not exist" in result.stderr


# -- orders get ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def order(server: Server, users: Users) -> dict[str, Any]:
    placed: dict[str, Any] = synthetic_order(42, prefix="905")
    ingest(server, users, [placed])
    return placed


def test_orders_get_masks_pii_by_default(users: Users, order: dict[str, Any]) -> None:
    result = users.reader.run("orders", "get", TENANT, order["AmazonOrderId"])
    assert result.code == 0, result
    shown = result.json()
    assert shown["pii"] == "masked"
    assert shown["order"]["AmazonOrderId"] == order["AmazonOrderId"]
    for part in PII_PARTS:
        assert set(shown["order"][part]) == set(order[part])
        assert set(shown["order"][part].values()) == {"***"}
    for value in pii_values(order):
        assert value not in result.output, value


def test_orders_get_reveals_for_fulfillment(users: Users, order: dict[str, Any]) -> None:
    result = users.reader.run("orders", "get", TENANT, order["AmazonOrderId"],
                              "--purpose", "fulfillment")
    assert result.code == 0, result
    shown = result.json()
    assert shown["pii"] == "revealed" and shown["purpose"] == "fulfillment"
    assert shown["order"]["BuyerInfo"]["BuyerEmail"] == order["BuyerInfo"]["BuyerEmail"]
    assert order["BuyerInfo"]["BuyerEmail"] in result.stdout


def test_orders_get_refuses_marketing(users: Users, order: dict[str, Any]) -> None:
    result = users.reader.invoke("orders", "get", TENANT, order["AmazonOrderId"],
                                 "--purpose", "marketing")
    assert result.code == 1, result
    assert "purpose_not_permitted" in result.stderr
    assert result.stdout == ""
    for value in pii_values(order):
        assert value not in result.output, value


@pytest.mark.parametrize("who", ["admin", "ingest"])
def test_orders_get_never_reveals_to_other_roles(users: Users, order: dict[str, Any],
                                                 who: str) -> None:
    cli: Cli = getattr(users, who)
    result = cli.invoke("orders", "get", TENANT, order["AmazonOrderId"], "--purpose", "fulfillment")
    assert result.code == 1, result
    for value in pii_values(order):
        assert value not in result.output, value


def test_orders_get_of_another_tenant_is_not_found(users: Users,
                                                   order: dict[str, Any]) -> None:
    result = users.reader.invoke("orders", "get", OTHER, order["AmazonOrderId"])
    assert result.code == 1, result
    assert "not_found" in result.stderr


def canaries_of(server: Server, tenant: str) -> set[str]:
    with server.runtime.store.engine.connect() as connection:
        return set(connection.execute(
            select(Order.amazon_order_id).where(Order.tenant_id == tenant,
                                                Order.is_canary.is_(True))).scalars())
