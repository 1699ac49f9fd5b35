"""The console's B2B connection page through a real uvicorn server with real logins: an admin
invites another account (the link shown once, the pending badge), the other account accepts (core,
as its CLI would), the admin lets the sender view the folder and stops it, then revokes; an
operator sees the list without a form and every change it posts is refused."""

from __future__ import annotations

from pathlib import Path

from core import accounts
from core.b2b import connections
from core.b2b.caller import cli_caller
from core.db import session_scope
from core.models import Connection
from tests.b2b.web_server import forms_of, text_of
from tests.console_server import ConsoleServer, console_server, main_of, own_csrf
from tests.derived.support import add_dir_endpoint

__all__ = ["console_server"]


def stored(connection_id: int) -> Connection:
    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        assert conn is not None
        session.expunge(conn)
        return conn


def test_an_admin_invites_toggles_the_view_and_revokes(console_server: ConsoleServer, tmp_path: Path) -> None:
    (tmp_path / "lake" / "in").mkdir(parents=True)
    add_dir_endpoint("lake", tmp_path / "lake")
    with session_scope() as session:
        accounts.add(session, "acme", email="admin@acme.example", password="acme-Boss-pass-2026")
    with console_server.browser("admin") as admin:
        empty = admin.get("/console/connections")
        assert empty.status_code == 200 and "No B2B connections yet" in text_of(empty)
        form = forms_of(empty)["/console/connections"]
        typed = {"email": "ops@acme.example", "name": "from-acme", "direction": "receive", "dest": "lake:in"}
        invited = admin.post("/console/connections", data={**form, **typed})
        assert invited.status_code == 200, text_of(invited)
        said = text_of(invited)
        assert "Invited for connection from-acme" in said and "1 pending" in said
        link = next(w for w in said.split() if "/connect/accept?token=" in w)
        assert link.startswith(console_server.url)
        assert "TRADELANE_SMTP_HOST is not set" in said  # no mail server: pass the link on yourself
        again = admin.get("/console/connections")
        assert link not in again.text  # shown once
        assert "pending — invited ops@acme.example" in text_of(again)
        assert '<span class="badge" id="pending-invitations">1</span>' in admin.get("/console").text
        assert '<span class="badge" id="nav-pending">1 pending</span>' in admin.get("/console/partners").text

        with session_scope() as session:
            conn = connections.accept_here(
                session,
                cli_caller(session, "acme"),
                link.split("token=", 1)[1],
                name="to-home",
                outbox="to-home",
            )
            conn_id = conn.id
        assert conn_id is not None and not stored(conn_id).allow_sender_view
        listing = admin.get("/console/connections")
        assert "pending" not in text_of(listing) and "active" in text_of(listing)  # the nav's badge too
        allow = f"/console/connections/{conn_id}/allow-view"
        allowed = admin.post(allow, data=forms_of(listing)[allow])
        assert allowed.status_code == 303 and stored(conn_id).allow_sender_view
        listing = admin.get(allowed.headers["location"])
        assert "Saved from-acme." in text_of(listing)
        deny = f"/console/connections/{conn_id}/deny-view"
        assert admin.post(deny, data=forms_of(listing)[deny]).status_code == 303
        assert not stored(conn_id).allow_sender_view

        with console_server.browser("operator") as operator:
            seen = operator.get("/console/connections")
            assert seen.status_code == 200 and "from-acme" in text_of(seen)
            assert "<form" not in main_of(seen.text)
            csrf = own_csrf(operator)
            for action in ("allow-view", "revoke"):
                assert (
                    operator.post(f"/console/connections/{conn_id}/{action}", data={"csrf": csrf}).status_code
                    == 403
                )
            refused = operator.post("/console/connections", data={"csrf": csrf, **typed, "name": "op-invite"})
            assert refused.status_code == 403
        assert str(stored(conn_id).state) == "active" and not stored(conn_id).allow_sender_view

        listing = admin.get("/console/connections")
        revoke = f"/console/connections/{conn_id}/revoke"
        assert admin.post(revoke, data=forms_of(listing)[revoke]).status_code == 303
        assert str(stored(conn_id).state) == "revoked"
        listing = admin.get("/console/connections")
        assert "revoked" in text_of(listing) and revoke not in listing.text
        # Revoking again: core's refusal, shown on the page.
        again = admin.post(revoke, data={"csrf": own_csrf(admin)})
        assert again.status_code == 409 and "already revoked" in text_of(again)
