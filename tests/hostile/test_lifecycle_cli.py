"""The lifecycle an operator runs with the `tradelane` command: removing partners, endpoints and data
flows that are in use, re-using names, partner and flow settings, the password policy, `apply`
refusing what it does not know, and reading the audit trail and the transfer history at 80 columns.

In-process (CliRunner) against a throwaway home, plus `python -m cli.main` where the terminal width
matters; files arrive through the real intake and are carried by the real delivery steps.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from cli.history import parse_when, transfers_table
from cli.main import app
from core import delivery, partners, transfers
from core.config import get_settings
from core.db import HOME_ACCOUNT, session_scope
from core.delivery import Outcome
from core.endpoints.mailbox import mailbox_root_for
from core.intake import receive_stream
from core.login import LoginPolicy, LoginRefused
from core.models import DataFlow, Endpoint, Partner, Receipt, Transfer, TransferState
from tests.isolation import isolated_home
from tests.tenancy import home_scope

runner = CliRunner()
PASSWORD = "Lifecycle-Pass-1"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in [k for k in os.environ if k.startswith("TRADELANE_")]:
        monkeypatch.delenv(key)
    with isolated_home(tmp_path / "home") as path:
        yield path


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    assert "Traceback" not in result.output
    if not ok:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def one_line(text: str) -> str:
    return " ".join(text.split())


def partner_row(name: str) -> Partner:
    with session_scope() as session:
        return session.exec(select(Partner).where(col(Partner.name).startswith(name))).all()[-1]


def upload(name: str, file: str, data: bytes) -> Receipt:
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), name)
    return receive_stream(partner, "upload", file, io.BytesIO(data), protocol="rest")


def transfer_ids() -> list[int]:
    with session_scope() as session:
        return [t.id for t in session.exec(select(Transfer).order_by(col(Transfer.id))) if t.id]


def deliver(ids: list[int]) -> list[TransferState]:
    jobs = delivery.start(ids)
    return delivery.record_outcomes([Outcome.delivered(job, delivery.push(job)) for job in jobs])


def setup_flow(tmp_path: Path, partner: str = "acme") -> Path:
    out = tmp_path / f"out-{partner}"
    out.mkdir()
    run("partner", "add", partner, "--password", PASSWORD)
    run("endpoint", "add", f"{partner}-dir", "--type", "file", "--path", str(out))
    run("flow", "add", f"{partner}-flow", "--source", f"mailbox:{partner}", "--dest", f"{partner}-dir")
    return out


# --- removing what is in use (issue item 3) -------------------------------------------------------


def test_partner_remove_names_its_data_flows_and_force_disables_them(home: Path, tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme")
    run("partner", "add", "globex", "--password", PASSWORD)
    run("flow", "add", "to-acme", "--source", "mailbox:globex", "--dest", "mailbox:acme")
    refused = one_line(run("partner", "remove", "acme", ok=False))
    assert "acme-flow" in refused and "to-acme" in refused and "--force" in refused
    assert json.loads(run("partner", "list", "--json"))[0]["name"] == "acme"  # nothing changed
    out = one_line(run("partner", "remove", "acme", "--force"))
    assert "data flows disabled: acme-flow, to-acme" in out
    flows = {f["name"]: f for f in json.loads(run("flow", "list", "--json"))}
    assert not flows["acme-flow"]["enabled"] and not flows["to-acme"]["enabled"]
    # A flow into the removed partner's mailbox cannot start again until pointed elsewhere...
    assert "was removed" in one_line(run("flow", "enable", "to-acme", ok=False))
    run("partner", "add", "acme", "--password", "New-Company-Pass-2")
    assert "was removed" in one_line(run("flow", "enable", "to-acme", ok=False))  # not at the new acme
    run("flow", "set", "to-acme", "--dest", "mailbox:acme", "--enable")  # unless the operator says so
    assert {f["name"]: f for f in json.loads(run("flow", "list", "--json"))}["to-acme"]["enabled"]


def test_endpoint_remove_in_use_is_refused_by_name_and_force_disables(home: Path, tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme")
    refused = one_line(run("endpoint", "remove", "acme-dir", ok=False))
    assert refused.startswith("error: 409: endpoint 'acme-dir' is used by data flow(s) acme-flow")
    assert "IntegrityError" not in refused
    out = one_line(run("endpoint", "remove", "acme-dir", "--force"))
    assert "endpoint acme-dir removed" in out and "data flows disabled: acme-flow" in out
    assert [e["name"] for e in json.loads(run("endpoint", "list", "--json"))] == []
    assert "was removed" in one_line(run("flow", "enable", "acme-flow", ok=False))
    run("endpoint", "add", "acme-dir", "--type", "file", "--path", str(tmp_path))  # the name is free
    run("flow", "set", "acme-flow", "--dest", "acme-dir", "--enable")
    run("endpoint", "add", "unused", "--type", "file", "--path", str(tmp_path))
    run("endpoint", "remove", "unused")  # nothing refers to it: deleted outright
    with session_scope() as session:
        assert session.exec(select(Endpoint).where(col(Endpoint.name).startswith("unused"))).all() == []


# --- a removed partner's storage (issue item 2) ---------------------------------------------------


def test_a_removed_partners_files_are_kept_out_of_reach_and_its_transfers_still_carry(
    home: Path, tmp_path: Path
) -> None:
    out = setup_flow(tmp_path, "t2")
    upload("t2", "pending.edi", b"ISA*waiting")
    (mailbox_root_for(HOME_ACCOUNT, "t2") / "download" / "for-t2.edi").write_bytes(b"old t2's file")
    run("partner", "remove", "t2", "--force")
    removed = partner_row("t2.removed.")
    kept = get_settings().mailbox_root / ".removed" / f"partner-{removed.id}"
    assert (kept / "download" / "for-t2.edi").read_bytes() == b"old t2's file"
    run("partner", "add", "t2", "--password", "Other-Company-Pass")
    home_dir = mailbox_root_for(HOME_ACCOUNT, "t2")
    assert sorted(os.listdir(home_dir)) == ["download", "upload"]
    assert os.listdir(home_dir / "download") == os.listdir(home_dir / "upload") == []
    # The old t2's pending file still goes where its data flow sends it (enabled again on purpose).
    run("flow", "enable", "t2-flow")
    assert deliver(transfer_ids()) == [TransferState.delivered]
    assert (out / "pending.edi").read_bytes() == b"ISA*waiting"
    # ...and can be replayed like any other.
    (out / "pending.edi").unlink()
    with session_scope() as session:
        copy = transfers.replay(session, home_scope(session), transfer_ids()[0])
    assert copy.id is not None and deliver([copy.id]) == [TransferState.delivered]
    assert (out / "pending.edi").read_bytes() == b"ISA*waiting"


def test_purge_deletes_the_files_and_what_waits_is_still_carried(home: Path, tmp_path: Path) -> None:
    """Each upload's bytes are kept by receipt (core/receipt_files.py), outside the partner's home:
    purging the home loses nothing a data flow still has to carry."""
    out = setup_flow(tmp_path, "acme")
    upload("acme", "waiting.edi", b"ISA*waiting")
    removed = run("partner", "remove", "acme", "--force", "--purge")
    assert "deleted" in removed
    assert not mailbox_root_for(HOME_ACCOUNT, "acme").exists()
    assert not (get_settings().mailbox_root / ".removed").exists()
    run("flow", "enable", "acme-flow")  # disabled by --force; enabled again on purpose
    assert deliver(transfer_ids()) == [TransferState.delivered]
    assert (out / "waiting.edi").read_bytes() == b"ISA*waiting"


def test_partner_add_never_adopts_a_folder_left_at_its_name(home: Path) -> None:
    leftover = mailbox_root_for(HOME_ACCOUNT, "newco")
    (leftover / "download").mkdir(parents=True)
    (leftover / "download" / "someone-elses.edi").write_bytes(b"not newco's")
    run("partner", "add", "newco", "--password", PASSWORD)
    assert os.listdir(leftover / "download") == []
    [aside] = (get_settings().mailbox_root / ".removed").glob("found-newco-*")
    assert (aside / "download" / "someone-elses.edi").read_bytes() == b"not newco's"


# --- data flows: set and remove -------------------------------------------------------------------


def test_flow_set_changes_only_what_it_is_given(home: Path, tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme")
    out = one_line(
        run(
            "flow", "set", "acme-flow", "--pattern", "*.edi", "--validate", "x12",
            "--validate", "max_size=1MiB", "--retries", "2", "--retry-delay", "0.5",
        )
    )  # fmt: skip
    assert "pattern *.edi" in out and "checks x12, max_size" in out and "retries 2" in out
    [flow] = json.loads(run("flow", "list", "--json"))
    assert flow["pattern"] == "*.edi" and flow["retries"] == 2 and flow["dest"] == "acme-dir"
    assert [v["type"] for v in flow["validators"]] == ["x12", "max_size"]
    run("flow", "set", "acme-flow", "--no-validate", "--disable")
    [flow] = json.loads(run("flow", "list", "--json"))
    assert flow["validators"] == [] and not flow["enabled"] and flow["pattern"] == "*.edi"
    assert "nothing changed" in run("flow", "set", "acme-flow", "--pattern", "*.edi")
    assert "retries" in run("flow", "set", "acme-flow", "--retries", "-1", ok=False)
    assert "no data flow" in run("flow", "set", "nope", "--retries", "1", ok=False)


def test_flow_remove_refuses_while_files_wait_and_keeps_the_history(home: Path, tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme")
    upload("acme", "a.edi", b"a")
    refused = one_line(run("flow", "remove", "acme-flow", ok=False))
    assert "1 transfer(s) pending or running" in refused and "--force" in refused
    assert "1 pending or running transfer(s) marked failed" in one_line(
        run("flow", "remove", "acme-flow", "--force")
    )
    [row] = json.loads(run("transfers", "--json"))
    assert (
        row["state"] == "failed"
        and "removed" in row["error"]
        and row["flow"].startswith("acme-flow.removed.")
    )
    assert json.loads(run("flow", "list", "--json")) == []
    assert "was removed" in one_line(run("replay", str(row["id"]), ok=False))
    run("flow", "add", "acme-flow", "--source", "mailbox:acme", "--dest", "acme-dir")  # the name is free
    run("flow", "add", "spare", "--source", "mailbox:acme", "--dest", "acme-dir")
    run("flow", "remove", "spare")  # no history: deleted outright
    with session_scope() as session:
        assert session.exec(select(DataFlow).where(col(DataFlow.name).startswith("spare"))).all() == []


# --- partner settings, the password policy, unlock ------------------------------------------------


def test_the_password_policy_applies_to_add_set_and_apply(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "too short: at least 12" in one_line(
        run("partner", "add", "acme", "--password", "Sh0rt!", ok=False)
    )
    assert "partner's name" in one_line(
        run("partner", "add", "acme", "--password", "my-ACME-password", ok=False)
    )
    assert "commonly used" in one_line(run("partner", "add", "acme", "--password", "Password1234", ok=False))
    run("partner", "add", "acme", "--password", PASSWORD)
    assert "too short" in one_line(run("partner", "set", "acme", "--password", "short", ok=False))
    spec = tmp_path / "p.yaml"
    spec.write_text("partners:\n  - {name: globex, password: qwertyuiop123}\n")
    assert "partners[0]: the password is on a list" in one_line(run("apply", "-f", str(spec), ok=False))
    monkeypatch.setenv("TRADELANE_PASSWORD_MIN_LENGTH", "20")
    get_settings.cache_clear()
    assert "at least 20" in one_line(run("partner", "set", "acme", "--password", "Twelve-Chars-Ok", ok=False))


def test_partner_set_validates_and_partner_list_shows_it(home: Path) -> None:
    run("partner", "add", "acme", "--password", PASSWORD, "--email", "edi@acme.example")
    assert "not an IP network" in one_line(
        run("partner", "set", "acme", "--allow-ip", "10.0.0.300/8", ok=False)
    )
    assert "invalid size" in one_line(run("partner", "set", "acme", "--max-file-size", "lots", ok=False))
    assert "at least 1" in one_line(run("partner", "set", "acme", "--max-sessions", "0", ok=False))
    assert "not an email" in one_line(run("partner", "set", "acme", "--email", "nobody", ok=False))
    run(
        "partner",
        "set",
        "acme",
        "--allow-ip",
        "203.0.113.0/24",
        "--max-file-size",
        "50MiB",
        "--max-sessions",
        "4",
    )
    [row] = json.loads(run("partner", "list", "--json"))
    assert row["allowed_networks"] == ["203.0.113.0/24"] and row["max_file_bytes"] == 50 * 1024**2
    assert row["max_sessions"] == 4 and row["email"] == "edi@acme.example" and row["enabled"]
    table = run("partner", "list")
    assert "203.0.113.0/24" in table and "50MiB" in table
    run(
        "partner",
        "set",
        "acme",
        "--max-file-size",
        "default",
        "--max-sessions",
        "default",
        "--clear-allow-ip",
    )
    [row] = json.loads(run("partner", "list", "--json"))
    assert row["allowed_networks"] == [] and row["max_file_bytes"] is None and row["max_sessions"] is None


def test_unlock_from_the_cli_lifts_a_lock_and_an_address_ban(home: Path) -> None:
    run("partner", "add", "acme", "--password", PASSWORD)
    policy = LoginPolicy()
    for i in range(10):  # from three addresses, under each one's ban threshold
        with pytest.raises(LoginRefused):
            policy.password("acme", "guess", f"198.51.100.{i % 3 + 1}", "rest")
    for _ in range(5):
        with pytest.raises(LoginRefused):
            policy.password("nobody", "guess", "192.0.2.9", "rest")
    with pytest.raises(LoginRefused) as banned:
        policy.password("acme", PASSWORD, "192.0.2.9", "rest")
    assert banned.value.banned_for > 0
    with pytest.raises(LoginRefused) as locked:
        policy.password("acme", PASSWORD, "203.0.113.7", "rest")
    assert locked.value.banned_for == 0 and "locked" in locked.value.reason
    out = run("partner", "unlock", "acme", "--address", "192.0.2.9")
    assert "acme unlocked" in one_line(out) and "ban lifted" in out
    assert policy.password("acme", PASSWORD, "192.0.2.9", "rest").name == "acme"
    assert "was not locked" in run("partner", "unlock", "acme")


# --- apply: no silent ignoring --------------------------------------------------------------------


def test_apply_refuses_unknown_keys_with_their_path_and_applies_every_setting(
    home: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "t.yaml"
    cases = {
        "partners:\n  - {name: acme, password: Lifecycle-Pass-1, allowed_network: [10.0.0.0/8]}\n": (
            "partners[0].allowed_network: unknown key for a partner"
        ),
        "endpoints:\n  - {name: a, type: file, path: /tmp, bucket: b}\n": "endpoints[0].bucket: unknown key",
        "endpoints:\n  - {name: a, type: s3, bucket: b, secrets: {acces_key_id: k}}\n": (
            "endpoints[0].secrets.acces_key_id: unknown key"
        ),
        "flows:\n  - {name: f, source: mailbox:a, dest: b, retry: 3}\n": "flows[0].retry: unknown key",
        "partners:\n  - {name: acme, password: Lifecycle-Pass-1, max_sessions: many}\n": (
            "partners[0].max_sessions: expected a whole number"
        ),
        "partners:\n  - {name: acme, password: Lifecycle-Pass-1, allowed_networks: [not-a-net]}\n": (
            "partners[0].allowed_networks[0]: not an IP network"
        ),
        "partners:\n  - {name: acme, password: Lifecycle-Pass-1, max_file_size: huge}\n": (
            "partners[0].max_file_size: invalid size"
        ),
    }
    for text, message in cases.items():
        spec.write_text(text)
        assert message in one_line(run("apply", "-f", str(spec), ok=False)), text
    assert json.loads(run("partner", "list", "--json")) == []  # nothing was applied
    spec.write_text(
        "partners:\n"
        "  - name: acme\n"
        "    password: Lifecycle-Pass-1\n"
        "    email: edi@acme.example\n"
        "    allowed_networks: [10.0.0.0/8]\n"
        "    max_file_bytes: 1000\n"
        "    max_sessions: 2\n"
    )
    assert "partner acme: created" in run("apply", "-f", str(spec))
    assert "partner acme: unchanged" in run("apply", "-f", str(spec))
    [row] = json.loads(run("partner", "list", "--json"))
    assert (
        row["allowed_networks"] == ["10.0.0.0/8"]
        and row["max_file_bytes"] == 1000
        and row["max_sessions"] == 2
    )
    with pytest.raises(LoginRefused):  # the allow-list is in force: not ignored
        LoginPolicy().password("acme", PASSWORD, "127.0.0.1", "rest")
    spec.write_text(spec.read_text().replace("max_file_bytes: 1000", "max_file_size: 2KiB"))
    assert "partner acme: updated" in run("apply", "-f", str(spec))
    assert json.loads(run("partner", "list", "--json"))[0]["max_file_bytes"] == 2048


# --- the audit trail ------------------------------------------------------------------------------


def test_audit_shows_logins_failures_uploads_and_changes_with_filters(home: Path, tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme")
    run("partner", "add", "globex", "--password", PASSWORD)
    policy = LoginPolicy()
    policy.password("acme", PASSWORD, "198.51.100.4", "sftp")
    with pytest.raises(LoginRefused):
        policy.password("acme", "wrong", "198.51.100.5", "ftp")
    upload("acme", "po.edi", b"ISA")
    run("partner", "set", "acme", "--max-sessions", "3")
    events = json.loads(run("audit", "--partner", "acme", "--json"))
    actions = [e["action"] for e in events]
    assert {"login", "login.failed", "upload", "partner.set", "partner.add"} <= set(actions)
    assert all(e["actor"] == "partner:acme" or e["target"] == "acme" for e in events)
    failed = next(e for e in events if e["action"] == "login.failed")
    assert failed["remote_addr"] == "198.51.100.5" and failed["detail"]["protocol"] == "ftp"
    assert [e["action"] for e in json.loads(run("audit", "--action", "login", "--json"))] == [
        "login.failed",
        "login",
    ]
    assert json.loads(run("audit", "--since", "2099-01-01", "--json")) == []
    assert len(json.loads(run("audit", "--until", "1h", "--json"))) == 0
    assert "not a time" in one_line(run("audit", "--since", "last tuesday", ok=False))
    table = _cli_at_width(80, "audit", "--partner", "acme")
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert "login.failed" in table and "198.51.100.5" in table


# --- the transfer history: filters, and readable at 80 columns ------------------------------------


def _cli_at_width(columns: int, *args: str) -> str:
    env = {**os.environ, "COLUMNS": str(columns)}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _history(tmp_path: Path) -> None:
    setup_flow(tmp_path, "acme-corporation-international")
    setup_flow(tmp_path, "globex")
    upload("acme-corporation-international", "purchase_order_850_with_a_very_long_name_indeed.json", b"{}")
    upload("globex", "invoice.edi", b"ISA")
    ids = transfer_ids()
    deliver(ids[:1])
    with session_scope() as session:
        first = session.get(Transfer, ids[0])
        assert first is not None
        first.flow_run_id = "0b7c1e2a-5f0e-4c59-9d63-2f1a7e4b8c11"
        session.add(first)
        second = session.get(Transfer, ids[1])
        assert second is not None
        transfers.finish(session, second, TransferState.failed, error="the HTTP API answered 503 three times")


def test_transfers_filter_by_partner_destination_and_time(home: Path, tmp_path: Path) -> None:
    _history(tmp_path)
    by = {
        "partner": json.loads(run("transfers", "--json", "--partner", "globex")),
        "dest": json.loads(run("transfers", "--json", "--dest", "acme-corporation-international-dir")),
        "since": json.loads(run("transfers", "--json", "--since", "10m")),
        "future": json.loads(run("transfers", "--json", "--since", "2099-01-01T00:00")),
        "until": json.loads(run("transfers", "--json", "--until", "2000-01-01")),
    }
    assert [r["file"] for r in by["partner"]] == ["invoice.edi"]
    assert [r["partner"] for r in by["dest"]] == ["acme-corporation-international"]
    assert len(by["since"]) == 2 and by["future"] == [] and by["until"] == []
    assert by["partner"][0]["dest"] == "globex-dir"
    assert "--since" in one_line(run("transfers", "--since", "yesterday-ish", ok=False))


def test_transfers_fit_80_columns_and_wide_and_json_never_cut_the_run_link(
    home: Path, tmp_path: Path
) -> None:
    _history(tmp_path)
    link = f"{get_settings().prefect_ui_url}/runs/flow-run/0b7c1e2a-5f0e-4c59-9d63-2f1a7e4b8c11"
    narrow = _cli_at_width(80, "transfers")
    lines = narrow.splitlines()
    assert all(len(line) <= 80 for line in lines), narrow
    assert "time (UTC)" in narrow and "dest" in narrow and "state" in narrow
    assert "delivered" in narrow and "failed" in narrow and "globex-dir" in narrow
    stamp = datetime.now(UTC).strftime("%m-%d")
    assert sum(stamp in line for line in lines) == 2  # each row shows when
    assert "…" in narrow and "run links and 1 error(s): --wide or --json" in narrow
    assert "flow-run/0b7c" not in narrow  # no cut link: none at all at this width
    wide = _cli_at_width(80, "transfers", "--wide")
    assert link in wide and "the HTTP API answered 503 three times" in wide
    assert "purchase_order_850_with_a_very_long_name_indeed.json" in wide
    roomy = _cli_at_width(200, "transfers")
    assert link in roomy and all(len(line) <= 200 for line in roomy.splitlines())
    assert json.loads(run("transfers", "--json"))[-1]["run_url"] == link


def test_transfers_table_fits_any_width(home: Path, tmp_path: Path) -> None:
    from rich.console import Console

    _history(tmp_path)
    with session_scope() as session:
        rows = transfers.recent(session, home_scope(session))
    for width in (60, 80, 100, 120, 159, 160, 220):
        console = Console(width=width, record=True, color_system=None)
        table, _ = transfers_table(rows, "http://127.0.0.1:4200", width)
        console.print(table)
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
        assert "delivered" in text and "failed" in text


def test_when_accepts_dates_times_and_ages() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert parse_when("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("2026-12-01T14:30+01:00", now) == datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("7d", now) == now - timedelta(days=7)
    with pytest.raises(ValueError, match="not a time"):
        parse_when("soon", now)


def test_a_name_freed_before_this_release_does_not_inherit_the_old_mailbox_destination(
    home: Path, tmp_path: Path
) -> None:
    run("partner", "add", "globex", "--password", PASSWORD)
    run("partner", "add", "t2", "--password", PASSWORD)
    run("flow", "add", "to-t2", "--source", "mailbox:globex", "--dest", "mailbox:t2")
    with session_scope() as session:  # what `partner remove` did before: rename, disable, nothing else
        old = partners.require(session, home_scope(session), "t2")
        old.name, old.enabled, old.removed_at = f"t2.removed.{old.id}", False, old.created_at
        session.add(old)
    out = run("partner", "add", "t2", "--password", "Other-Company-Pass")
    assert "added" in out
    [flow] = [f for f in json.loads(run("flow", "list", "--json")) if f["name"] == "to-t2"]
    assert not flow["enabled"] and flow["dest"].startswith("mailbox:t2.removed.")


def test_a_login_costs_two_indexed_reads_and_its_audit_row(home: Path) -> None:
    from sqlalchemy import event, text

    from core.db import get_engine

    run("partner", "add", "acme", "--password", PASSWORD)
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0].upper())

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        LoginPolicy().password("acme", PASSWORD, "198.51.100.20", "sftp")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements.count("SELECT") == 2 and statements.count("INSERT") == 1, statements
    with engine.connect() as conn:  # the ban lookup and the counting use their indexes
        plans = [
            " ".join(str(row) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
            for query in (
                "SELECT max(until) FROM addressban WHERE address = '1' AND until > '2026'",
                "SELECT count(*) FROM loginfailure WHERE address = '1' AND at > '2026'",
                "SELECT count(DISTINCT address) FROM loginfailure WHERE username = 'a' AND at > '2026'",
            )
        ]
    assert "ix_addressban_address_until" in plans[0]
    assert "ix_loginfailure_address_at" in plans[1] and "ix_loginfailure_username_at" in plans[2]
