"""The security log's client commands (cli/audit_commands.py) against a real TLS server: a
security officer exports the log as JSON lines and as OCSF, streamed over many of the
server's pages, filtered, to an owner-only file with nothing of the buyers in it (an order
of distinctive PII is ingested first), and the export is one audit:export event with its
count; records and lists reviews; an analyst is refused, and nothing is written."""

from __future__ import annotations

import itertools
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from sellervault.access.actions import Action
from sellervault.audit import exporting, reading
from sellervault.records.synthetic import synthetic_orders
from tests.cli.helpers import Cli
from tests.support import NEW_PASSWORD, Server


def _logged_in(server: Server, directory: Path, email: str, role: str, tenant: str) -> Cli:
    admin = server.admin_token()
    _, created = server.create_person(admin, email, "Exporting Person",
                                      [{"role": role, "tenant": tenant}])
    cli = Cli(directory)
    logged_in = cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                        "--email", email, "--totp", server.next_totp(created["totp_secret"]),
                        "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert logged_in.code == 0, logged_in
    return cli


def _distinctive_order() -> dict[str, Any]:
    """An order whose PII is found nowhere else: any of it in an export is a leak."""
    order = next(iter(synthetic_orders(1, start=7100, seed=11)))
    order["ShippingAddress"].update({
        "Name": PII["name"], "AddressLine1": PII["street"], "Phone": PII["phone"]})
    order["BuyerInfo"].update({"BuyerEmail": PII["email"], "BuyerName": PII["name"],
                               "PurchaseOrderNumber": PII["po"]})
    return order


PII = {"name": "Quentin Zyxwarblington", "email": "quentin.zyxwarblington@pii.example.test",
       "street": "77 Xylophonic Crescent", "phone": "+1 555-014-7319", "po": "PO-ZYXW-90417"}


@pytest.fixture(scope="module")
def officer(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    ingest = server.create_service(server.admin_token(), "export ingest",
                                   [{"role": "ingest", "tenant": "acme"}])
    with server.client(ingest) as client:  # orders whose buyers must not reach the export
        assert client.post("/tenants/acme/orders", json={
            "orders": [*synthetic_orders(5, start=7000, seed=9),
                       _distinctive_order()]}).status_code == 200
    return _logged_in(server, tmp_path_factory.mktemp("audit-cli") / "officer",
                      "olga.exporter@example.test", "security-officer", "*")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _exports(server: Server) -> list[dict[str, Any]]:
    with server.runtime.store.transaction() as session:
        return [{"seq": row.seq, "count": row.count, "target_id": row.target_id,
                 "criteria": row.criteria, "actor_id": row.actor_id}
                for row in reading.list_events(session, limit=100_000,
                                               matching=reading.EventFilter(
                                                   action=Action.AUDIT_EXPORT))]


def _no_pii(text: str) -> None:
    emails = [o["BuyerInfo"]["BuyerEmail"] for o in synthetic_orders(5, start=7000, seed=9)]
    leaked = [value for value in [*PII.values(), *emails] if value.lower() in text.lower()]
    assert not leaked


def test_the_log_exported_as_json_lines_page_by_page(server: Server, officer: Cli,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporting, "PAGE", 4)  # the server streams many pages
    before = _exports(server)
    target = tmp_path / "log.jsonl"
    exported = officer.invoke("audit", "export", "--output", target)
    assert exported.code == 0, exported
    events = _lines(target)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) > 3 * 4
    assert {"seq", "hash", "prev_hash", "action", "outcome", "buyer"} <= set(events[0])
    assert all(later["prev_hash"] == earlier["hash"]  # the chain, link by link
               for earlier, later in itertools.pairwise(events))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]  # no partial file left
    assert f"{len(events)} events written" in exported.stderr
    _no_pii(target.read_text())
    [export] = _exports(server)[len(before):]  # one event for the whole export
    assert export["count"] == len(events) and export["target_id"] == str(events[-1]["seq"])
    assert export["criteria"] == "jsonl" and export["seq"] > events[-1]["seq"]
    assert f"--after {events[-1]['seq']}" in exported.stderr
    following = officer.invoke("audit", "export", "--after", str(events[-1]["seq"]))
    assert following.code == 0, following
    first = json.loads(following.stdout.splitlines()[0])
    assert first["seq"] == events[-1]["seq"] + 1  # the next starts where this one ended


def test_the_log_exported_as_ocsf_filtered(server: Server, officer: Cli,
                                           tmp_path: Path) -> None:
    target = tmp_path / "log.ocsf.jsonl"
    exported = officer.invoke("audit", "export", "--format", "ocsf", "--action",
                              "orders:ingest", "--output", target)
    assert exported.code == 0, exported
    [ingest] = _lines(target)
    assert (ingest["class_uid"], ingest["activity_id"], ingest["type_uid"]) == (6003, 1, 600301)
    assert ingest["api"]["operation"] == "orders:ingest"
    assert ingest["unmapped"]["tenant_id"] == "acme"
    everything = officer.invoke("audit", "export", "--format", "ocsf")
    assert everything.code == 0
    _no_pii(everything.stdout)
    assert _exports(server)[-1]["criteria"] == "ocsf"
    signed_in = officer.invoke("audit", "export", "--format", "ocsf", "--action",
                               "session:create", "--outcome", "success")
    assert signed_in.code == 0
    logons = [json.loads(line) for line in signed_in.stdout.splitlines()]
    assert logons and all((e["class_uid"], e["activity_id"]) == (3002, 1) for e in logons)
    assert _exports(server)[-1]["criteria"] == "ocsf:action,outcome"


def test_reviews_are_recorded_and_listed(officer: Cli) -> None:
    recorded = officer.invoke("audit", "review", "--up-to", "3")
    assert recorded.code == 0, recorded
    assert "up to event 3" in recorded.stdout
    again = officer.invoke("audit", "review", "--up-to", "2")
    assert again.code == 1 and "review_state" in again.stderr
    listed = officer.invoke("audit", "reviews", "--json")
    assert [r["up_to_seq"] for r in listed.json()][:1] == [3]


def test_an_analyst_can_neither_export_nor_review(server: Server, tmp_path: Path) -> None:
    analyst = _logged_in(server, tmp_path / "analyst", "andy.analyst.cli@example.test",
                         "analyst", "acme")
    target = tmp_path / "not-for-you.jsonl"
    refused = analyst.invoke("audit", "export", "--output", target)
    assert refused.code == 1 and "forbidden" in refused.stderr
    assert list(tmp_path.glob("*not-for-you*")) == []  # neither the file nor a partial one
    assert analyst.invoke("audit", "review", "--up-to", "1").code == 1


def test_an_export_never_writes_through_a_planted_file_or_link(officer: Cli,
                                                               tmp_path: Path) -> None:
    """The partial file is a new one of the export's own: a file or symlink planted where a
    partial could be is neither followed nor reused, and the result is owner-only."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "log.jsonl"
    (tmp_path / "log.jsonl.partial").symlink_to(victim)
    assert officer.invoke("audit", "export", "--output", target).code == 0
    assert victim.read_text() == "keep me"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_every_audit_client_command_explains_itself(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    for command in (["audit", "export"], ["audit", "review"], ["audit", "reviews"]):
        helped = cli.invoke(*command, "--help")
        assert helped.code == 0 and len(helped.stdout) > 200, command
