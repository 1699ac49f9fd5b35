"""core/uploads_status.py: a partner's recent uploads as received, delivered or rejected, with the
validator's message exactly as `tradelane transfers --json` shows it; a user's outbox files in the
sender's words; never a destination's failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cli.main import app
from core import dataflows, partners, transfers
from core.endpoints import rows as endpoint_rows
from core.errors import Forbidden
from core.models import DataFlow, Partner, Receipt, Transfer
from core.tenancy import Scope, scope_for_login
from core.uploads_status import recent_uploads
from tests.services.conftest import arrive, unique
from tests.tenancy import home_scope

SECRET = "S3-Secret-Value-77"
# What the json validator says of a bad file (core/validators), with a secret that must not show.
INVALID = f"not valid JSON: Expecting value: line 1 column 1 (char 0) via {SECRET}"


def partner_with_two_flows(session: Session, tmp_path: Path) -> tuple[Partner, list[DataFlow]]:
    cli = home_scope(session)
    name = unique("up")
    partner = partners.add(session, cli, name, password="Upload-Pass-12345")
    lake = unique("ulake")
    endpoint_rows.add(
        session, cli, lake, "s3", {"bucket": "b", "endpoint_url": "http://127.0.0.1:9"},
        {"access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET},
    )  # fmt: skip
    flows = [
        dataflows.add(
            session, cli, unique("uf"), source=f"mailbox:{name}", dest=lake, validators=[{"type": "json"}]
        ),
        dataflows.add(session, cli, unique("ug"), source=f"mailbox:{name}", dest=lake),
    ]
    return partner, flows


def partner_scope(session: Session, partner: Partner) -> Scope:
    assert partner.id is not None
    return scope_for_login(
        session, partner.account_id, kind="partner", principal_id=partner.id, name=partner.name
    )


def test_states_and_the_validators_message_as_tradelane_transfers_shows_it(
    session: Session, tmp_path: Path
) -> None:
    partner, flows = partner_with_two_flows(session, tmp_path)
    other, other_flows = partner_with_two_flows(session, tmp_path)
    arrive(session, partner, flows, "good.json", states=["delivered", "delivered"])
    _, rejected = arrive(
        session, partner, flows, "bad.json", states=["rejected", "delivered"], errors=[INVALID, None]
    )
    arrive(session, partner, flows, "slow.json", states=["delivered", "pending"])
    arrive(
        session,
        partner,
        flows,
        "down.json",
        states=["delivered", "failed"],
        errors=[None, f"refused by {SECRET}"],
    )
    receipt, [first, _] = arrive(
        session, partner, flows, "fixed.json", states=["rejected", "delivered"], errors=[INVALID, None]
    )
    assert receipt.id is not None and first.id is not None
    replay = Transfer(receipt_id=receipt.id, data_flow_id=first.data_flow_id, account_id=first.account_id,
                      state="delivered", replay_of=first.id)  # fmt: skip
    session.add(replay)  # the replay supersedes the rejection
    arrive(session, partner, [], "nobody.json")  # no data flow took it
    arrive(
        session, other, other_flows, "theirs.json", states=["rejected", "rejected"], errors=[INVALID, INVALID]
    )
    session.commit()

    found = {u.name: u for u in recent_uploads(session, partner_scope(session, partner))}
    assert list(found) == ["nobody.json", "fixed.json", "down.json", "slow.json", "bad.json", "good.json"]
    assert {name: u.state for name, u in found.items()} == {
        "nobody.json": "received",
        "fixed.json": "delivered",
        "down.json": "received",  # a destination's failure is the operator's: never shown
        "slow.json": "received",
        "bad.json": "rejected",
        "good.json": "delivered",
    }
    assert [u.message for u in found.values() if u.state != "rejected"] == [None] * 5
    message = found["bad.json"].message
    assert message is not None and SECRET not in message and message.startswith("not valid JSON: ")

    # Exactly the `error` that `tradelane transfers --json` prints for that transfer.
    result = CliRunner().invoke(app, ["transfers", "--json", "--limit", "200"])
    assert result.exit_code == 0, result.output
    shown = {row["id"]: row["error"] for row in json.loads(result.output)}
    assert message == shown[rejected[0].id]
    scope = home_scope(session)
    views = transfers.scrubbed(transfers.recent(session, scope, 200), endpoint_rows.scrubber(session, scope))
    assert message == next(v.error for v in views if v.id == rejected[0].id)


def test_a_users_outbox_files_are_told_in_the_senders_words(session: Session, tmp_path: Path) -> None:
    partner, flows = partner_with_two_flows(session, tmp_path)
    receipt, [transfer, _] = arrive(
        session, partner, flows, "po.json", states=["rejected", "delivered"], errors=[INVALID, None]
    )
    receipt.partner_id, receipt.user_id = None, 424242  # put in by an account user, through an outbox
    transfer.error_kind = "rejected"
    session.add_all([receipt, transfer])
    session.flush()
    scope = scope_for_login(session, partner.account_id, kind="user", principal_id=424242, name="a@x.example")
    [upload] = recent_uploads(session, scope)
    assert (upload.name, upload.state) == ("po.json", "rejected")
    assert upload.message == "the receiver's checks rejected the file"  # never the receiver's error


def test_only_a_partner_or_a_user_has_uploads(session: Session) -> None:
    with pytest.raises(Forbidden):
        recent_uploads(session, home_scope(session))
    assert Receipt  # the store's receipts are the uploads
