"""The `tradelane` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli import apply as apply_cmd
from cli import as2 as as2_cli
from cli.common import UserError, console, database, err

app = typer.Typer(help="tradelane: a self-hosted B2B file-exchange hub.", no_args_is_help=True)
partner_app = typer.Typer(help="Partner mailbox logins.", no_args_is_help=True)
endpoint_app = typer.Typer(help="Places files come from or go to.", no_args_is_help=True)
flow_app = typer.Typer(help="Data flows: source → validators → destination.", no_args_is_help=True)
app.add_typer(partner_app, name="partner")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(flow_app, name="flow")
app.add_typer(as2_cli.app, name="as2")


@app.command()
def up() -> None:
    """Run everything: Prefect server + UI, the deployments' runner, the API and the dispatcher."""
    import logging

    from cli.supervisor import Supervisor
    from core.redact import install_log_scrubber

    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        Supervisor(echo=lambda line: console.print(line, soft_wrap=True)).run()
    except RuntimeError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


# ---- partners ---------------------------------------------------------------------------------


@partner_app.command("add")
def partner_add(
    name: str,
    password: Annotated[str | None, typer.Option(help="Password for REST, SFTP and FTP logins.")] = None,
    ssh_key: Annotated[list[Path] | None, typer.Option(help="An SSH public key file (repeatable).")] = None,
    email: Annotated[str | None, typer.Option(help="Who to write to about this mailbox.")] = None,
) -> None:
    """Create a partner mailbox login with empty upload/ and download/ folders."""
    from core import partners

    keys = [p.read_text().strip() for p in ssh_key or []]
    if not password and not keys:
        err.print("[red]error:[/red] give --password or --ssh-key")
        raise typer.Exit(2)
    with database() as session:
        partners.add(session, name, password=password, ssh_public_keys=keys, email=email)
    console.print(f"partner [bold]{name}[/bold] added")


key_app = typer.Typer(help="A partner's SSH public keys (SFTP logins).", no_args_is_help=True)
partner_app.add_typer(key_app, name="key")


@key_app.command("add")
def partner_key_add(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An OpenSSH .pub file.")],
) -> None:
    """Let the partner log in to SFTP with this public key."""
    from core import partners

    with database() as session:
        partner = partners.add_key(session, name, file.read_text())
        count = len(partner.ssh_public_keys)
    console.print(f"key added to [bold]{name}[/bold] ({count} keys)")


@key_app.command("list")
def partner_key_list(name: str) -> None:
    """Show a partner's keys with their SHA256 fingerprints."""
    import base64
    import hashlib

    from core import partners

    with database() as session:
        keys = list(partners.require(session, name).ssh_public_keys)
    table = Table("#", "type", "fingerprint", "comment")
    for i, key in enumerate(keys, 1):
        parts = key.split(None, 2)
        digest = base64.b64encode(hashlib.sha256(base64.b64decode(parts[1])).digest()).decode().rstrip("=")
        table.add_row(str(i), parts[0], f"SHA256:{digest}", parts[2] if len(parts) > 2 else "")
    console.print(table)


@key_app.command("remove")
def partner_key_remove(name: str, number: int) -> None:
    """Remove key NUMBER (from `partner key list`)."""
    from core import partners

    with database() as session:
        partners.remove_key(session, name, number)
    console.print(f"key {number} removed from [bold]{name}[/bold]")


