"""`tradelane partner ...`: partner mailbox logins, their SSH keys, settings, locks and removal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.text import Text

from cli.common import DataTable, console, err, print_json, safe, size_text, styled
from cli.options import HOME, AccountOption, scoped_database

partner_app = typer.Typer(help="Partner mailbox logins.", no_args_is_help=True)


@partner_app.command("add")
def partner_add(
    name: str,
    password: Annotated[str | None, typer.Option(help="Password for REST, SFTP and FTP logins.")] = None,
    ssh_key: Annotated[list[Path] | None, typer.Option(help="An SSH public key file (repeatable).")] = None,
    email: Annotated[str | None, typer.Option(help="Who to write to about this mailbox.")] = None,
    account: AccountOption = HOME,
) -> None:
    """Create a partner mailbox login with empty upload/ and download/ folders."""
    from core import partners

    keys = [p.read_text().strip() for p in ssh_key or []]
    if not password and not keys:
        err.print("[red]error:[/red] give --password or --ssh-key")
        raise typer.Exit(2)
    with scoped_database(account) as (session, scope):
        partners.add(session, scope, name, password=password, ssh_public_keys=keys, email=email)
    console.print(f"partner [bold]{safe(name)}[/bold] added")


key_app = typer.Typer(help="A partner's SSH public keys (SFTP logins).", no_args_is_help=True)
partner_app.add_typer(key_app, name="key")


@key_app.command("add")
def partner_key_add(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An OpenSSH .pub file.")],
    account: AccountOption = HOME,
) -> None:
    """Let the partner log in to SFTP with this public key."""
    from core import partners

    with scoped_database(account) as (session, scope):
        partner = partners.add_key(session, scope, name, file.read_text())
        count = len(partner.ssh_public_keys)
    console.print(f"key added to [bold]{safe(name)}[/bold] ({count} keys)")


@key_app.command("list")
def partner_key_list(name: str, account: AccountOption = HOME) -> None:
    """Show a partner's keys with their SHA256 fingerprints."""
    import base64
    import hashlib

    from core import partners

    with scoped_database(account) as (session, scope):
        keys = list(partners.require(session, scope, name).ssh_public_keys)
    table = DataTable("#", "type", "fingerprint", "comment")
    for i, key in enumerate(keys, 1):
        parts = key.split(None, 2)
        digest = base64.b64encode(hashlib.sha256(base64.b64decode(parts[1])).digest()).decode().rstrip("=")
        table.add_row(str(i), parts[0], f"SHA256:{digest}", parts[2] if len(parts) > 2 else "")
    console.print(table)


@key_app.command("remove")
def partner_key_remove(name: str, number: int, account: AccountOption = HOME) -> None:
    """Remove key NUMBER (from `partner key list`)."""
    from core import partners

    with scoped_database(account) as (session, scope):
        partners.remove_key(session, scope, name, number)
    console.print(f"key {number} removed from [bold]{safe(name)}[/bold]")


