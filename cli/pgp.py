"""`tradelane pgp key …`: the OpenPGP keyring (partners' public keys, our key pairs)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console

from cli.common import DataTable, console, print_json, safe, styled
from cli.options import HOME, AccountOption, scoped_database

app = typer.Typer(help="OpenPGP: the keyring that pgp-encrypt and pgp-decrypt use.", no_args_is_help=True)
key_app = typer.Typer(help="Keys: import, generate, list, export, remove.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("import")
def key_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="One key, armored or binary.")],
    name: Annotated[str | None, typer.Option(help="Name in the keyring (default: the key's email).")] = None,
    passphrase: Annotated[
        str | None,
        typer.Option(envvar="TRADELANE_PGP_PASSPHRASE", help="Passphrase of a protected private key."),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Import a key: a partner's public key, or a private key of ours."""
    from core.pgp import keyring

    with scoped_database(account) as (session, scope):
        row = keyring.import_key(session, scope, file.read_bytes(), name=name, passphrase=passphrase)
        what = "public and private key" if row.private_key else "public key"
        console.print(f"imported {safe(what)} [bold]{safe(row.name)}[/bold] ({safe(row.fingerprint)})")


@key_app.command("generate")
def key_generate(
    name: Annotated[str, typer.Argument(help="Name in the keyring; also the key's user ID name.")],
    email: Annotated[str, typer.Option(help="The key's email (its user ID address).")],
    algorithm: Annotated[str, typer.Option(help="rsa3072, rsa4096 or ed25519.")] = "rsa3072",
    expires: Annotated[str, typer.Option(help="0 (never), days, 2w, 6m, 2y, or YYYY-MM-DD.")] = "2y",
    account: AccountOption = HOME,
) -> None:
    """Generate a key pair of ours (give partners its public key: `pgp key export NAME`)."""
    from core.pgp import keyring

    with scoped_database(account) as (session, scope):
        row = keyring.generate_key(session, scope, name, email, algorithm=algorithm, expires=expires)
        console.print(f"generated [bold]{safe(row.name)}[/bold] ({row.algorithm}, {safe(row.fingerprint)})")


@key_app.command("list")
def key_list(as_json: Annotated[bool, typer.Option("--json")] = False, account: AccountOption = HOME) -> None:
    """List keys: name, email, fingerprint, whether we hold the private part, expiry."""
    from core.pgp import keyring

    with scoped_database(account) as (session, scope):
        rows: list[dict[str, Any]] = [
            {
                "name": k.name,
                "email": k.email,
                "fingerprint": k.fingerprint,
                "private": k.private_key is not None,
                "algorithm": k.algorithm,
                "expires": _utc(k.expires_at).isoformat() if k.expires_at else None,
                "expired": bool(k.expires_at and _utc(k.expires_at) <= datetime.now(UTC)),
                "user_ids": k.user_ids,
            }
            for k in keyring.list_keys(session, scope)
        ]
    if as_json:
        print_json(rows)
        return
    table = DataTable(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "email", "fingerprint", "private", "expires"):
        table.add_column(column, overflow="fold")
    for row in rows:
        expires = row["expires"][:10] if row["expires"] else "never"
        table.add_row(
            row["name"],
            row["email"] or "",
            row["fingerprint"],
            "yes" if row["private"] else "no",
            styled(f"EXPIRED {expires}", "red") if row["expired"] else expires,
        )
    # A fingerprint is 40 characters: wider than an 80-column pipe allows with the rest, never cut.
    Console(width=max(console.width, 132)).print(table)


@key_app.command("export")
def key_export(
    name: Annotated[str, typer.Argument(help="Name, email or fingerprint.")], account: AccountOption = HOME
) -> None:
    """Print the ASCII-armored public key (never the private key)."""
    from core.pgp import keyring

    with scoped_database(account) as (session, scope):
        armored = keyring.export_public(session, scope, name)
    sys.stdout.write(armored if armored.endswith("\n") else armored + "\n")


@key_app.command("remove")
def key_remove(
    name: Annotated[str, typer.Argument(help="Name, email or fingerprint.")], account: AccountOption = HOME
) -> None:
    """Remove a key from the keyring (with its private part, if we hold it)."""
    from core.pgp import keyring

    with scoped_database(account) as (session, scope):
        row = keyring.remove_key(session, scope, name)
        console.print(f"removed [bold]{safe(row.name)}[/bold] ({safe(row.fingerprint)})")


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