@partner_app.command("list")
def partner_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List partners."""
    from core import partners
    from core.login import is_locked

    with database() as session:
        rows = [
            {
                "name": p.name,
                "enabled": p.enabled,
                "locked_until": p.locked_until.isoformat() if is_locked(p) and p.locked_until else None,
                "password": bool(p.password_hash),
                "ssh_keys": len(p.ssh_public_keys),
                "email": p.email,
                "allowed_networks": p.allowed_networks,
                "max_file_bytes": p.max_file_bytes,
                "max_sessions": p.max_connections,
                "can_delete_downloads": p.can_delete_downloads,
                "created": p.created_at.isoformat(),
            }
            for p in partners.list_all(session)
        ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("state")
    table.add_column("login")
    table.add_column("allow-list", no_wrap=True)
    table.add_column("max file", no_wrap=True)
    table.add_column("sessions", no_wrap=True)
    table.add_column("email", overflow="ellipsis")
    for row in rows:
        state = "[yellow]disabled[/yellow]" if not row["enabled"] else "enabled"
        if row["locked_until"]:
            state = f"[red]locked[/red] until {row['locked_until'][11:16]}"
        login = ", ".join(
            ([] if not row["password"] else ["password"])
            + ([f"{row['ssh_keys']} key(s)"] if row["ssh_keys"] else [])
        )
        table.add_row(
            row["name"],
            state,
            login or "-",
            ", ".join(row["allowed_networks"]) or "anywhere",
            _size(row["max_file_bytes"]) if row["max_file_bytes"] else "default",
            str(row["max_sessions"] or "default"),
            row["email"] or "-",
        )
    console.print(table)


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} B"


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
    password: Annotated[str | None, typer.Option(help="A new password (its sessions end).")] = None,
    email: Annotated[str | None, typer.Option(help="Who to write to; '' to clear.")] = None,
    enable: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="Let the partner log in, or not (its sessions end)."),
    ] = None,
    can_delete_downloads: Annotated[
        bool | None, typer.Option("--can-delete-downloads/--cannot-delete-downloads")
    ] = None,
) -> None:
    """Change a partner's login settings; they apply on REST, SFTP and FTP."""
    from core import partners
    from core.validators import parse_size

    if allow_ip and clear_allow_ip:
        raise typer.BadParameter("give --allow-ip or --clear-allow-ip, not both")
    networks = [] if clear_allow_ip else allow_ip
    size = _optional_number(max_file_size, "--max-file-size", parse_size)
    sessions = _optional_number(max_sessions, "--max-sessions", int)
    with database() as session:
        partner = partners.require(session, name)
        changes = partners.configure(
            session,
            partner,
            password=password,
            email=partners.UNCHANGED if email is None else (email or None),
            allowed_networks=networks,
            max_file_bytes=size,
            max_sessions=sessions,
            enabled=enable,
            can_delete_downloads=can_delete_downloads,
        )
    if not changes:
        console.print(f"partner [bold]{name}[/bold]: nothing changed")
        return
    console.print(f"partner [bold]{name}[/bold]: " + "; ".join(changes.said))


@partner_app.command("unlock")
def partner_unlock(
    name: str,
    address: Annotated[
        str | None, typer.Option(help="Also lift the ban on this source address (and forget its failures).")
    ] = None,
) -> None:
    """Lift a partner's lock (set after failed logins from several addresses); takes effect at once."""
    from core import login, partners

    with database() as session:
        was_locked = partners.unlock(session, name)
        bans = login.unban(session, address) if address else 0
    console.print(f"partner [bold]{name}[/bold] " + ("unlocked" if was_locked else "was not locked"))
    if address:
        console.print(f"address {address}: " + ("ban lifted" if bans else "was not banned"))


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
) -> None:
    """End a partner's login and sessions, free its name, put its files out of a new partner's reach."""
    from core import partners

    with database() as session:
        removal = partners.remove(session, name, force=force, purge=purge)
    console.print(f"partner [bold]{name}[/bold] removed; its sessions end within seconds")
    if removal.flows_disabled:
        console.print(f"data flows disabled: {', '.join(removal.flows_disabled)}")
    if removal.as2_disabled:
        console.print(f"AS2 partners disabled: {', '.join(removal.as2_disabled)}")
    if removal.purged:
        console.print("its files were deleted")
    elif removal.files is not None:
        console.print(f"its files were kept in {removal.files}")


# ---- endpoints --------------------------------------------------------------------------------


