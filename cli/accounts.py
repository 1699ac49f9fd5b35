"""`tradelane account ...`: accounts (tenants) and the people who log in for them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box

from cli.common import DataTable, console, database, print_json, safe
from cli.options import HOME, AccountOption, scoped_database

account_app = typer.Typer(help="Accounts (tenants) and their users.", no_args_is_help=True)
user_app = typer.Typer(help="The people who log in for an account (by e-mail address).", no_args_is_help=True)
account_app.add_typer(user_app, name="user")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
PasswordOption = Annotated[str, typer.Option(help="The user's password (the password policy applies).")]


@account_app.command("add")
def account_add(
    name: str,
    email: Annotated[
        str, typer.Option(help="The account's first admin: the e-mail address it logs in with.")
    ],
    password: PasswordOption,
    as_json: JsonOption = False,
) -> None:
    """Create an account with its admin user, who logs in with EMAIL over REST, SFTP and FTP."""
    from core import accounts

    with database() as session:
        user = accounts.add(session, name, email=email, password=password)
        shown = {"account": name, "admin": user.email, "created_at": user.created_at.isoformat()}
    if as_json:
        print_json(shown)
        return
    console.print(f"account [bold]{safe(name)}[/bold] added; its admin logs in as {safe(shown['admin'])}")


@account_app.command("list")
def account_list(as_json: JsonOption = False) -> None:
    """Every account, with how many users, partners and connections (pending or active) it has."""
    from core import accounts

    with database() as session:
        rows: list[dict[str, Any]] = [
            {
                "name": a.name,
                "users": a.users,
                "partners": a.partners,
                "connections": a.connections,
                "created_at": a.created_at.isoformat(),
            }
            for a in accounts.list_all(session)
        ]
    if as_json:
        print_json(rows)
        return
    table = DataTable("account", "users", "partners", "connections", "created (UTC)", box=box.SIMPLE_HEAD)
    for r in rows:
        created = r["created_at"][:16].replace("T", " ")
        table.add_row(r["name"], str(r["users"]), str(r["partners"]), str(r["connections"]), created)
    console.print(table)


@account_app.command("remove")
def account_remove(name: str) -> None:
    """Remove an account that has no partners, endpoints or data flows left; its users' logins end."""
    from core import accounts

    with database() as session:
        accounts.remove(session, name)
    console.print(f"account [bold]{safe(name)}[/bold] removed")


@user_app.command("add")
def user_add(
    email: str,
    password: PasswordOption,
    role: Annotated[str, typer.Option(help="admin, operator or read-only.")] = "read-only",
    account: AccountOption = HOME,
    as_json: JsonOption = False,
) -> None:
    """Let EMAIL log in for the account with a role."""
    from core import accounts

    with scoped_database(account) as (session, scope):
        user = accounts.add_user(session, scope, email, password=password, role=role)
        shown = {"account": scope.account_name, "email": user.email, "role": user.role}
    if as_json:
        print_json(shown)
        return
    console.print(
        f"user [bold]{safe(shown['email'])}[/bold] added to {safe(shown['account'])} as {shown['role']}"
    )


@user_app.command("list")
def user_list(account: AccountOption = HOME, as_json: JsonOption = False) -> None:
    """The account's users: address, role, state."""
    from api.admin.schemas import UserPublic
    from core import accounts

    with scoped_database(account) as (session, scope):
        # One shape for `--json` and the admin API's answers.
        rows = [UserPublic.of(u).model_dump(mode="json") for u in accounts.list_users(session, scope)]
    if as_json:
        print_json(rows)
        return
    table = DataTable("email", "role", "state", "created (UTC)", box=box.SIMPLE_HEAD)
    for r in rows:
        state = "locked" if r["locked"] else ("enabled" if r["enabled"] else "disabled")
        table.add_row(r["email"], r["role"], state, r["created_at"][:16].replace("T", " "))
    console.print(table)


@user_app.command("set")
def user_set(
    email: str,
    password: Annotated[str | None, typer.Option(help="A new password (its sessions end).")] = None,
    role: Annotated[str | None, typer.Option(help="admin, operator or read-only.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Allow or stop its logins.")
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Change a user's password, role, or whether it may log in."""
    from core import accounts

    with scoped_database(account) as (session, scope):
        said = accounts.set_user(session, scope, email, password=password, role=role, enabled=enabled)
    console.print(f"user [bold]{safe(email)}[/bold]: {safe(', '.join(said) if said else 'nothing changed')}")


@user_app.command("unlock")
def user_unlock(email: str, account: AccountOption = HOME) -> None:
    """Lift a lock set after failed logins from several addresses."""
    from core import accounts

    with scoped_database(account) as (session, scope):
        was_locked = accounts.unlock_user(session, scope, email)
    console.print(f"user [bold]{safe(email)}[/bold] {'unlocked' if was_locked else 'was not locked'}")


@user_app.command("remove")
def user_remove(email: str, account: AccountOption = HOME) -> None:
    """Remove a user: its logins end at once and its address may be used again."""
    from core import accounts

    with scoped_database(account) as (session, scope):
        accounts.remove_user(session, scope, email)
    console.print(f"user [bold]{safe(email)}[/bold] removed")
