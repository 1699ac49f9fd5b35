"""Accounts as tenants through the `tradelane` command: `account add/list/remove`, `account user ...`,
`--account`/`TRADELANE_ACCOUNT` on the config commands, `apply`'s `account:`, login names unique on
the instance, and one account never reaching another's objects by name or by id."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from core import partners
from core.db import session_scope
from core.intake import receive_stream
from core.models import AccountUser, AuditEvent, LoginFailure, Transfer, utcnow
from tests.tenancy import account_scope

runner = CliRunner()
PASSWORD = "Tr4de-lane-Pass"


def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result.output


def two_accounts(tmp_path: Path) -> None:
    """home and globex, each with a partner, an endpoint and a data flow of the same names."""
    run("account", "add", "globex", "--email", "Admin@Globex.example", "--password", PASSWORD)
    for account, partner in (("home", "acme"), ("globex", "initech")):
        out = tmp_path / f"out-{account}"
        out.mkdir()
        run("partner", "add", partner, "--password", PASSWORD, "--account", account)
        run("endpoint", "add", "archive", "--type", "file", "--path", str(out), "--account", account)
        run(
            "flow",
            "add",
            "inbound",
            "--source",
            f"mailbox:{partner}",
            "--dest",
            "archive",
            "--account",
            account,
        )


def test_account_add_list_and_its_admin(home: Path) -> None:
    shown = json.loads(
        run("account", "add", "globex", "--email", "Admin@Globex.example", "--password", PASSWORD, "--json")
    )
    assert shown["account"] == "globex" and shown["admin"] == "admin@globex.example"  # stored lower-cased
    listed = {a["name"]: a for a in json.loads(run("account", "list", "--json"))}
    assert set(listed) == {"home", "globex"}
    assert listed["globex"]["users"] == 1 and listed["home"]["users"] == 0
    users = json.loads(run("account", "user", "list", "--account", "globex", "--json"))
    assert [(u["email"], u["role"]) for u in users] == [("admin@globex.example", "admin")]
    # Refusals, each with a reason and nothing created.
    assert "409" in run(
        "account", "add", "globex", "--email", "x@y.example", "--password", PASSWORD, ok=False
    )
    taken = run(
        "account", "add", "other", "--email", "ADMIN@globex.example", "--password", PASSWORD, ok=False
    )
    assert "is taken on this instance" in taken
    malformed = run("account", "add", "other", "--email", "not-an-address", "--password", PASSWORD, ok=False)
    assert "400: not an email address" in malformed  # a refusal says its status, as every other
    assert "reserved" in run(
        "account", "add", "b2b", "--email", "a@b.example", "--password", PASSWORD, ok=False
    )
    assert "invalid name" in run(
        "account", "add", "a/b", "--email", "a@b.example", "--password", PASSWORD, ok=False
    )
    assert "too short" in run(
        "account", "add", "shorty", "--email", "s@b.example", "--password", "x", ok=False
    )
    assert "not an email" in run(
        "account", "add", "nomail", "--email", "nobody", "--password", PASSWORD, ok=False
    )
    assert {a["name"] for a in json.loads(run("account", "list", "--json"))} == {"home", "globex"}


def test_account_users_lifecycle(home: Path) -> None:
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    run("account", "user", "add", "ops@globex.example", "--role", "operator", "--password", PASSWORD,
        "--account", "globex")  # fmt: skip
    # home gets its first admin the same way (the migration creates no user).
    run("account", "user", "add", "root@home.example", "--role", "admin", "--password", PASSWORD)
    assert "is taken" in run(
        "account", "user", "add", "OPS@globex.example", "--password", PASSWORD, ok=False
    )  # unique across accounts, case-insensitive
    assert "unknown role" in run(
        "account", "user", "add", "x@globex.example", "--role", "boss", "--password", PASSWORD,
        "--account", "globex", ok=False,
    )  # fmt: skip
    assert "role read-only" in run("account", "user", "set", "ops@globex.example", "--role", "read-only",
                                   "--account", "globex")  # fmt: skip
    assert "disabled" in run(
        "account", "user", "set", "ops@globex.example", "--disable", "--account", "globex"
    )
    # The last admin cannot be demoted, disabled or removed: the account would have no one to run it.
    last = run("account", "user", "remove", "admin@globex.example", "--account", "globex", ok=False)
    assert "last admin" in last
    # Another account's user is not found by name.
    assert "404" in run("account", "user", "remove", "ops@globex.example", ok=False)
    run("account", "user", "remove", "ops@globex.example", "--account", "globex")
    users = json.loads(run("account", "user", "list", "--account", "globex", "--json"))
    assert [u["email"] for u in users] == ["admin@globex.example"]
    # Its address is free again, for any account.
    run("account", "user", "add", "ops@globex.example", "--password", PASSWORD)
    assert "was not locked" in run("account", "user", "unlock", "ops@globex.example")
    with session_scope() as session:  # as the login policy leaves it after guessing from many places
        user = session.exec(select(AccountUser).where(AccountUser.email == "ops@globex.example")).one()
        user.locked_until = utcnow() + timedelta(minutes=15)
        session.add(user)
        session.add(LoginFailure(address="203.0.113.9", username=user.email, protocol="rest"))
    assert "unlocked" in run("account", "user", "unlock", "OPS@globex.example")
    with session_scope() as session:
        user = session.exec(select(AccountUser).where(AccountUser.email == "ops@globex.example")).one()
        assert user.locked_until is None
        assert session.exec(select(LoginFailure).where(LoginFailure.username == user.email)).all() == []
    listed = json.loads(run("account", "user", "list", "--json"))
    assert [(u["email"], u["locked"]) for u in listed] == [
        ("ops@globex.example", False),
        ("root@home.example", False),
    ]


def test_partner_names_are_login_names_unique_on_the_instance(home: Path) -> None:
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    run("partner", "add", "acme", "--password", PASSWORD)
    refused = run("partner", "add", "acme", "--password", PASSWORD, "--account", "globex", ok=False)
    assert "the login name 'acme' is taken on this instance" in refused and "home" not in refused
    run("partner", "remove", "acme")
    run("partner", "add", "acme", "--password", PASSWORD, "--account", "globex")  # freed by removal
    assert (home / "mailboxes" / "globex" / "acme" / "upload").is_dir()  # the account's own folder


def test_every_config_command_acts_in_its_account_only(home: Path, tmp_path: Path) -> None:
    two_accounts(tmp_path)

    def names(*args: str, account: str) -> list[str]:
        return [x["name"] for x in json.loads(run(*args, "--json", "--account", account))]

    assert names("partner", "list", account="home") == ["acme"]
    assert names("partner", "list", account="globex") == ["initech"]
    # TRADELANE_ACCOUNT picks the account as --account does.
    listed = json.loads(run("partner", "list", "--json", env={"TRADELANE_ACCOUNT": "globex"}))
    assert [p["name"] for p in listed] == ["initech"]
    assert names("endpoint", "list", account="globex") == ["archive"]
    flows = json.loads(run("flow", "list", "--json", "--account", "globex"))
    assert [(f["name"], f["source"]) for f in flows] == [("inbound", "mailbox:initech/upload")]
    # By name, another account's objects do not exist.
    assert "no partner named 'initech'" in run("partner", "set", "initech", "--disable", ok=False)
    assert "no partner named 'acme'" in run("partner", "remove", "acme", "--account", "globex", ok=False)
    assert "no partner" in run(
        "flow",
        "add",
        "steal",
        "--source",
        "mailbox:acme",
        "--dest",
        "archive",
        "--account",
        "globex",
        ok=False,
    )
    assert "no partner" in run(
        "flow", "add", "push", "--source", "mailbox:initech", "--dest", "mailbox:acme", "--account", "globex",
        ok=False,
    )  # fmt: skip
    run("flow", "disable", "inbound", "--account", "globex")
    assert json.loads(run("flow", "list", "--json"))[0]["enabled"] is True  # home's flow untouched
    run("endpoint", "remove", "archive", "--account", "globex", "--force")
    assert names("endpoint", "list", account="home") == ["archive"]
    assert "no account named 'nowhere'" in run("partner", "list", "--account", "nowhere", ok=False)


def test_transfers_replay_and_audit_by_id_stay_in_their_account(home: Path, tmp_path: Path) -> None:
    two_accounts(tmp_path)
    with session_scope() as session:
        initech = partners.require(session, account_scope(session, "globex"), "initech")
    receipt = receive_stream(initech, "upload", "po.json", io.BytesIO(b"{}"), protocol="rest")
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
        transfer.state = "failed"
        session.add(transfer)
    assert receipt.visible_path == "globex/initech/upload/po.json"  # the account's own mailbox path
    theirs = json.loads(run("transfers", "--json", "--account", "globex"))
    assert [t["id"] for t in theirs] == [transfer.id]
    assert json.loads(run("transfers", "--json")) == []  # home sees none of globex's transfers
    # By id, another account's transfer answers as one that does not exist.
    assert f"no transfer {transfer.id}" in run("replay", str(transfer.id), ok=False)
    run("replay", str(transfer.id), "--account", "globex")
    audit_home = json.loads(run("audit", "--json", "--limit", "500"))
    audit_globex = json.loads(run("audit", "--json", "--limit", "500", "--account", "globex"))
    assert not any(e["target"] in ("initech", "globex") for e in audit_home)
    assert {"partner.add", "flow.add", "transfer.replay"} <= {e["action"] for e in audit_globex}
    assert not any(e["target"] == "acme" for e in audit_globex)
    with session_scope() as session:
        replayed = session.exec(select(AuditEvent).where(AuditEvent.action == "transfer.replay")).one()
        assert replayed.account_id == account_scope(session, "globex").account_id


def test_apply_takes_the_account_from_the_file_or_the_option(home: Path, tmp_path: Path) -> None:
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    declared = tmp_path / "globex.yaml"
    declared.write_text(
        f"account: globex\npartners:\n  - name: initech\n    password: {PASSWORD}\n"
        f"endpoints:\n  - name: archive\n    type: file\n    path: {tmp_path / 'g'}\n"
        "flows:\n  - name: inbound\n    source: mailbox:initech\n    dest: archive\n"
    )
    assert "created" in run("apply", "-f", str(declared))
    assert "unchanged" in run("apply", "-f", str(declared), "--account", "globex")
    assert json.loads(run("partner", "list", "--json")) == []
    assert [p["name"] for p in json.loads(run("partner", "list", "--json", "--account", "globex"))] == [
        "initech"
    ]
    mismatch = run("apply", "-f", str(declared), "--account", "home", ok=False)
    assert "the file says account: globex but --account is home" in mismatch
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"partners:\n  - name: hooli\n    password: {PASSWORD}\n")
    run("apply", "-f", str(plain), env={"TRADELANE_ACCOUNT": "globex"})
    assert {p["name"] for p in json.loads(run("partner", "list", "--json", "--account", "globex"))} == {
        "initech",
        "hooli",
    }
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text("account: nowhere\npartners: []\n")
    assert "no account named 'nowhere'" in run("apply", "-f", str(nowhere), ok=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("account: [globex]\n")
    assert "account: expected the name of an account" in run("apply", "-f", str(bad), ok=False)


def test_account_remove_only_when_empty(home: Path) -> None:
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    run("partner", "add", "initech", "--password", PASSWORD, "--account", "globex")
    assert "still has 1 partners" in run("account", "remove", "globex", ok=False)
    assert "cannot be removed" in run("account", "remove", "home", ok=False)
    run("partner", "remove", "initech", "--account", "globex")
    run("account", "remove", "globex")
    assert [a["name"] for a in json.loads(run("account", "list", "--json"))] == ["home"]
    # Name and admin address are free again.
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)


def test_as2_ids_are_unique_on_the_instance_and_identities_stay_in_their_account(home: Path) -> None:
    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    run("as2", "org", "create", "--as2-id", "HOMEORG")
    # /as2/receive routes by AS2-To alone: an AS2 ID names one identity on the instance.
    taken = run("as2", "org", "create", "--as2-id", "HOMEORG", "--account", "globex", ok=False)
    assert "409: the AS2 ID 'HOMEORG' is taken on this instance" in taken
    run("as2", "org", "create", "--as2-id", "GLOBEXORG", "--account", "globex")
    assert [o["as2_id"] for o in json.loads(run("as2", "org", "show", "--json", "--account", "globex"))] == [
        "GLOBEXORG"
    ]
    assert [o["as2_id"] for o in json.loads(run("as2", "org", "show", "--json"))] == ["HOMEORG"]
    assert "no AS2 organization 'GLOBEXORG'" in run("as2", "org", "cert", "--as2-id", "GLOBEXORG", ok=False)
    assert "BEGIN CERTIFICATE" in run("as2", "org", "cert", "--account", "globex")
    assert json.loads(run("as2", "partner", "list", "--json", "--account", "globex")) == []


def test_an_account_user_is_locked_on_guesses_from_several_addresses_in_any_spelling(home: Path) -> None:
    """The one login policy for users too: guesses under any capitalisation of the address count
    toward the lock, which ends its logins until `account user unlock`."""
    from core.login import LoginPolicy, LoginRefused

    run("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
    policy = LoginPolicy()
    spellings = ("admin@globex.example", "ADMIN@globex.example", "Admin@Globex.Example")
    for i in range(10):  # from three addresses, under each one's ban threshold
        with pytest.raises(LoginRefused):
            policy.password(spellings[i % 3], "guess-guess-guess", f"198.51.100.{i % 3 + 1}", "rest")
    with pytest.raises(LoginRefused) as locked:
        policy.password("admin@globex.example", PASSWORD, "203.0.113.7", "sftp")
    assert "locked" in locked.value.reason
    audit_globex = json.loads(run("audit", "--json", "--account", "globex", "--action", "account.user.lock"))
    assert [e["target"] for e in audit_globex] == ["admin@globex.example"]
    assert "unlocked" in run("account", "user", "unlock", "admin@globex.example", "--account", "globex")
    assert policy.password("Admin@Globex.example", PASSWORD, "203.0.113.7", "ftp").kind == "user"