@endpoint_app.command("add")
def endpoint_add(
    name: str,
    type_: Annotated[str, typer.Option("--type", help="file, s3, azure, sftp, ftp, email, http or as2.")],
    path: Annotated[
        str | None, typer.Option(help="file: the directory; sftp/ftp: the remote folder.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="s3: bucket.")] = None,
    prefix: Annotated[str | None, typer.Option(help="s3/azure: key prefix.")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="s3: a non-AWS endpoint URL.")] = None,
    region: Annotated[str | None, typer.Option(help="s3: region.")] = None,
    checksums: Annotated[
        str | None,
        typer.Option(
            help="s3: when_supported (default: CRC32 on each request, fastest) or when_required "
            "(for older S3-compatible stores that refuse aws-chunked uploads)."
        ),
    ] = None,
    access_key_id: Annotated[str | None, typer.Option(envvar="TRADELANE_S3_ACCESS_KEY_ID")] = None,
    secret_access_key: Annotated[str | None, typer.Option(envvar="TRADELANE_S3_SECRET_ACCESS_KEY")] = None,
    container: Annotated[str | None, typer.Option(help="azure: container.")] = None,
    connection_string: Annotated[
        str | None, typer.Option(envvar="TRADELANE_AZURE_CONNECTION_STRING", help="azure: connection string.")
    ] = None,
    account_url: Annotated[str | None, typer.Option(help="azure: account URL (with --sas-token).")] = None,
    account_name: Annotated[
        str | None, typer.Option(help="azure: account name (with --account-key).")
    ] = None,
    account_key: Annotated[str | None, typer.Option(help="azure: account key.")] = None,
    sas_token: Annotated[str | None, typer.Option(help="azure: SAS token.")] = None,
    host: Annotated[str | None, typer.Option(help="sftp/ftp: server host name.")] = None,
    port: Annotated[int | None, typer.Option(help="sftp/ftp: port.")] = None,
    user: Annotated[str | None, typer.Option(help="sftp/ftp/email: login.")] = None,
    password: Annotated[str | None, typer.Option(help="sftp/ftp/email: password.")] = None,
    key: Annotated[Path | None, typer.Option(help="sftp: private key file.")] = None,
    passphrase: Annotated[str | None, typer.Option(help="sftp: private key passphrase.")] = None,
    host_key: Annotated[
        str | None, typer.Option(help="sftp: the server's host key 'TYPE BASE64' (pinned; asked if absent).")
    ] = None,
    accept_host_key: Annotated[
        bool, typer.Option(help="sftp: pin the key the server offers now without asking.")
    ] = False,
    tls: Annotated[
        str | None, typer.Option(help="ftp: none|explicit|implicit; email: starttls|ssl|none.")
    ] = None,
    cafile: Annotated[
        str | None, typer.Option(help="ftp/email/http: CA or pinned certificate (PEM).")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="ftp/email/http: do not verify TLS certificates.")] = False,
    temp_name: Annotated[
        str | None,
        typer.Option(
            help="sftp/ftp: how an upload is named until complete: suffix (NAME.<hex>.tradelane.part, "
            "then renamed; default), prefix (.tradelane-tmp-<hex>-NAME, then renamed) or none (the final "
            "name, no rename: for servers that refuse renames; not atomic)."
        ),
    ] = None,
    smtp_host: Annotated[str | None, typer.Option(help="email: SMTP server (to send).")] = None,
    smtp_port: Annotated[int | None, typer.Option(help="email: SMTP port.")] = None,
    imap_host: Annotated[str | None, typer.Option(help="email: IMAP server (to poll).")] = None,
    imap_port: Annotated[int | None, typer.Option(help="email: IMAP port.")] = None,
    imap_tls: Annotated[str | None, typer.Option(help="email: ssl|starttls|none for IMAP.")] = None,
    mailbox: Annotated[str | None, typer.Option(help="email: IMAP folder to poll (INBOX).")] = None,
    search: Annotated[str | None, typer.Option(help="email: IMAP SEARCH criteria (UNSEEN).")] = None,
    taken: Annotated[
        str | None,
        typer.Option(help="email: what a taken message becomes: seen (default), move:FOLDER or delete."),
    ] = None,
    to: Annotated[list[str] | None, typer.Option(help="email: recipient (repeatable).")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="email: From address.")] = None,
    subject: Annotated[str | None, typer.Option(help="email/as2: subject ({name} expands).")] = None,
    url: Annotated[str | None, typer.Option(help="http: URL files are sent to.")] = None,
    method: Annotated[str | None, typer.Option(help="http: POST or PUT.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            help="http: 'Name: value' (repeatable); credential headers (Authorization, X-Api-Key, "
            "Cookie, *token*, *key*, *secret*…) are kept secret."
        ),
    ] = None,
    secret_header: Annotated[
        list[str] | None, typer.Option(help="http: 'Name: value' kept secret (repeatable).")
    ] = None,
    public_param: Annotated[
        list[str] | None,
        typer.Option(
            help="http: a query parameter of the URLs whose value is not secret (repeatable); "
            "every other query value is kept secret and shown as ***."
        ),
    ] = None,
    follow_redirects: Annotated[
        str | None,
        typer.Option(
            help="http: none (default: a redirect is an error), same-host, or any; never into a "
            "loopback/private range the endpoint's own URL is not in."
        ),
    ] = None,
    bearer: Annotated[str | None, typer.Option(help="http: bearer token.")] = None,
    basic: Annotated[str | None, typer.Option(help="http: USER:PASSWORD.")] = None,
    list_url: Annotated[str | None, typer.Option(help="http: URL that lists files (to poll).")] = None,
    pull_url: Annotated[
        str | None, typer.Option(help="http: the URL of one file to poll with GET (instead of --list-url).")
    ] = None,
    success_code: Annotated[
        list[int] | None,
        typer.Option(help="http: an answer that counts as delivered (repeatable; 200 201 202 204)."),
    ] = None,
    upload_mode: Annotated[
        str | None, typer.Option(help="http: raw (the body is the file) or multipart (a form field).")
    ] = None,
    partner: Annotated[str | None, typer.Option(help="as2: the partner's AS2 ID.")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an endpoint of the same name.")] = False,
) -> None:
    """Store an endpoint (credentials encrypted at rest)."""
    from cli.endpoint_options import endpoint_options
    from core.endpoints import rows as endpoint_rows

    given = dict(locals())
    if type_ == "sftp" and not host_key and host:
        given["host_key"] = confirm_host_key(host, port or 22, accept_host_key)
    config, secrets = endpoint_options(type_, given)
    with database() as session:
        endpoint_rows.add(session, name, type_, config, secrets, replace=replace)
    console.print(f"endpoint [bold]{name}[/bold] ({type_}) added")


def confirm_host_key(host: str, port: int, accept: bool) -> str:
    """First contact: show the server's host key fingerprint and pin it once the operator agrees."""
    from core.endpoints.base import EndpointError
    from core.endpoints.hostkeys import fetch_host_key, fingerprint

    try:
        offered = fetch_host_key(host, port)
    except EndpointError as exc:
        err.print(f"[red]error:[/red] could not read the host key of {host}:{port}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"{host}:{port} offers host key {offered.split()[0]} {fingerprint(offered)}")
    if not accept and not typer.confirm("Pin this key for the endpoint?", default=False):
        err.print("not pinned; nothing stored (pass --host-key 'TYPE BASE64' to pin a known key)")
        raise typer.Exit(1)
    return offered


@endpoint_app.command("list")
def endpoint_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List endpoints (never their secrets)."""
    from core.endpoints import rows as endpoint_rows

    with database() as session:
        rows = []
        for e in endpoint_rows.list_all(session):
            scrubber = endpoint_rows.row_scrubber(e)
            rows.append(
                {
                    "name": e.name,
                    "type": e.type,
                    "config": scrubber.data(e.config),
                    "has_secrets": bool(e.secrets),
                    "secrets": endpoint_rows.row_secret_names(e),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "type", "config", "secrets")
    for row in rows:
        config = "  ".join(f"{k}={v}" for k, v in row["config"].items())
        table.add_row(row["name"], row["type"], config, ", ".join(row["secrets"]) or "-")
    console.print(table)


@endpoint_app.command("test")
def endpoint_test(name: str) -> None:
    """Connect and list: says clearly what failed."""
    from core.endpoints import rows as endpoint_rows
    from core.endpoints.base import EndpointError

    with database() as session:
        row = endpoint_rows.require(session, name)
    scrubber = endpoint_rows.row_scrubber(row)
    with console.status(f"testing {name}…"):
        try:
            with endpoint_rows.open_row(row) as endpoint:
                endpoint.check()
                uri = endpoint.uri("")
        except EndpointError as exc:
            err.print(f"[red]✗ {name}[/red]: {describe_failure(exc)}: {scrubber.text(str(exc))}")
            raise typer.Exit(1) from None
    console.print(f"[green]✓ {name}[/green] reachable ({uri})")


def describe_failure(exc: Exception) -> str:
    """What kind of failure, in the operator's words: DNS, refused, auth, TLS, host key, permission."""
    from core.endpoints import base
    from core.endpoints.hostkeys import HostKeyMismatch

    kinds: list[tuple[type[Exception], str]] = [
        (HostKeyMismatch, "host key"),  # before authentication, which it is a kind of
        (base.TlsError, "TLS"),
        (base.DnsError, "DNS"),
        (base.AuthError, "authentication"),
        (base.PermissionDenied, "permission"),
        (base.Unreachable, "unreachable (refused or timed out)"),
        (base.TransientError, "temporary failure"),
        (base.ConfigError, "configuration"),
        (base.NotFound, "not found"),
        (base.InvalidPath, "configuration"),
    ]
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), "error")


