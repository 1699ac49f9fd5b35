"""Notices to a partner about its own files: its upload was rejected, why, and how to send it again.

Sent to the partner's contact e-mails (`tradelane partner set P --contact-email a@b
--tell-rejected`), never to the operator's channels. A partner's notice names only what the
partner already knows or must know: its file, when it came, the reason in plain words and where
to upload the corrected file. No Prefect or console links, destinations or other partners (those
are the operator's), and every text passes `scrub_known`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from core.models import Partner, Receipt, Transfer, TransferState
from core.notify.messages import SUBJECT_CHARS, one_line
from core.redact import scrub_known
from core.tenancy import account_name


@dataclass(frozen=True)
class PartnerNotice:
    recipients: list[str]
    subject: str
    body: str


def rejected(session: Session, transfer_id: int) -> PartnerNotice | None:
    """The notice for a rejected transfer's partner, or None (not rejected, no contacts, not wanted)."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or transfer.state != TransferState.rejected:
        return None
    receipt = session.get(Receipt, transfer.receipt_id)
    if receipt is None or receipt.partner_id is None:
        return None
    partner = session.get(Partner, receipt.partner_id)
    if partner is None or not partner.tell_rejected or not partner.contact_emails:
        return None
    file = one_line(receipt.name)
    reason = one_line(transfer.error) or "its content was refused"
    subject = one_line(f"[{account_name(receipt.account_id)}] your file {file} was rejected", SUBJECT_CHARS)
    body = (
        f"Hello {one_line(partner.name)},\n\n"
        f"your file {file} ({receipt.size} bytes, received {receipt.received_at:%Y-%m-%d %H:%M:%S} UTC "
        f"over {receipt.protocol}) was rejected and will not be passed on.\n\n"
        f"Reason: {reason}\n\n"
        "What to do: correct the file and upload it again, as before, into your upload/ folder "
        "(REST, SFTP, FTP or the web portal); it is checked afresh.\n"
    )
    return PartnerNotice(
        recipients=partner.contact_emails.split(","),
        subject=str(scrub_known(subject)),
        body=str(scrub_known(body)),
    )