@partner_app.command("list")
def partner_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    account: AccountOption = HOME,
) -> None:
    """List partners."""
    from api.admin.schemas import PartnerPublic
    from core import partners

    with scoped_database(account) as (session, scope):
        # One shape for `--json` and the admin API's answers.
        rows = [PartnerPublic.of(p).model_dump(mode="json") for p in partners.list_all(session, scope)]
    if as_json:
        print_json(rows)
        return
    table = DataTable(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("state")
    table.add_column("login")
    table.add_column("allow-list", no_wrap=True)
    table.add_column("max file", no_wrap=True)
    table.add_column("sessions", no_wrap=True)
    table.add_column("at once", no_wrap=True)
    table.add_column("email", overflow="ellipsis")
    table.add_column("told", overflow="ellipsis")
    for row in rows:
        state = styled("disabled", "yellow") if not row["enabled"] else Text("enabled")
        if row["locked_until"]:
            state = styled("locked", "red").append(f" until {row['locked_until'][11:16]}")
        login = ", ".join(
            ([] if not row["password"] else ["password"])
            + ([f"{row['ssh_keys']} key(s)"] if row["ssh_keys"] else [])
        )
        table.add_row(
            row["name"],
            state,
            login or "-",
            ", ".join(row["allowed_networks"]) or "anywhere",
            size_text(row["max_file_bytes"]) if row["max_file_bytes"] else "default",
            str(row["max_sessions"] or "default"),
            str(row["max_concurrent"] or "unlimited"),
            row["email"] or "-",
            _told(row),
        )
    console.print(table)


def _told(row: dict[str, Any]) -> str:
    """Which notices the partner's contacts get, and who they are: `rejected, downloads → ops@…`."""
    what = [name for name in ("rejected", "downloads") if row[f"tell_{name}"]]
    if not row["contact_emails"]:
        return "-"
    return f"{', '.join(what) or 'nothing'} → {', '.join(row['contact_emails'])}"


def _optional_number(value: str | None, what: str, parse: Any) -> Any:
    """None: not given; "default"/"none": back to the server's default (stored as None)."""
    from core.partners import UNCHANGED

    if value is None:
        return UNCHANGED
    if value.strip().lower() in ("default", "none"):
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{what}: {exc}") from None


@partner_app.command("set")
def partner_set(
    name: str,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow logins only from this network (CIDR or address; repeatable, replaces the list)."
        ),
    ] = None,
    clear_allow_ip: Annotated[bool, typer.Option(help="Allow logins from anywhere again.")] = False,
    max_file_size: Annotated[
        str | None, typer.Option(help="Largest upload, e.g. 50MiB; 'default' for TRADELANE_MAX_UPLOAD_BYTES.")
    ] = None,
    max_sessions: Annotated[
        str | None,
        typer.Option(help="SFTP/FTP sessions and REST transfers at once; 'default' for the server's limit."),
    ] = None,
    max_concurrent: Annotated[
        str | None,
        typer.Option(help="The partner's files delivered at once on every worker; 0 or 'none': unlimited."),
    ] = None,
    password: Annotated[str | None, typer.Option(help="A new password (its sessions end).")] = None,
    email: Annotated[str | None, typer.Option(help="Who to write to; '' to clear.")] = None,
    enable: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="Let the partner log in, or not (its sessions end)."),
    ] = None,
    can_delete_downloads: Annotated[
        bool | None, typer.Option("--can-delete-downloads/--cannot-delete-downloads")
    ] = None,
    contact_email: Annotated[
        str | None,
        typer.Option(help="The partner's contacts for notices, comma-separated; '' to clear."),
    ] = None,
    tell_rejected: Annotated[
        bool | None,
        typer.Option(
            "--tell-rejected/--no-tell-rejected",
            help="E-mail the contacts when an upload is rejected (the reason, how to resend).",
        ),
    ] = None,
    tell_downloads: Annotated[
        bool | None,
        typer.Option(
            "--tell-downloads/--no-tell-downloads",
            help="E-mail the contacts when a file is delivered into download/ (what, where to fetch it).",
        ),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Change a partner's login settings; they apply on REST, SFTP and FTP."""
    from core import partners
    from core.validators import parse_size

    if allow_ip and clear_allow_ip:
        raise typer.BadParameter("give --allow-ip or --clear-allow-ip, not both")
    networks = [] if clear_allow_ip else allow_ip
    size = _optional_number(max_file_size, "--max-file-size", parse_size)
    sessions = _optional_number(max_sessions, "--max-sessions", int)
    with scoped_database(account) as (session, scope):
        partner = partners.require(session, scope, name)
        changes = partners.configure(
            session,
            scope,
            partner,
            password=password,
            email=partners.UNCHANGED if email is None else (email or None),
            allowed_networks=networks,
            max_file_bytes=size,
            max_sessions=sessions,
            max_concurrent=partners.UNCHANGED if max_concurrent is None else max_concurrent,
            enabled=enable,
            can_delete_downloads=can_delete_downloads,
            contact_emails=partners.UNCHANGED if contact_email is None else contact_email,
            tell_rejected=tell_rejected,
            tell_downloads=tell_downloads,
        )
    if not changes:
        console.print(f"partner [bold]{safe(name)}[/bold]: nothing changed")
        return
    console.print(f"partner [bold]{safe(name)}[/bold]: " + safe("; ".join(changes.said)))


@partner_app.command("unlock")
def partner_unlock(
    name: str,
    address: Annotated[
        str | None, typer.Option(help="Also lift the ban on this source address (and forget its failures).")
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Lift a partner's lock (set after failed logins from several addresses); takes effect at once."""
    from core import login, partners

    with scoped_database(account) as (session, scope):
        was_locked = partners.unlock(session, scope, name)
        bans = login.unban(session, address) if address else 0
    console.print(f"partner [bold]{safe(name)}[/bold] " + ("unlocked" if was_locked else "was not locked"))
    if address:
        console.print(f"address {safe(address)}: " + ("ban lifted" if bans else "was not banned"))


@partner_app.command("remove")
def partner_remove(
    name: str,
    force: Annotated[
        bool,
        typer.Option(help="Disable the data flows and AS2 profiles that use the partner, and remove it."),
    ] = False,
    purge: Annotated[
        bool,
        typer.Option("--purge/--keep-files", help="Delete its files, or keep them out of reach (default)."),
    ] = False,
    account: AccountOption = HOME,
) -> None:
    """End a partner's login and sessions, free its name, put its files out of a new partner's reach."""
    from core import partners

    with scoped_database(account) as (session, scope):
        removal = partners.remove(session, scope, name, force=force, purge=purge)
    console.print(f"partner [bold]{safe(name)}[/bold] removed; its sessions end within seconds")
    if removal.flows_disabled:
        console.print(f"data flows disabled: {safe(', '.join(removal.flows_disabled))}")
    if removal.as2_disabled:
        console.print(f"AS2 partners disabled: {safe(', '.join(removal.as2_disabled))}")
    if removal.purged:
        console.print("its files were deleted")
    elif removal.files is not None:
        from core import storage
        from core.config import get_settings

        settings, kept = get_settings(), str(removal.files)
        if storage.is_object_store():  # its download/ objects were moved in the bucket, same path
            kept = f"{settings.storage_url}/{removal.files.relative_to(settings.mailbox_root).as_posix()}"
        console.print(f"its files were kept in {safe(kept)}")