@endpoint_app.command("remove")
def endpoint_remove(
    name: str,
    force: Annotated[bool, typer.Option(help="Disable the data flows that use it, and remove it.")] = False,
) -> None:
    """Delete an endpoint; refused while data flows use it (named), unless --force."""
    from core.endpoints import rows as endpoint_rows

    with database() as session:
        disabled = endpoint_rows.remove(session, name, force=force)
    console.print(f"endpoint [bold]{name}[/bold] removed")
    if disabled:
        console.print(f"data flows disabled: {', '.join(disabled)}")


# ---- data flows -------------------------------------------------------------------------------


@flow_app.command("add")
def flow_add(
    name: str,
    source: Annotated[
        str, typer.Option(help="mailbox:PARTNER (its upload/ folder), or an endpoint name to poll.")
    ],
    dest: Annotated[str, typer.Option(help="An endpoint name, or mailbox:PARTNER (its download/).")],
    pattern: Annotated[str, typer.Option(help="File-name glob the flow takes.")] = "*",
    dest_path: Annotated[
        str, typer.Option(help="Destination path; {name} {stem} {suffix} {partner} {date} {time} expand.")
    ] = "{name}",
    validate: Annotated[
        list[str] | None,
        typer.Option(
            help="A check: json, xml, x12, edifact, max_size=10MiB, min_size=1, name=*.json, sha256=HEX."
        ),
    ] = None,
    retries: Annotated[int, typer.Option(help="Delivery retries (exponential backoff + jitter).")] = 5,
    retry_delay: Annotated[
        float, typer.Option(help="First retry delay in seconds; doubles each time.")
    ] = 2.0,
    replace: Annotated[bool, typer.Option(help="Overwrite a data flow of the same name.")] = False,
    every: Annotated[str | None, typer.Option(help="Polling sources: how often, e.g. 60s, 5m, 1h.")] = None,
    cron: Annotated[
        str | None, typer.Option(help="Polling sources: a cron schedule, e.g. '*/5 * * * *'.")
    ] = None,
    after_pull: Annotated[
        str, typer.Option(help="Polling sources: keep (remember it), delete, or archive:PATH at the source.")
    ] = "keep",
    source_folder: Annotated[str | None, typer.Option(help="Polling sources: folder on the source.")] = None,
    on_conflict: Annotated[
        str | None,
        typer.Option(
            help="When the name exists at the destination: rename (keep it, write 'name (2).ext'), "
            "overwrite, or fail. Default: rename (file, mailbox, sftp, ftp, s3, azure); "
            "not for http, email, as2."
        ),
    ] = None,
) -> None:
    """Create a data flow; it is served as a Prefect deployment within seconds."""
    from core import dataflows
    from core.validators import parse_cli_spec

    with database() as session:
        specs = [parse_cli_spec(v) for v in validate or []]
        if dest.startswith("mailbox:"):
            from core.endpoints import rows as endpoint_rows

            endpoint_rows.mailbox_endpoint(session, dest.removeprefix("mailbox:"))
            if dest_path == "{name}":
                dest_path = "download/{name}"
        dataflows.add(
            session,
            name,
            source=source,
            dest=dest,
            pattern=pattern,
            dest_path=dest_path,
            validators=specs,
            retries=retries,
            retry_delay_seconds=retry_delay,
            replace=replace,
            every_seconds=dataflows.parse_interval(every) if every else None,
            cron=cron,
            after_pull=after_pull,
            source_folder=source_folder,
            on_conflict=on_conflict,
        )
    console.print(f"data flow [bold]{name}[/bold] added: {source} → {dest}")


