"""From the inbox to an accepted invitation: the e-mail's link, opened and followed as a browser does.

aiosmtpd receives the invitation; its link is read out of the message and opened on the accept page
(a real uvicorn, the fake AcceptService); logging in and accepting then reach the service.
"""

from __future__ import annotations

import re

from api.web.service import EndpointChoice
from core.b2b.mail import Invitation, send_invitation
from core.config import Settings
from tests.b2b.test_invite_email import body_of, only_message
from tests.b2b.web_server import AcceptServer, accept_server, submit, text_of
from tests.endpoint_servers.mail import SmtpServer

__all__ = ["accept_server"]

PASSWORD = "a long enough password"


def test_the_emailed_link_opens_the_invitation_and_accepting_works(
    accept_server: AcceptServer, smtp_server: SmtpServer
) -> None:
    service = accept_server.service
    mailbox = smtp_server.root.create()
    token = service.invite("send", inviter="acme", name="to-globex", email=smtp_server.address(mailbox))
    view = service.invitations[token].view
    settings = Settings(
        public_url=accept_server.url,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.ssl_port,
        smtp_tls="ssl",
        smtp_user=smtp_server.user,
        smtp_password=smtp_server.password,
        smtp_cafile=smtp_server.cafile,
    )
    invitation = Invitation(
        view.inviter_account,
        view.inviter_email,
        view.connection_name,
        "send",
        view.invitee_email,
        view.expires_at,
        token,
    )
    assert send_invitation(invitation, settings).sent
    links = re.findall(
        r"https?://[^\s']+/connect/accept\?token=[\w-]+", body_of(only_message(smtp_server, mailbox))
    )
    assert links and set(links) == {f"{accept_server.url}/connect/accept?token={token}"}

    service.add_user("ann@globex.test", PASSWORD, "globex")
    service.endpoints_of["globex"] = [EndpointChoice("lake", "s3")]
    with accept_server.browser() as browser:
        page = browser.get(links[0])
        assert page.status_code == 200 and "acme wants to send files to you" in text_of(page)
        logged_in = submit(browser, page, "/connect/login", email="ann@globex.test", password=PASSWORD)
        done = submit(browser, logged_in, "/connect/accept", name="from-acme", dir="in/acme")
    assert "active: files from acme will land in lake:in/acme" in text_of(done)
    assert service.changes[-1] == ("accept", token, "globex", "from-acme")
