"""The `tradelane` command, in-process against a throwaway home (no `up` needed for these)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.isolation import run_cli
from tests.servers import moto_client

PASSWORD = "Tr4de-lane-Pass"  # passes the password policy (length, not the name, not common)


run = run_cli


def test_partner_lifecycle_and_keys(home: Path, tmp_path: Path) -> None:
    run("partner", "add", "acme", "--password", PASSWORD)
    assert "already exists" in run("partner", "add", "acme", "--password", PASSWORD, ok=False)
    assert "--password or --ssh-key" in run("partner", "add", "nokey", ok=False)
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run("partner", "key", "add", "acme", str(key) + ".pub")
    assert "SHA256:" in run("partner", "key", "list", "acme")
    assert "already on this partner" in run("partner", "key", "add", "acme", str(key) + ".pub", ok=False)
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 not-base64!")
    assert "error" in run("partner", "key", "add", "acme", str(bad), ok=False)
    run("partner", "key", "remove", "acme", "1")
    listed = json.loads(run("partner", "list", "--json"))
    assert [(p["name"], p["ssh_keys"]) for p in listed] == [("acme", 0)]
    assert (home / "mailboxes" / "home" / "acme" / "upload").is_dir()
    run("partner", "remove", "acme")
    assert json.loads(run("partner", "list", "--json")) == []
    run("partner", "add", "acme", "--password", "Another-Pass-2nd")  # the name is free again


def test_endpoints_and_flows(home: Path, tmp_path: Path, moto_server: str) -> None:
    run("partner", "add", "acme", "--password", PASSWORD)
    run("endpoint", "add", "archive", "--type", "file", "--path", str(tmp_path / "archive"))
    (tmp_path / "archive").mkdir()
    assert "reachable" in run("endpoint", "test", "archive")
    assert "needs --path" in run("endpoint", "add", "x", "--type", "file", ok=False)
    assert "unknown --type" in run("endpoint", "add", "x", "--type", "carrier-pigeon", ok=False)
    moto_client(moto_server).create_bucket(Bucket="cli-bucket")
    run(
        "endpoint",
        "add",
        "lake",
        "--type",
        "s3",
        "--bucket",
        "cli-bucket",
        "--endpoint-url",
        moto_server,
        "--access-key-id",
        "k",
        "--secret-access-key",
        "SUPERSECRET",
    )
    assert "reachable" in run("endpoint", "test", "lake")
    run(
        "endpoint",
        "add",
        "missing",
        "--type",
        "s3",
        "--bucket",
        "no-such-bucket",
        "--endpoint-url",
        moto_server,
        "--access-key-id",
        "k",
        "--secret-access-key",
        "s",
    )
    assert "✗ missing" in run("endpoint", "test", "missing", ok=False)
    listing = run("endpoint", "list", "--json")
    assert "SUPERSECRET" not in listing and json.loads(listing)[1]["has_secrets"] is True

    run(
        "flow",
        "add",
        "acme-lake",
        "--source",
        "mailbox:acme",
        "--dest",
        "lake",
        "--pattern",
        "*.json",
        "--validate",
        "json",
        "--validate",
        "max_size=1MiB",
        "--retries",
        "3",
    )
    flows = json.loads(run("flow", "list", "--json"))
    assert flows[0]["validators"] == [{"type": "json"}, {"type": "max_size", "bytes": 1024 * 1024}]
    assert (
        "unknown"
        in run(
            "flow",
            "add",
            "f2",
            "--source",
            "mailbox:acme",
            "--dest",
            "lake",
            "--validate",
            "telepathy",
            ok=False,
        ).lower()
    )
    assert "no partner" in run("flow", "add", "f3", "--source", "mailbox:ghost", "--dest", "lake", ok=False)
    run("flow", "disable", "acme-lake")
    assert json.loads(run("flow", "list", "--json"))[0]["enabled"] is False
    run("flow", "enable", "acme-lake")
    # A partner's mailbox as a destination lands in its download/ folder.
    run("partner", "add", "beta", "--password", PASSWORD)
    run("flow", "add", "to-beta", "--source", "mailbox:acme", "--dest", "mailbox:beta")
    assert json.loads(run("flow", "list", "--json"))[1]["dest_path"] == "download/{name}"
    assert json.loads(run("transfers", "--json")) == []
    assert "no transfer 42" in run("replay", "42", ok=False)


def test_apply_is_idempotent(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_PW", "from-env-Pass-1")
    spec = tmp_path / "tradelane.yaml"
    spec.write_text(
        f"""
partners:
  - {{name: acme, password_env: ACME_PW}}
endpoints:
  - {{name: archive, type: file, path: {tmp_path / "out"}}}
  - name: lake
    type: s3
    bucket: b
    secrets: {{access_key_id: k, secret_access_key: s}}