@flow_app.command("list")
def flow_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List data flows."""
    from core import dataflows
    from core.models import Endpoint

    with database() as session:
        rows = []
        for f in dataflows.list_all(session):
            dest = session.get(Endpoint, f.dest_endpoint_id)
            rows.append(
                {
                    "name": f.name,
                    "source": dataflows.source_label(session, f),
                    "pattern": f.pattern,
                    "dest": dest.name if dest else "?",
                    "dest_path": f.dest_path,
                    "validators": f.validators,
                    "retries": f.retries,
                    "enabled": f.enabled,
                    "schedule": (
                        f"every {f.schedule_interval_seconds:g}s"
                        if f.schedule_interval_seconds
                        else f"cron {f.schedule_cron}"
                        if f.schedule_cron
                        else "on upload"
                    ),
                    "after_pull": f.after_pull if dataflows.polls(f) else None,
                    "on_conflict": dataflows.on_conflict_label(session, f),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "name", "source", "pattern", "when", "dest", "path", "on conflict", "checks", "retries", "enabled"
    )
    for r in rows:
        checks = ", ".join(v["type"] for v in r["validators"]) or "-"
        table.add_row(
            r["name"],
            r["source"],
            r["pattern"],
            r["schedule"],
            r["dest"],
            r["dest_path"],
            r["on_conflict"],
            checks,
            str(r["retries"]),
            "yes" if r["enabled"] else "[yellow]no[/yellow]",
        )
    console.print(table)


@flow_app.command("run")
def flow_run_now(name: str) -> None:
    """Poll a polling data flow's source now (needs `tradelane up`)."""
    from cli.supervisor import apply_prefect_environment
    from core import dataflows
    from core.config import get_settings

    with database() as session:
        flow = dataflows.require(session, name)
        if not dataflows.polls(flow):
            raise UserError(f"{name} starts when files are uploaded; only polling flows can be run")
    apply_prefect_environment(get_settings())
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from deployments.naming import poll_deployment

    # Called from sync code, Prefect's run_deployment runs to completion itself (no event loop needed).
    run = run_deployment(poll_deployment(name), timeout=0, tags=[f"flow:{name}", "on-demand"])
    assert isinstance(run, FlowRun)  # not the coroutine it returns when called from async code
    console.print(
        f"poll of [bold]{name}[/bold] started: {get_settings().prefect_ui_url}/runs/flow-run/{run.id}"
    )


