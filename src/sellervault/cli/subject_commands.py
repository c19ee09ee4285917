"""Client commands for data subjects' rights (role ``security-officer``; ``list`` also
``auditor``): restrict a buyer's processing and lift it; correct one PII field of an order.
Emails and corrected values are read from standard input, never from the command line
(where shell history and ``ps`` would keep them)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from sellervault.cli.common import call, console, fail

restrictions_app = typer.Typer(no_args_is_help=True, help=(
    "Restrictions of processing (security officer; `list` also auditor): `place` one on a "
    "buyer of a tenant (their email on standard input), after which every masked read, "
    "reveal and search hit of their orders is refused with processing_restricted (451) "
    "while their data is kept; `list` the register; `lift` one."))

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _print(restriction: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(restriction))
        return
    lifted = f"  lifted {restriction['lifted_at']}" if restriction["lifted_at"] else ""
    console.print(escape(f"{restriction['id']}  {restriction['tenant']} {restriction['buyer']}"
                         f"  since {restriction['created_at']}  {restriction['reason']}"
                         f"{lifted}"), highlight=False)


@restrictions_app.command("place")
def restrictions_place(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    reason: Annotated[str, typer.Option(help="Why: a ticket, a case.")],
    buyer_email_stdin: Annotated[bool, typer.Option(
        "--buyer-email-stdin", help="Read the buyer's email from standard input (required: "
                                    "never on the command line).")] = False,
    as_json: AsJson = False,
) -> None:
    """Restrict the processing of a buyer's orders in a tenant until lifted."""
    line = sys.stdin.readline().strip() if buyer_email_stdin else ""
    if not line:
        raise fail("expected the buyer's email on standard input (--buyer-email-stdin)")
    _print(call("POST", "/restrictions", json={"tenant": tenant, "buyer_email": line,
                                               "reason": reason}), as_json)


@restrictions_app.command("list")
def restrictions_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    active: Annotated[bool, typer.Option(help="Only those not lifted.")] = False,
    as_json: AsJson = False,
) -> None:
    """The register, newest first."""
    params: dict[str, Any] = {"active": active}
    if tenant is not None:
        params["tenant"] = tenant
    found = call("GET", "/restrictions", params=params)["restrictions"]
    if as_json:
        print(json.dumps(found))
        return
    for restriction in found:
        _print(restriction, False)


@restrictions_app.command("lift")
def restrictions_lift(
    restriction_id: Annotated[str, typer.Argument(help="The restriction id (rst_...).")],
    as_json: AsJson = False,
) -> None:
    """Lift a restriction: the buyer's orders are processed again."""
    _print(call("POST", f"/restrictions/{restriction_id}/lift"), as_json)


corrections_app = typer.Typer(no_args_is_help=True, help=(
    "Corrections (security officer): `apply` sets one PII field of an order to its correct "
    "value, read from standard input; it is sealed again under the order's data key and "
    "its blind index recomputed. The value is never printed or logged."))


@corrections_app.command("apply")
def corrections_apply(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    order: Annotated[str, typer.Option(help="The order id.")],
    field: Annotated[str, typer.Option(help="The field, e.g. ShippingAddress.AddressLine1 "
                                            "or BuyerInfo.BuyerEmail.")],
    value_stdin: Annotated[bool, typer.Option(
        "--value-stdin", help="Read the value from standard input (required).")] = False,
    as_json: AsJson = False,
) -> None:
    """Correct one PII field of an order."""
    value = sys.stdin.readline().strip() if value_stdin else ""
    if not value:
        raise fail("expected the corrected value on standard input (--value-stdin)")
    done = call("POST", "/corrections", json={"tenant": tenant, "amazon_order_id": order,
                                              "field": field, "value": value})
    if as_json:
        print(json.dumps(done))
        return
    console.print(escape(f"{done['field']} of {done['tenant']} {done['amazon_order_id']} "
                         f"corrected at {done['corrected_at']}."), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(restrictions_app, name="restrictions")
    app.add_typer(corrections_app, name="corrections")
