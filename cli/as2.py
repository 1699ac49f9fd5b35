"""`tradelane as2`: our AS2 identity, partners' AS2 profiles, and the message history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from cli.common import DataTable, console, err, safe, styled
from cli.options import HOME, AccountOption, scoped_database

app = typer.Typer(help="AS2: our identity, partner profiles, messages.", no_args_is_help=True)
org_app = typer.Typer(help="Our AS2 identity (AS2 ID, key pair, certificate).", no_args_is_help=True)
partner_app = typer.Typer(help="Trading partners' AS2 profiles.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(partner_app, name="partner")

FileArg = Annotated[Path | None, typer.Option(exists=True, dir_okay=False)]
AllowUnsigned = Annotated[
    bool,
    typer.Option(
        "--allow-unsigned",
        help="Take unsigned messages from this partner (anyone knowing its AS2 ID can then send as it).",
    ),
]
MdnReturnUrl = Annotated[
    str | None,
    typer.Option(help="Where our async MDNs to this partner go, whatever URL its messages name."),
]
AllowMdnUrl = Annotated[
    list[str] | None,
    typer.Option(
        help="URL prefix its messages may name for async MDNs (repeatable; default: the origin of --url)."
    ),
]
UNSIGNED_WARNING = (
    "[yellow]warning:[/yellow] {as2_id} may send unsigned messages: anyone who knows the AS2 IDs "
    "can then send files as {as2_id}"
)


def _expiry_style(note: str) -> str:
    return "red" if note.startswith("EXPIRED") else "yellow" if "left" in note else ""


def _expiry(note: str) -> str:
    """The note as markup for a printed line (its text escaped)."""
    style = _expiry_style(note)
    return f"[{style}]{escape(note)}[/{style}]" if style else escape(note)


def _expiry_cell(note: str) -> Text:
    return styled(note, _expiry_style(note))


# ---- org --------------------------------------------------------------------------------------


@org_app.command("create")
def org_create(
    as2_id: Annotated[str, typer.Option("--as2-id", help="Our AS2 ID, as partners address us.")],
    p12: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Import a PKCS#12.")] = None,
    p12_password: Annotated[str | None, typer.Option(envvar="TRADELANE_AS2_P12_PASSWORD")] = None,
    key: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Import a PEM key…")] = None,
    cert: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="…with its certificate.")
    ] = None,
    key_password: Annotated[str | None, typer.Option(envvar="TRADELANE_AS2_KEY_PASSWORD")] = None,
    days: Annotated[int, typer.Option(help="Validity of a generated self-signed certificate.")] = 730,
    replace: Annotated[bool, typer.Option(help="Renew the keys of an existing identity.")] = False,
    account: AccountOption = HOME,
) -> None:
    """Create our AS2 identity: a new RSA 2048 key + self-signed certificate, or import one."""
    from core.as2 import identity

    if p12 and (key or cert):
        raise typer.BadParameter("give --p12, or --key with --cert, not both")
    if bool(key) != bool(cert):
        raise typer.BadParameter("--key and --cert go together")
    with scoped_database(account) as (session, scope):
        if p12:
            key_pem, cert_pem = identity.from_p12(p12.read_bytes(), p12_password)
        elif key and cert:
            key_pem, cert_pem = identity.from_pem(key.read_bytes(), cert.read_bytes(), key_password)
        else:
            identity.check_as2_id(as2_id)
            key_pem, cert_pem = identity.self_signed(as2_id, days)
        identity.create(session, scope, as2_id, key_pem, cert_pem, replace=replace)
    info = identity.cert_info(cert_pem)
    console.print(
        f"AS2 organization [bold]{safe(as2_id)}[/bold] ready; certificate {_expiry(info.expiry_note())}"
    )
    console.print("give partners our certificate: [bold]tradelane as2 org cert[/bold]")


@org_app.command("cert")
def org_cert(
    as2_id: Annotated[str | None, typer.Option("--as2-id")] = None,
    account: AccountOption = HOME,
) -> None:
    """Print our certificate (PEM) for partners."""
    from core.as2 import identity

    with scoped_database(account) as (session, scope):
        pem = identity.require(session, scope, as2_id).certificate
    print(pem, end="")


@org_app.command("show")
def org_show(as_json: Annotated[bool, typer.Option("--json")] = False, account: AccountOption = HOME) -> None:
    """Our AS2 identities with their certificates' fingerprints and expiry."""
    from core.as2 import identity

    with scoped_database(account) as (session, scope):
        rows: list[dict[str, Any]] = []
        for org in identity.list_all(session, scope):
            info = identity.cert_info(org.certificate)
            rows.append(
                {
                    "as2_id": org.as2_id,
                    "subject": info.subject,
                    "sha256": info.sha256_fingerprint,
                    "not_after": info.not_after.isoformat(),
                    "days_left": info.days_left,
                    "expiry": info.expiry_note(),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        err.print("no AS2 organization yet: tradelane as2 org create --as2-id ID")
        raise typer.Exit(1)
    table = DataTable("AS2 ID", "subject", "SHA-256 fingerprint", "certificate")
    for r in rows:
        table.add_row(r["as2_id"], r["subject"], r["sha256"], _expiry_cell(r["expiry"]))
        if r["days_left"] < 30:
            err.print(f"[yellow]warning:[/yellow] certificate of {safe(r['as2_id'])}: {safe(r['expiry'])}")
    console.print(table)


# ---- partners ---------------------------------------------------------------------------------


@partner_app.command("add")
def partner_add(
    as2_id: Annotated[str, typer.Argument(help="The partner's AS2 ID.")],
    mailbox: Annotated[str, typer.Option(help="tradelane partner whose upload/ receives its messages.")],
    url: Annotated[str, typer.Option(help="The partner's AS2 URL we send to.")],
    cert: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The partner's certificate.")],
    sign: Annotated[
        str | None, typer.Option(help="sha1|sha256|sha384|sha512; also required inbound.")
    ] = None,
    encrypt: Annotated[
        str | None, typer.Option(help="3des|aes128|aes192|aes256; also required inbound.")
    ] = None,
    compress: Annotated[bool, typer.Option(help="Compress what we send.")] = False,
    mdn: Annotated[str, typer.Option(help="Receipt we ask for: none|sync|async.")] = "sync",
    mdn_sign: Annotated[str | None, typer.Option(help="Ask for MDNs signed with this digest.")] = None,
    mdn_url: Annotated[
        str | None, typer.Option(help="Where the partner posts async MDNs to us (default our /as2/mdn).")
    ] = None,
    mdn_timeout: Annotated[float, typer.Option(help="Seconds to wait for an async MDN.")] = 600.0,
    max_resends: Annotated[int, typer.Option(help="Resends (same Message-ID) before failing.")] = 3,
    allow_unsigned: AllowUnsigned = False,
    mdn_return_url: MdnReturnUrl = None,
    allow_mdn_url: AllowMdnUrl = None,
    org: Annotated[
        str | None, typer.Option(help="Our AS2 ID for this partner (default: the only one).")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Change an existing profile.")] = False,
    account: AccountOption = HOME,
) -> None:
    """Store a partner's AS2 profile."""
    from core.as2 import identity, profiles

    with scoped_database(account) as (session, scope):
        profiles.add(
            session,
            scope,
            as2_id,
            mailbox=mailbox,
            url=url,
            certificate=cert.read_bytes(),
            sign=sign,
            encrypt=encrypt,
            compress=compress,
            mdn=mdn,
            mdn_sign=mdn_sign,
            mdn_url=mdn_url,
            mdn_timeout_seconds=mdn_timeout,
            max_resends=max_resends,
            allow_unsigned=allow_unsigned,
            mdn_return_url=mdn_return_url,
            allow_mdn_urls=allow_mdn_url,
            org=org,
            replace=replace,
        )
        note = identity.cert_info(cert.read_bytes()).expiry_note()
    console.print(
        f"AS2 partner [bold]{safe(as2_id)}[/bold] added → mailbox {safe(mailbox)}; "
        f"certificate {_expiry(note)}"
    )
    if allow_unsigned:
        err.print(UNSIGNED_WARNING.format(as2_id=escape(as2_id)))


@partner_app.command("set")
def partner_set(
    as2_id: Annotated[str, typer.Argument(help="The partner's AS2 ID.")],
    allow_unsigned: Annotated[
        bool | None,
        typer.Option(
            "--allow-unsigned/--require-signed",
            help="Take unsigned messages from this partner, or require them signed again.",
        ),
    ] = None,
    mdn_return_url: Annotated[
        str | None,
        typer.Option(help="Where our async MDNs to this partner go ('' to clear: then --allow-mdn-url)."),
    ] = None,
    allow_mdn_url: AllowMdnUrl = None,
    clear_allow_mdn_urls: Annotated[
        bool, typer.Option(help="Forget the --allow-mdn-url list (back to the origin of --url).")
    ] = False,
    account: AccountOption = HOME,
) -> None:
    """Change a partner's inbound security: unsigned messages, where async MDNs may go."""
    from core.as2 import profiles

    urls = [] if clear_allow_mdn_urls else allow_mdn_url
    with scoped_database(account) as (session, scope):
        profile = profiles.set_options(
            session,
            scope,
            as2_id,
            allow_unsigned=allow_unsigned,
            mdn_return_url=mdn_return_url,
            allow_mdn_urls=urls,
        )
        summary = _inbound(profile.allow_unsigned, profile.sign)
    console.print(f"AS2 partner [bold]{safe(as2_id)}[/bold]: inbound {safe(summary)}")
    if allow_unsigned:
        err.print(UNSIGNED_WARNING.format(as2_id=escape(as2_id)))


def _inbound(allow_unsigned: bool, sign: str | None) -> str:
    if sign:
        return f"signed ({sign})"
    return "UNSIGNED" if allow_unsigned else "signed"


@partner_app.command("list")
def partner_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    account: AccountOption = HOME,
) -> None:
    """List AS2 partner profiles, with certificate expiry."""
    from core.as2 import identity, profiles
    from core.models import Partner

    with scoped_database(account) as (session, scope):
        rows: list[dict[str, Any]] = []
        for p in profiles.list_all(session, scope):
            mailbox = session.get(Partner, p.partner_id)
            info = identity.cert_info(p.certificate)
            rows.append(
                {
                    "as2_id": p.as2_id,
                    "mailbox": mailbox.name if mailbox else "?",
                    "url": p.url,
                    "sign": p.sign,
                    "encrypt": p.encrypt,
                    "compress": p.compress,
                    "mdn": p.mdn_mode,
                    "mdn_sign": p.mdn_sign,
                    "mdn_url": p.mdn_url,
                    "mdn_timeout_seconds": p.mdn_timeout_seconds,
                    "max_resends": p.max_resends,
                    "allow_unsigned": p.allow_unsigned,
                    "mdn_return_url": p.mdn_return_url,
                    "allow_mdn_urls": profiles.allowed_mdn_prefixes(p) if not p.mdn_return_url else [],
                    "cert_not_after": info.not_after.isoformat(),
                    "cert_days_left": info.days_left,
                    "cert_expiry": info.expiry_note(),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    # Narrow enough for 80 columns; --json has every field (MDN return URL, allowed MDN URLs).
    table = DataTable("AS2 ID", "mailbox", "URL", "security", "inbound", "MDN", "certificate")
    for r in rows:
        mdn = r["mdn"] + (f" signed {r['mdn_sign']}" if r["mdn_sign"] else "")
        security = " ".join(
            [r["sign"] or "unsigned", r["encrypt"] or "unencrypted"]
            + (["compressed"] if r["compress"] else [])
        )
        inbound = _inbound(r["allow_unsigned"], r["sign"])
        table.add_row(
            r["as2_id"],
            r["mailbox"],
            r["url"],
            security,
            styled(inbound, "red") if r["allow_unsigned"] and not r["sign"] else inbound,
            mdn,
            _expiry_cell(r["cert_expiry"]),
        )
        if r["cert_days_left"] < 30:
            err.print(
                f"[yellow]warning:[/yellow] certificate of {safe(r['as2_id'])}: {safe(r['cert_expiry'])}"
            )
        if r["allow_unsigned"] and not r["sign"]:
            err.print(UNSIGNED_WARNING.format(as2_id=escape(r["as2_id"])))
    console.print(table)


@partner_app.command("remove")
def partner_remove(as2_id: str, account: AccountOption = HOME) -> None:
    """Delete a partner's AS2 profile (its message history stays)."""
    from core.as2 import profiles

    with scoped_database(account) as (session, scope):
        profiles.remove(session, scope, as2_id)
    console.print(f"AS2 partner [bold]{safe(as2_id)}[/bold] removed")


# ---- messages ---------------------------------------------------------------------------------


@app.command("messages")
def messages(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    direction: Annotated[str | None, typer.Option(help="in or out.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this partner's AS2 ID.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    show_mdn: Annotated[bool, typer.Option("--mdn", help="Include the MDN text (with --json).")] = False,
    account: AccountOption = HOME,
) -> None:
    """AS2 messages in and out: Message-ID, status, MIC, MDN, and the receipt or transfer."""
    from core.as2.messages import recent

    with scoped_database(account) as (session, scope):
        rows = []
        for m in recent(session, scope, limit=limit, direction=direction, partner=partner, status=status):
            item = m.model_dump(
                exclude={"mdn", "spool_path", "account_id"} if not show_mdn else {"spool_path"}
            )
            for key in ("created_at", "updated_at", "next_attempt_at"):
                item[key] = item[key].isoformat() if item[key] else None
            rows.append(item)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    colors = {"acknowledged": "green", "received": "green", "failed": "red", "awaiting-mdn": "cyan"}
    table = DataTable("id", "dir", "partner", "file", "status", "security", "MIC", "MDN", "receipt/transfer")
    for r in rows:
        security = "/".join(
            word for word, on in (("signed", r["signed"]), ("encrypted", r["encrypted"]),
                                  ("compressed", r["compressed"])) if on
        ) or "plain"  # fmt: skip
        color = colors.get(r["status"], "white")
        mdn = r["disposition"] or "-"
        if r["mdn_mode"] != "none":
            mdn = f"{r['mdn_mode']}{' signed' if r['mdn_signed'] else ''}: {mdn}"
        link = f"receipt {r['receipt_id']}" if r["receipt_id"] else ""
        link = f"transfer {r['transfer_id']}" if r["transfer_id"] else link
        status_text = styled(r["status"], color)
        if r["error"]:
            status_text.append(f"\n{r['error']}")
        table.add_row(
            str(r["id"]),
            r["direction"],
            r["partner_as2_id"],
            f"{r['file_name'] or '-'}\n<{r['message_id']}>",
            status_text,
            security,
            f"{r['mic']} {r['mic_alg']}" if r["mic"] else "-",
            mdn,
            link or "-",
        )
    console.print(table)