@flow_app.command("set")
def flow_set(
    name: str,
    pattern: Annotated[str | None, typer.Option(help="File-name glob the flow takes.")] = None,
    dest: Annotated[str | None, typer.Option(help="An endpoint name, or mailbox:PARTNER.")] = None,
    dest_path: Annotated[str | None, typer.Option(help="Destination path template.")] = None,
    validate: Annotated[
        list[str] | None, typer.Option(help="A check (repeatable; replaces the flow's checks).")
    ] = None,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Remove every check.")] = False,
    retries: Annotated[int | None, typer.Option(help="Delivery retries.")] = None,
    retry_delay: Annotated[float | None, typer.Option(help="First retry delay in seconds.")] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    on_conflict: Annotated[
        str | None,
        typer.Option(help="A name taken at the destination: rename, overwrite, fail or default."),
    ] = None,
) -> None:
    """Change some settings of a data flow; the others stay as they are."""
    from core import dataflows
    from core.validators import parse_cli_spec

    if validate and no_validate:
        raise typer.BadParameter("give --validate or --no-validate, not both")
    with database() as session:
        specs = [] if no_validate else [parse_cli_spec(v) for v in validate] if validate else None
        said = dataflows.update(
            session,
            name,
            pattern=pattern,
            dest=dest,
            dest_path=dest_path,
            validators=specs,
            retries=retries,
            retry_delay_seconds=retry_delay,
            enabled=enable,
            on_conflict=on_conflict,
        )
    console.print(f"data flow [bold]{name}[/bold]: " + ("; ".join(said) if said else "nothing changed"))


