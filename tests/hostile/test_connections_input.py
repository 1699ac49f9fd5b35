"""Bad input to B2B connections on one instance (DESIGN-12 §7), through the `tradelane connect` CLI:
each refusal exits 1 with a message saying why, and changes nothing in the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.b2b.helpers import dump, run, run_json

pytestmark = pytest.mark.usefixtures("b2b")

INVITE = (
    "connect",
    "invite",
    "--account",
    "acme",
    "--send",
    "--outbox",
    "orders",
    "--email",
    "b@home.example",
)


def invite(name: str = "to-home", *extra: str) -> str:
    return str(run_json(*INVITE, "--name", name, *extra)["link"])


def token_of(link: str) -> str:
    return link.split("token=", 1)[1]


def refused(args: tuple[str, ...], message: str) -> None:
    """`tradelane ARGS` exits 1 saying `message`, and the store is as before."""
    before = dump()
    out = " ".join(run(*args, ok=False).split())
    assert message in out, out
    assert dump() == before


def accept(link: str, *extra: str) -> tuple[str, ...]:
    return ("connect", "accept", link, "--account", "home", "--name", "from-acme", *extra)


def test_tokens_truncated_forged_or_not_a_token() -> None:
    link = invite()
    token = token_of(link)
    refused(
        accept(token[:35], "--dest", "lake"),
        "400: the invitation token is incomplete (30 of 43 characters after tlc1_): copy the whole link",
    )
    refused(accept(link[:-13], "--dest", "lake"), "400: the invitation token is incomplete (30 of 43")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused(
        accept(forged, "--dest", "lake"),
        "404: no such invitation: check that the link is complete and unchanged",
    )
    refused(accept("hello", "--dest", "lake"), "400: not an invitation token or link")
    refused(accept(token + "x", "--dest", "lake"), "400: the invitation token is too long")
    refused(accept(token[:-1] + "!", "--dest", "lake"), "400: the invitation token holds characters")
    refused(("connect", "decline", forged), "404: no such invitation")
    refused(
        accept("http://other.example:8080/connect/accept?token=" + token, "--dest", "lake"),
        # Another instance's link goes to the cross-instance handshake, which needs our public URL.
        "400: set TRADELANE_PUBLIC_URL to the address the other instance can reach this one at",
    )


def test_used_declined_expired_and_own_invitations() -> None:
    link = invite()
    refused(
        ("connect", "accept", link, "--account", "acme", "--name", "x", "--outbox", "o2"),
        "403: an account cannot accept its own invitation (connection 'to-home' was created by acme)",
    )
    run(*accept(link, "--dest", "lake"))
    refused(accept(link, "--dest", "lake"), "409: this invitation was already accepted on")
    refused(("connect", "decline", link), "409: this invitation was already accepted on")

    declined = invite("second", "--outbox", "o2")
    run("connect", "decline", declined)
    refused(accept(declined, "--dest", "lake"), "409: this invitation was declined on")

    short = invite("third", "--outbox", "o3", "--expires", "1s")
    deadline = time.monotonic() + 30
    while run_json("connect", "show", "third", "--account", "acme")["state"] != "expired":
        assert time.monotonic() < deadline, "the invitation never expired"
        time.sleep(0.2)
    refused(accept(short, "--dest", "lake"), "410: this invitation expired on")
    refused(accept(short, "--dest", "lake"), "ask acme for a new one")

    withdrawn = invite("fourth", "--outbox", "o4")
    run("connect", "revoke", "fourth", "--account", "acme")
    refused(accept(withdrawn, "--dest", "lake"), "410: this invitation was withdrawn by acme on")


def test_destinations_of_another_account_missing_or_escaping() -> None:
    # home invites acme to send into nothing: acme (the receiver here) names home's endpoint.
    link = str(
        run_json(
            "connect",
            "invite",
            "--account",
            "home",
            "--send",
            "--outbox",
            "out",
            "--email",
            "a@acme.example",
            "--name",
            "to-acme",
        )["link"]
    )
    refused(
        ("connect", "accept", link, "--account", "acme", "--name", "from-home", "--dest", "lake"),
        "404: no endpoint named 'lake' in account 'acme'",
    )
    link = invite()
    refused(
        accept(link, "--dest", "lake:in/nowhere"),
        "404: folder 'in/nowhere' does not exist in endpoint 'lake'",
    )
    refused(accept(link, "--dest", "lake:in/../../etc"), "400: '..' not allowed in path 'in/../../etc'")
    refused(accept(link, "--dest", "lake:/etc"), "400: absolute path not allowed: '/etc'")
    refused(accept(link, "--dest", "nosuch"), "404: no endpoint named 'nosuch' in account 'home'")
    refused(
        accept(link, "--outbox", "x"),
        "400: this invitation asks you to receive files: give --dest ENDPOINT[:DIR], not --outbox",
    )


@pytest.mark.parametrize("bad", ["a/b", "..", ".hidden", "x" * 65, "sp ace", "b2b:1"])
def test_outbox_names(bad: str) -> None:
    args = ("connect", "invite", "--account", "acme", "--send", "--outbox", bad, "--email", "b@h.example")
    refused((*args, "--name", "n"), f"400: invalid outbox name {bad!r}: use letters, digits")


def test_names_taken_across_roles() -> None:
    run(*accept(invite(), "--dest", "lake"))
    refused(
        (*INVITE, "--name", "other"),
        "409: account 'acme' already has an outbox named 'orders' (connection 'to-home')",
    )
    refused(
        (
            "connect",
            "invite",
            "--account",
            "acme",
            "--send",
            "--outbox",
            "x",
            "--email",
            "b@h.example",
            "--name",
            "to-home",
        ),
        "409: account 'acme' already has a connection named 'to-home'",
    )
    # The receiver's name is taken in its account too, whichever role the new connection has.
    refused(
        (
            "connect",
            "invite",
            "--account",
            "home",
            "--send",
            "--outbox",
            "o",
            "--email",
            "b@h.example",
            "--name",
            "from-acme",
        ),
        "409: account 'home' already has a connection named 'from-acme'",
    )


def test_sending_into_connections_that_do_not_send(tmp_path: Path) -> None:
    file = tmp_path / "po.json"
    file.write_text("{}")

    def send(name: str, account: str = "acme") -> tuple[str, ...]:
        return ("connect", "send", name, str(file), "--account", account)

    invite()
    refused(send("to-home"), "409: connection 'to-home' is pending")
    declined = invite("second", "--outbox", "o2")
    run("connect", "decline", declined)
    refused(send("second"), "409: connection 'second' was declined; it sends nothing")
    run(*accept(invite("third", "--outbox", "o3"), "--dest", "lake"))
    refused(send("from-acme", "home"), "403: only the sending side sends files")
    run("connect", "revoke", "third", "--account", "acme")
    refused(send("third"), "409: connection 'third' was revoked on")
    refused(send("nothing"), "404: no connection 'nothing' in account 'acme'")


def test_another_accounts_connection_is_not_found() -> None:
    from tests.b2b.helpers import add_account

    add_account("globex")
    link = invite()
    accepted = run_json(*accept(link, "--dest", "lake"))
    for args in (
        ("connect", "show", str(accepted["id"]), "--account", "globex"),
        ("connect", "revoke", "to-home", "--account", "globex"),
        ("connect", "files", str(accepted["id"]), "--account", "globex"),
        ("transfers", "--connection", str(accepted["id"]), "--account", "globex"),
    ):
        refused(args, f"404: no connection '{args[2]}' in account 'globex'")
    refused(("connect", "list", "--account", "nobody"), "404: no account named 'nobody'")


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--send", "--receive", "--outbox", "o", "--dest", "lake"), "exactly one of --send or --receive"),
        (("--outbox", "o"), "exactly one of --send or --receive"),
        (("--receive", "--outbox", "o", "--dest", "lake"), "--outbox is for --send"),
        (("--send", "--dest", "lake", "--outbox", "o"), "--dest is for --receive"),
    ],
)
def test_invite_usage_errors(args: tuple[str, ...], why: str) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    before = dump()
    result = CliRunner().invoke(
        app, ["connect", "invite", "--account", "acme", "--email", "b@h.example", "--name", "n", *args]
    )
    assert result.exit_code == 2 and why in " ".join(result.output.split())
    assert dump() == before


def test_expiry_bounds() -> None:
    for bad, why in (("0s", "between 1s and 90d"), ("91d", "between 1s and 90d"), ("soon", "use a number")):
        refused((*INVITE, "--name", "n", "--expires", bad), why)


def test_an_endpoint_a_connection_lands_in_is_not_removed_under_it() -> None:
    accepted = run_json(*accept(invite(), "--dest", "lake"))
    refused(
        ("endpoint", "remove", "lake"),
        f"endpoint 'lake' is used by connection(s) 'from-acme' (data flow b2b:{accepted['id']}): revoke them",
    )
    # A pending invitation to receive holds its endpoint too; forced away, the invitation cannot be accepted.
    run("endpoint", "add", "pond", "--type", "file", "--path", "/tmp")
    link = run_json(
        "connect",
        "invite",
        "--account",
        "home",
        "--receive",
        "--dest",
        "pond",
        "--email",
        "a@acme.example",
        "--name",
        "from-acme-2",
    )["link"]
    refused(("endpoint", "remove", "pond"), "endpoint 'pond' is used by connection(s) 'from-acme-2'")
    run("endpoint", "remove", "pond", "--force")
    refused(
        ("connect", "accept", link, "--account", "acme", "--name", "to-home-2", "--outbox", "o9"),
        "409: the receiving side removed where files would land; ask home for a new invitation",
    )
    run("endpoint", "remove", "lake", "--force")
    landing = {f["name"]: f for f in run_json("flow", "list")}[f"b2b:{accepted['id']}"]
    assert landing["enabled"] is False
