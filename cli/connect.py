"""`tradelane connect …`: B2B connections between two accounts on this instance.

Every command acts in one account (`--account`, or TRADELANE_ACCOUNT; default home). Refusals print
`error: <status>: <why>` and exit 1; `--json` prints machine-readable output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import DataTable, console, database, print_json, safe

connect_app = typer.Typer(
    help="B2B connections: one account sends files into another account's storage.", no_args_is_help=True
)

AccountOption = Annotated[
    str, typer.Option("--account", envvar="TRADELANE_ACCOUNT", help="The account (tenant) to act in.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NameArg = Annotated[str, typer.Argument(help="The connection's name on this account's side, or its id.")]


def _caller(session: Any, account: str) -> Any:
    from core.b2b.caller import cli_caller

    return cli_caller(session, account)


@connect_app.command()
def invite(
    email: Annotated[str, typer.Option(help="Who is invited (the other company's admin).")],
    name: Annotated[str, typer.Option(help="This side's name for the connection.")],
    account: AccountOption = "home",
    send: Annotated[bool, typer.Option("--send", help="This account sends files to the invitee.")] = False,
    receive: Annotated[
        bool, typer.Option("--receive", help="This account receives files from the invitee.")
    ] = False,
    outbox: Annotated[str | None, typer.Option(help="With --send: the outbox folder (b2b/NAME/).")] = None,
    dest: Annotated[
        str | None, typer.Option(help="With --receive: ENDPOINT[:DIR] of this account where files land.")
    ] = None,
    expires: Annotated[
        str, typer.Option(help="How long the invitation holds: 30m, 48h, 7d (at most 90d).")
    ] = "7d",
    as_json: JsonOption = False,
) -> None:
    """Invite another account to a connection; prints the link to pass on (shown once)."""
    from core.b2b import connections, mail

    if send == receive:
        raise typer.BadParameter("give exactly one of --send or --receive")
    if send and dest is not None:
        raise typer.BadParameter("--dest is for --receive (the receiving side chooses where files land)")
    if receive and outbox is not None:
        raise typer.BadParameter("--outbox is for --send (the sending side puts files into it)")
    if send and outbox is None:
        raise typer.BadParameter("--send needs --outbox NAME")
    if receive and dest is None:
        raise typer.BadParameter("--receive needs --dest ENDPOINT[:DIR]")
    with database() as session:
        caller = _caller(session, account)
        invitation = connections.invite(
            session,
            caller,
            name=name,
            direction="send" if send else "receive",
            email=email,
            outbox=outbox,
            dest=dest,
            expires=connections.parse_expiry(expires),
        )
        conn = invitation.connection
        answer: dict[str, Any] = {
            "id": conn.id,
            "uid": conn.uid,
            "name": name,
            "state": conn.state,
            "direction": conn.direction,
            "email": conn.invite_email,
            "expires_at": connections._aware(conn.token_expires_at).isoformat()
            if conn.token_expires_at
            else None,
            "link": invitation.link,
        }
        letter = connections.invitation_mail(session, invitation)
    # Sent once the connection is committed, never queued (the token would have to be stored).
    outcome = mail.send_invitation(letter)
    answer.update(outcome.fields())
    if as_json:
        print_json(answer)
        return
    console.print(
        f"connection {answer['id']} {name!r} is pending; invitation for {email}, "
        f"expires {answer['expires_at']}",
        markup=False,
    )
    console.print(f"link: {safe(invitation.link)}", soft_wrap=True)
    console.print(outcome.sentence(email), soft_wrap=True, markup=False)


@connect_app.command()
def accept(
    token_or_link: Annotated[str, typer.Argument(help="The invitation link (or its token).")],
    name: Annotated[str, typer.Option(help="This side's name for the connection.")],
    account: AccountOption = "home",
    dest: Annotated[
        str | None, typer.Option(help="When invited to receive: ENDPOINT[:DIR] where files land.")
    ] = None,
    outbox: Annotated[
        str | None, typer.Option(help="When invited to send: the outbox folder's name.")
    ] = None,
    new_account: Annotated[
        str | None, typer.Option("--new-account", help="Create this account and accept as it (a sender).")
    ] = None,
    email: Annotated[str | None, typer.Option(help="With --new-account: its admin's e-mail.")] = None,
    password: Annotated[str | None, typer.Option(help="With --new-account: its admin's password.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Accept an invitation: the connection becomes active on both sides."""
    from core import accounts
    from core.b2b import connections, invitations
    from core.errors import Invalid

    with database() as session:
        if new_account is not None:
            if dest is not None:
                raise Invalid(
                    "a new account has no endpoints yet: create it (tradelane account add), add an endpoint "
                    f"(tradelane endpoint add --account {new_account} …), then accept with --account "
                    f"{new_account} --dest …"
                )
            if not email or not password:
                raise Invalid("--new-account needs --email and --password for its admin")
            accounts.add(session, new_account, email=email, password=password)
            account = new_account
        caller = _caller(session, account)
        conn = invitations.accept(session, caller, token_or_link, name=name, dest=dest, outbox=outbox)
        role = connections.side_of(conn, caller.account_id)
        other = connections._other_name(session, conn, caller.account_id)
        where = connections.dest_label(session, conn) if role == "receive" else None
        peer = connections.peer_of(session, conn)
        answer = {
            "id": conn.id,
            "name": name,
            "state": conn.state,
            "role": role,
            "with": other,
            "peer": {"url": peer.base_url, "account": peer.their_account} if peer else None,
        }
    if as_json:
        print_json(answer)
        return
    if role == "receive":
        console.print(
            f"connection {conn.id} {safe(repr(name))} is active: {safe(other)} sends into {safe(where)}"
        )
    else:
        console.print(
            f"connection {conn.id} {safe(repr(name))} is active: put files into b2b/{safe(conn.outbox_name)}/"
        )