@flow_app.command("remove")
def flow_remove(
    name: str,
    force: Annotated[
        bool, typer.Option(help="Remove it even with transfers pending or running (they are marked failed).")
    ] = False,
) -> None:
    """Remove a data flow; its transfer history stays."""
    from core import dataflows

    with database() as session:
        removal = dataflows.remove(session, name, force=force)
    console.print(f"data flow [bold]{name}[/bold] removed")
    if removal.cancelled:
        console.print(f"{removal.cancelled} pending or running transfer(s) marked failed")


@flow_app.command("enable")
def flow_enable(name: str) -> None:
    """Start carrying files again (pending ones go out)."""
    from core import dataflows

    with database() as session:
        dataflows.set_enabled(session, name, True)
    console.print(f"data flow [bold]{name}[/bold] enabled")


@flow_app.command("disable")
def flow_disable(name: str) -> None:
    """Stop taking new files into this data flow."""
    from core import dataflows

    with database() as session:
        dataflows.set_enabled(session, name, False)
    console.print(f"data flow [bold]{name}[/bold] disabled")


# ---- history ----------------------------------------------------------------------------------


def _when(value: str | None, option: str) -> Any:
    from cli.history import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: {exc}") from None


@app.command()
def transfers(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    wide: Annotated[bool, typer.Option(help="Every column, in full (run links are never cut).")] = False,
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only this data flow.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only files this partner sent.")] = None,
    dest: Annotated[str | None, typer.Option(help="Only to this destination endpoint.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Received at or after: 2026-12-01, 2026-12-01T14:30, or 90m, 2h, 7d ago."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Received before (same forms as --since).")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """Recent transfers: when, file, flow, destination, state, and a link to the Prefect run."""
    from cli.history import print_transfers, transfers_json
    from core import transfers as history
    from core.config import get_settings
    from core.endpoints import rows as endpoint_rows

    ui = get_settings().prefect_ui_url
    start, end = _when(since, "--since"), _when(until, "--until")
    with database() as session:
        rows = history.recent(
            session, limit=limit, state=state, flow=flow, partner=partner, dest=dest, since=start, until=end
        )
        rows = history.scrubbed(rows, endpoint_rows.scrubber(session))
    if as_json:
        print(json.dumps(transfers_json(rows, ui), indent=2))
        return
    print_transfers(console, rows, ui, wide)


@app.command()
def audit(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    wide: Annotated[bool, typer.Option(help="Every column, in full.")] = False,
    partner: Annotated[
        str | None, typer.Option(help="What this partner did, and what was done to it.")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action or family: login, login.failed, upload, partner, ...")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="At or after: an ISO date/time, or 90m, 2h, 7d ago.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before (same forms as --since).")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 100,
) -> None:
    """The audit trail: logins and failures, uploads, downloads, deletes, configuration changes."""
    from cli.history import audit_json, audit_table
    from core import audit as trail

    start, end = _when(since, "--since"), _when(until, "--until")
    with database() as session:
        events = trail.events(session, partner=partner, action=action, since=start, until=end, limit=limit)
    if as_json:
        print(json.dumps(audit_json(events), indent=2))
        return
    out = Console(width=100_000, soft_wrap=True) if wide else console
    table, hint = audit_table(events, out.width, wide)
    out.print(table)
    if hint:
        out.print(hint, style="dim")


@app.command()
def replay(transfer_id: int) -> None:
    """Carry a finished transfer's file again through the same data flow."""
    from core import transfers as history

    with database() as session:
        copy = history.replay(session, transfer_id)
    console.print(f"transfer {transfer_id} replayed as transfer {copy.id} (pending)")


@app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Option("-f", "--file", exists=True, dir_okay=False, help="YAML declarations.")
    ],
) -> None:
    """Create or update partners, endpoints and data flows declared in a YAML file (idempotent)."""
    with database() as session:
        changes = apply_cmd.apply_file(session, file, progress=console)
    for line in changes:
        console.print(line)


def main() -> None:
    """The `tradelane` command: everything it and its children write into the home is private."""
    from core.config import get_settings
    from core.permissions import make_private

    make_private(get_settings().home_dir)
    app()


if __name__ == "__main__":
    main()