flows:
  - {{name: acme-archive, source: "mailbox:acme", dest: archive, pattern: "*.edi", validators: [x12]}}
"""
    )
    first = run("apply", "-f", str(spec))
    assert "partner acme: created" in first and "flow acme-archive: created" in first
    second = run("apply", "-f", str(spec))
    assert second.count("unchanged") == 4, second
    spec.write_text(spec.read_text().replace('"*.edi"', '"*.x12"'))
    assert "flow acme-archive: updated" in run("apply", "-f", str(spec))
    bad = tmp_path / "bad.yaml"
    bad.write_text("partners: [oops")
    assert "not valid YAML" in run("apply", "-f", str(bad), ok=False)
    bad.write_text("robots: []")
    assert "expected only the keys" in run("apply", "-f", str(bad), ok=False)


def test_a_flow_into_a_partners_mailbox_delivers_into_its_download_folder_by_default(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One default (core.dataflows.default_dest_path) for `flow add`, `apply` and the console."""
    monkeypatch.setenv("PW", "from-env-Pass-1")
    spec = tmp_path / "tradelane.yaml"
    spec.write_text(
        """
partners:
  - {name: acme, password_env: PW}
  - {name: beta, password_env: PW}
flows:
  - {name: applied, source: "mailbox:acme", dest: "mailbox:beta"}
  - {name: applied-at, source: "mailbox:acme", dest: "mailbox:beta", dest_path: "{name}"}
"""
    )
    run("apply", "-f", str(spec))
    run("flow", "add", "added", "--source", "mailbox:acme", "--dest", "mailbox:beta")
    paths = {f["name"]: f["dest_path"] for f in json.loads(run("flow", "list", "--json"))}
    assert paths == {"applied": "download/{name}", "applied-at": "{name}", "added": "download/{name}"}


def test_on_conflict_is_set_shown_and_refused_where_it_cannot_apply(home: Path, tmp_path: Path) -> None:
    run("partner", "add", "acme", "--password", "cli-partner-pw-1")
    run("endpoint", "add", "out", "--type", "file", "--path", str(tmp_path / "out"))
    run("endpoint", "add", "api", "--type", "http", "--url", "https://erp.example/in")
    run("flow", "add", "plain", "--source", "mailbox:acme", "--dest", "out")
    run("flow", "add", "strict", "--source", "mailbox:acme", "--dest", "out", "--on-conflict", "fail")
    run("flow", "add", "to-api", "--source", "mailbox:acme", "--dest", "api")
    shown = {f["name"]: f["on_conflict"] for f in json.loads(run("flow", "list", "--json"))}
    assert shown == {"plain": "rename (default)", "strict": "fail", "to-api": "-"}
    bad = run(
        "flow", "add", "x", "--source", "mailbox:acme", "--dest", "out", "--on-conflict", "skip", ok=False
    )
    assert "on_conflict must be one of rename|overwrite|fail, not 'skip'" in bad
    refused = run(
        "flow",
        "add",
        "y",
        "--source",
        "mailbox:acme",
        "--dest",
        "api",
        "--on-conflict",
        "overwrite",
        ok=False,
    )
    assert "on_conflict does not apply to http destinations: every delivery is a new message" in refused
    assert {f["name"] for f in json.loads(run("flow", "list", "--json"))} == {"plain", "strict", "to-api"}

    spec = tmp_path / "flows.yaml"
    spec.write_text(
        "flows:\n"
        '  - {name: plain, source: "mailbox:acme", dest: out}\n'
        '  - {name: strict, source: "mailbox:acme", dest: out, on_conflict: fail}\n'
    )
    assert run("apply", "-f", str(spec)).count("unchanged") == 2
    spec.write_text(spec.read_text().replace("on_conflict: fail", "on_conflict: overwrite"))
    assert "flow strict: updated" in run("apply", "-f", str(spec))
    assert json.loads(run("flow", "list", "--json"))[1]["on_conflict"] == "overwrite"
    spec.write_text(spec.read_text().replace("on_conflict: overwrite", "on_conflict: clobber"))
    assert "on_conflict must be one of" in run("apply", "-f", str(spec), ok=False)


def test_printed_data_is_never_turned_into_emoji_or_markup(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fingerprint holds `:AB:` (rich's 🆎) often enough to matter; an error's text may hold
    brackets that are rich markup (`[/red]` would even raise)."""
    import typer

    from cli.common import console, database

    console.print("SHA-256 6C:AB:B2:CL:ID", soft_wrap=True)
    assert "SHA-256 6C:AB:B2:CL:ID" in capsys.readouterr().out
    with pytest.raises(typer.Exit), database():
        raise ValueError("bad name [/red] [bold]x")
    assert "error: bad name [/red] [bold]x" in capsys.readouterr().err