@connect_app.command()
def decline(
    token_or_link: Annotated[str, typer.Argument(help="The invitation link (or its token).")],
    as_json: JsonOption = False,
) -> None:
    """Decline an invitation (whoever holds the link may)."""
    from core.b2b import invitations

    with database() as session:
        conn = invitations.decline(session, token_or_link)
        # A link to another instance is declined there: nothing is stored here (no id).
        answer = {"id": conn.id if conn else None, "state": conn.state if conn else "declined"}
    if as_json:
        print_json(answer)
        return
    console.print("invitation declined")


@connect_app.command("list")
def list_(account: AccountOption = "home", as_json: JsonOption = False) -> None:
    """This account's connections: name, role, the other account, outbox, state, view."""

    from core.b2b import connections

    with database() as session:
        caller = _caller(session, account)
        rows = [connections.view(session, caller, conn) for conn in connections.visible_to(session, caller)]
    if as_json:
        print_json(rows)
        return
    table = DataTable("id", "name", "role", "with", "outbox", "state", "view")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["name"] or "-"),
            "sends" if row["role"] == "send" else "receives",
            _with(row),
            f"b2b/{row['outbox']}/" if row["outbox"] else "-",
            str(row["state_text"]),
            "on" if row["allow_sender_view"] else "off",
        )
    console.print(table)


def _with(row: dict[str, Any]) -> str:
    """The other side: an account here, or `peer <host> (<its account>)` for another instance."""
    peer = row.get("peer")
    if isinstance(peer, dict):
        return f"{row['with']} ({peer.get('account') or '?'})"
    return str(row["with"] or "-")


@connect_app.command()
def show(name: NameArg, account: AccountOption = "home", as_json: JsonOption = False) -> None:
    """One connection's details (where files land only on the receiving side)."""
    from core.b2b import connections

    with database() as session:
        caller = _caller(session, account)
        row = connections.view(session, caller, connections.require(session, caller, name))
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        if value is not None:
            console.print(f"{safe(key)}: {safe(value)}", soft_wrap=True)


@connect_app.command("allow-view")
def allow_view(
    name: NameArg,
    account: AccountOption = "home",
    off: Annotated[bool, typer.Option("--off", help="Stop the sender listing the folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Let the sender list the files in this (receiving) side's folder, or stop it with --off."""
    from core.b2b import connections

    with database() as session:
        caller = _caller(session, account)
        conn = connections.set_view(session, caller, name, not off)
        answer = {"id": conn.id, "allow_sender_view": conn.allow_sender_view}
    if as_json:
        print_json(answer)
        return
    console.print(f"sender view {'on' if answer['allow_sender_view'] else 'off'}")


@connect_app.command()
def send(
    name: NameArg,
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Files to send.")],
    account: AccountOption = "home",
    as_json: JsonOption = False,
) -> None:
    """Send files through an active connection (as if put into its outbox)."""
    from core import intake
    from core.b2b import outbox

    results: list[dict[str, Any]] = []
    with database() as session:
        caller = _caller(session, account)
    for path in files:
        with database(), path.open("rb") as stream:
            try:
                sent = outbox.write(caller, name, path.name, stream)
            except intake.IntakeError as exc:
                raise ValueError(f"{path.name}: {exc}") from None
        results.append(
            {
                "file": sent.receipt.name,
                "receipt": sent.receipt.id,
                "size": sent.receipt.size,
                "sha256": sent.receipt.sha256,
                "transfer": sent.transfer_id,
                "held": sent.held,
            }
        )
        if not as_json:
            console.print(
                f"{sent.receipt.name}: received (receipt {sent.receipt.id}, "
                f"sha256 {sent.receipt.sha256[:12]}…), "
                + (f"transfer {sent.transfer_id} pending" if sent.transfer_id else "held"),
                markup=False,
            )
    if as_json:
        print_json(results)


@connect_app.command()
def files(name: NameArg, account: AccountOption = "home", as_json: JsonOption = False) -> None:
    """The files in the receiving folder (for the sender only when the receiver allows it)."""
    from core.b2b import connections

    with database() as session:
        caller = _caller(session, account)
        listed = connections.receiver_listing(session, caller, name)
    rows = [{"name": f.name, "size": f.size, "modified": f.modified.isoformat()} for f in listed]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{row['modified']}  {row['size']:>12}  {row['name']}", soft_wrap=True, markup=False)


@connect_app.command()
def revoke(name: NameArg, account: AccountOption = "home", as_json: JsonOption = False) -> None:
    """End a connection (either side's admin): its outbox refuses files, nothing more is delivered."""
    from core.b2b import connections

    with database() as session:
        caller = _caller(session, account)
        conn = connections.revoke(session, caller, name)
        answer = {"id": conn.id, "state": conn.state}
    if as_json:
        print_json(answer)
        return
    console.print(f"connection {conn.id} revoked")
