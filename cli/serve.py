"""`tradelane serve api|mailboxes|dispatcher|prefect`: one role of cli/roles.py, on its own.

Configured only by environment, with its own home: what several roles must share (the store, the
secrets' key, the storage, the Prefect server, the certificate and host keys partners pin) is never
made up in that home. A role missing one refuses to start and names the setting.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import typer

from cli.common import err
from core.config import Settings, get_settings

serve_app = typer.Typer(
    help="Run one role on its own (scale-out); `tradelane up` runs them all on one machine.",
    no_args_is_help=True,
)


class RoleSettingError(RuntimeError):
    """A role on its own lacks a setting it must share with the others."""


@dataclass(frozen=True)
class Shared:
    """Something a home holds that the roles on their own must be given instead."""

    setting: str
    what: str

    def given(self, settings: Settings) -> bool:
        if self.setting.startswith("PREFECT_"):
            return bool(os.environ.get(self.setting, "").strip())
        return getattr(settings, self.setting.removeprefix("TRADELANE_").lower()) is not None


STORE = Shared(
    "TRADELANE_DATABASE_URL",
    "the store every role shares (e.g. postgresql+psycopg://user:password@db/tradelane); unset, "
    "each role would use its own SQLite file in its own home",
)
SECRET_KEY = Shared(
    "TRADELANE_SECRET_KEY",
    "the key stored secrets (endpoint passwords, keys) are encrypted with; unset, each role would "
    "generate its own into its home and could not read the others' (make one with: python -c "
    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')",
)
STORAGE = Shared(
    "TRADELANE_STORAGE_URL",
    "the folder (or s3://bucket/prefix) holding the mailboxes, the archive and staging, which every "
    "role must see alike",
)
PREFECT = Shared(
    "PREFECT_API_URL",
    "the Prefect server the deployments run on (`tradelane serve prefect`, or your own), e.g. "
    "http://prefect:4200/api",
)
CERTIFICATE = Shared(
    "TRADELANE_TLS_CERT_FILE",
    "the certificate (with TRADELANE_TLS_KEY_FILE) partners are shown; unset, each server would "
    "present its own self-signed one",
)
HOST_KEYS = Shared(
    "TRADELANE_SFTP_HOST_KEY_DIR",
    "the folder with the SFTP host keys partners pin; unset, each mailbox server would make its own",
)


def needs(role: str, settings: Settings) -> list[Shared]:
    """What `role` on its own must be told rather than find in its home."""
    if role == "api":
        return [STORE, SECRET_KEY, STORAGE, *([CERTIFICATE] if settings.api_tls else [])]
    if role == "mailboxes":
        return [STORE, SECRET_KEY, STORAGE, CERTIFICATE, HOST_KEYS]
    if role == "dispatcher":
        return [STORE, PREFECT]
    return []


def check_shared(role: str, settings: Settings) -> None:
    missing = [shared for shared in needs(role, settings) if not shared.given(settings)]
    if missing:
        lines = [f"{shared.setting} is not set: {shared.what}" for shared in missing]
        raise RoleSettingError(
            f"`tradelane serve {role}` runs with its own home, so it must be given what the roles "
            "share:\n  " + "\n  ".join(lines)
        )


def check_prefect_server_auth(settings: Settings) -> None:
    from cli.supervisor import given_prefect_auth

    if given_prefect_auth(settings) is None:
        raise RoleSettingError(
            "TRADELANE_PREFECT_AUTH is not set: the Prefect API creates flow runs and shows their "
            "logs, so it is never open; give it a user:password (or PREFECT_SERVER_API_AUTH_STRING), "
            "and the same to every other role"
        )


def _logging() -> None:
    import logging

    from core.redact import install_log_scrubber

    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _ports_free(role: str, settings: Settings) -> None:
    from cli.supervisor import port_free

    ports = {
        "api": [("API", settings.host, settings.api_port)],
        "mailboxes": [("SFTP", settings.host, settings.sftp_port), ("FTP", settings.host, settings.ftp_port)],
        "prefect": [("Prefect server", settings.prefect_host, settings.prefect_port)],
    }.get(role, [])
    for what, host, port in ports:
        if not port_free(host, port):
            raise RuntimeError(f"{what} port {host}:{port} is already in use")


def run_role(role: str) -> None:
    """Start `role` alone in this process and serve until SIGINT/SIGTERM."""
    from cli import roles
    from cli.supervisor import apply_prefect_environment, clear_text_warning, external_prefect_api
    from core.db import init_db

    settings = get_settings()
    _logging()
    check_shared(role, settings)
    _ports_free(role, settings)
    if role in ("api", "mailboxes"):
        from core import storage

        storage.check(settings)  # a storage bucket that does not exist refuses the start, by name
    if external_prefect_api():
        apply_prefect_environment(settings)
    init_db()  # migrations on PostgreSQL are serialised by an advisory lock (core/db.py)
    if role == "mailboxes" or (role == "api" and settings.api_tls):
        from core import tls

        tls.server_certificate(settings)  # an unusable certificate refuses the start, by file name
    if role == "api" and (warning := clear_text_warning(settings)):
        err.print(f"[yellow]warning:[/yellow] {warning}", markup=True, highlight=False)
    if role == "dispatcher":
        roles.check_dead_run_bound(settings)
        roles.wait_for_prefect(
            os.environ["PREFECT_API_URL"], os.environ.get("PREFECT_API_AUTH_STRING"), 90, alive=lambda: True
        )
    host = settings.host
    what = {
        "api": f"API {settings.api_scheme}://{host}:{settings.api_port}",
        "mailboxes": f"SFTP {host}:{settings.sftp_port}   FTP/FTPS {host}:{settings.ftp_port}",
        "dispatcher": f"dispatcher on Prefect {os.environ.get('PREFECT_API_URL')}",
    }[role]
    role_coroutine = {"api": roles.api, "mailboxes": roles.mailboxes, "dispatcher": roles.dispatcher}[role]

    import uvloop

    uvloop.install()
    asyncio.run(
        roles.run_roles(
            settings,
            [(role, role_coroutine)],
            started=lambda: print(f"tradelane {role} is up: {what}   Ctrl-C stops", flush=True),
        )
    )
    print(f"tradelane {role} stopped", flush=True)


def exec_prefect_server() -> None:
    """Replace this process with the Prefect server (its signals, its exit code)."""
    from cli.roles import prefect_server_command
    from cli.supervisor import apply_prefect_environment

    settings = get_settings()
    check_prefect_server_auth(settings)
    _ports_free("prefect", settings)
    apply_prefect_environment(settings, own_server=True)  # `serve prefect` always starts one
    command = prefect_server_command(settings)
    print(f"tradelane prefect: Prefect server on {settings.prefect_ui_url}", flush=True)
    sys.stdout.flush()
    os.execve(command[0], command, os.environ.copy())


def _refusing(run: Callable[[], None]) -> None:
    try:
        run()
    except RuntimeError as exc:  # RoleSettingError, PrefectSettingError, a busy port, TLS
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@serve_app.command("api")
def serve_api() -> None:
    """The REST API, AS2 and the web pages (needs TRADELANE_DATABASE_URL, _SECRET_KEY, _STORAGE_URL)."""
    _refusing(lambda: run_role("api"))


@serve_app.command("mailboxes")
def serve_mailboxes() -> None:
    """SFTP and FTP/FTPS (needs TRADELANE_DATABASE_URL, _SECRET_KEY, _STORAGE_URL, _TLS_CERT_FILE,
    _SFTP_HOST_KEY_DIR)."""
    _refusing(lambda: run_role("mailboxes"))


@serve_app.command("dispatcher")
def serve_dispatcher() -> None:
    """Pending transfers into Prefect runs, and the data flows' deployments kept registered on the
    work pool (needs TRADELANE_DATABASE_URL, PREFECT_API_URL)."""
    _refusing(lambda: run_role("dispatcher"))


@serve_app.command("prefect")
def serve_prefect() -> None:
    """The Prefect server on TRADELANE_PREFECT_HOST:TRADELANE_PREFECT_PORT (needs TRADELANE_PREFECT_AUTH)."""
    _refusing(exec_prefect_server)
