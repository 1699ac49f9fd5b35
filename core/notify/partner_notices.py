"""Notices to a partner about its own files: its upload was rejected (why, and how to send it
again), or files are waiting for it in its `download/` (which, and how to fetch them).

Sent to the partner's contact e-mails (`tradelane partner set P --contact-email a@b
--tell-rejected --tell-downloads`), never to the operator's channels. A partner's notice names only
what the partner already knows or must know: its files, when they came, the reason in plain words,
where to upload or fetch. No Prefect or console links, destinations or other partners (those
are the operator's), no secret (every text passes `scrub_known`), and every name from outside is
made one line (`one_line`), so a file name cannot add a mail header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlmodel import Session, col, func, select

from core import delivery
from core.config import Settings, get_settings
from core.models import DataFlow, Partner, Receipt, Transfer, TransferState
from core.models import Endpoint as EndpointRow
from core.notify.messages import SUBJECT_CHARS, one_line
from core.notify.notices import DIGEST_LISTED
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
    return _notice(partner, subject, body)


@dataclass(frozen=True)
class Download:
    """One file a data flow delivered into a partner's mailbox."""

    path: str  # in the partner's home: download/invoice.edi
    size: int
    at: datetime | None


def downloads(
    session: Session, transfer_id: int, since: datetime | None = None, until: datetime | None = None
) -> PartnerNotice | None:
    """The notice for the partner whose `download/` a delivered transfer put a file in, or None
    (not delivered, not into a mailbox, no contacts, not wanted). With a window [since, until]
    (a digest), every file delivered into that partner's mailbox in it, in one notice."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or transfer.state != TransferState.delivered:
        return None
    partner = recipient(session, transfer)
    if partner is None or partner.removed_at is not None:
        return None
    if not partner.tell_downloads or not partner.contact_emails:
        return None
    transfers, total = [transfer], 1
    if since is not None and until is not None:
        found, total = delivered_into(session, partner, since, until)
        if not any(t.id == transfer.id for t in found):  # its own file, whatever the clocks said
            found, total = [transfer, *found][:DIGEST_LISTED], total + 1
        transfers = found
    files = [_download(session, partner, t) for t in transfers]
    more = total - len(files)
    account = account_name(partner.account_id)
    if total == 1:
        subject = f"[{account}] {files[0].path} is waiting for you"
        head = "a file is waiting for you in your download/ folder:"
    else:
        subject = f"[{account}] {total} files are waiting for you in download/"
        head = f"{total} files are waiting for you in your download/ folder:"
    lines = [f"Hello {one_line(partner.name)},", "", head, ""]
    for file in files:
        when = f", delivered {file.at:%Y-%m-%d %H:%M:%S} UTC" if file.at else ""
        lines.append(f"* {one_line(file.path)} ({file.size} bytes{when})")
    if more:
        lines.append(f"* … and {more} more")
    lines += ["", "Files stay in download/ until they are fetched and deleted: nothing removes them.", ""]
    lines += fetch_hints(partner.name, get_settings())
    return _notice(partner, one_line(subject, SUBJECT_CHARS), "\n".join(lines) + "\n")


def recipient(session: Session, transfer: Transfer) -> Partner | None:
    """The partner whose mailbox a transfer's data flow delivers into, or None."""
    flow = session.get(DataFlow, transfer.data_flow_id)
    dest = session.get(EndpointRow, flow.dest_endpoint_id) if flow is not None else None
    partner_id = delivery.recipient_id(session, dest) if dest is not None else None
    return session.get(Partner, partner_id) if partner_id is not None else None


def delivered_into(
    session: Session, partner: Partner, since: datetime, until: datetime
) -> tuple[list[Transfer], int]:
    """Transfers delivered into `partner`'s mailbox (any `mailbox:NAME` destination of its account)
    that finished in [since, until], oldest first: the first DIGEST_LISTED, and how many in all."""
    from core.partners import mailbox_endpoints

    endpoint_ids = [row.id for row in mailbox_endpoints(session, partner)]
    if not endpoint_ids:
        return [], 0
    where = (
        Transfer.account_id == partner.account_id,
        col(DataFlow.dest_endpoint_id).in_(endpoint_ids),
        Transfer.state == TransferState.delivered,
        col(Transfer.finished_at) >= since,
        col(Transfer.finished_at) <= until,
    )
    joined = col(Transfer.data_flow_id) == DataFlow.id
    listed = session.exec(
        select(Transfer).join(DataFlow, joined).where(*where).order_by(col(Transfer.id)).limit(DIGEST_LISTED)
    )
    total = session.exec(select(func.count()).select_from(Transfer).join(DataFlow, joined).where(*where))
    return list(listed), total.one()


def _download(session: Session, partner: Partner, transfer: Transfer) -> Download:
    """Where the delivered file is in the partner's home, and its size (a derived file's, if one
    was carried: what the partner fetches)."""
    receipt = session.get(Receipt, transfer.receipt_id)
    carried = transfer.derived[-1] if transfer.derived else None
    name = str(carried["name"]) if carried else (receipt.name if receipt else "?")
    size = int(carried["size"]) if carried else (receipt.size if receipt else 0)
    prefix = f"mailbox://{partner.name}/"
    uri = transfer.destination_uri or ""
    path = uri.removeprefix(prefix) if uri.startswith(prefix) else f"download/{name}"
    return Download(path=path, size=size, at=transfer.finished_at)


def fetch_hints(login: str, settings: Settings) -> list[str]:
    """How a partner fetches from download/: with its own login, over each door of this instance
    (the host its partners reach, `TRADELANE_PUBLIC_URL`'s). No password: the partner has it."""
    base = settings.public_base_url
    host = urlsplit(base).hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    user = one_line(login)
    ftp = "FTPS" if settings.ftp_require_tls else "FTP or FTPS"
    ftp_tls = " (TLS required: AUTH TLS, then PROT P)" if settings.ftp_require_tls else ""
    return [
        f"Fetch them with your usual login, {user}, from the download/ folder:",
        f"* SFTP: sftp -P {settings.sftp_port} {user}@{host}, then: get download/NAME",
        f"* {ftp}: ftp://{user}@{host}:{settings.ftp_port}/download/{ftp_tls}",
        f"* the web portal: {base}/portal/download",
        f"* the REST API: {base}/api/folders (your home's download/ folder)",
    ]


def _notice(partner: Partner, subject: str, body: str) -> PartnerNotice:
    assert partner.contact_emails
    return PartnerNotice(
        recipients=partner.contact_emails.split(","),
        subject=str(scrub_known(subject)),
        body=str(scrub_known(body)),
    )
