"""Our signed MDN written out directly, byte for byte the shape pyas2lib's `Mdn.build` makes.

pyas2lib builds the MDN as `email` objects and serializes them twice (the report part it signs,
then the whole MDN for the wire): with the objects themselves that was most of an MDN's cost, far
more than its RSA signature. Here the same bytes are written from a template: a multipart/signed
of the multipart/report (text part and disposition notification, 7bit) and its detached
signature (core.as2.signing, base64 in 76-character lines), with the same headers.

`build()` returns None for what it does not take on (no signing key, an unsigned MDN asked for,
a signature algorithm or digest core.as2.signing does not make): pyas2lib builds those as before.
"""

from __future__ import annotations

import base64
import random
import sys
from dataclasses import dataclass, field
from email import utils as email_utils
from typing import Any

AS2_VERSION = "1.2"
EDIINT_FEATURES = "CMS"
REPORTING_UA = "pyAS2 Open Source AS2 Software"  # what pyas2lib writes; partners have seen it for years
_WIDTH = len(repr(sys.maxsize - 1))


@dataclass
class Built:
    """An MDN ready for the wire (what receive.py records and answers with)."""

    message_id: str
    digest_alg: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    signed: bool = True


def _boundary(*texts: str) -> str:
    """A MIME boundary as the email package makes them, found in none of `texts`."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):0{_WIDTH}d}" + "=="
        if not any(boundary in text for text in texts):
            return boundary


def _quote_as2name(name: str | None) -> str | None:
    from pyas2lib.utils import quote_as2name

    return quote_as2name(name)  # type: ignore[no-any-return]


def build(
    message: Any, headers: dict[str, str], status: str, detail: str | None, user_agent: str
) -> Built | None:
    """The signed MDN for a parsed pyas2lib `message` (`headers`: its AS2 headers, lower-cased), or
    None to let pyas2lib build it."""
    from pyas2lib.constants import MDN_CONFIRM_TEXT, MDN_FAILED_TEXT

    from core.as2 import signing

    receiver, sender = message.receiver, message.sender
    options = headers.get("disposition-notification-options")
    if not options or receiver is None or not receiver.sign_key or sender is None:
        return None
    digest_alg = options.split(";")[-1].split(",")[-1].strip().replace("-", "")

    confirmation = MDN_CONFIRM_TEXT
    if receiver.mdn_confirm_text:
        confirmation = receiver.mdn_confirm_text
    if sender.mdn_confirm_text:
        confirmation = sender.mdn_confirm_text
    if status != "processed":
        confirmation = MDN_FAILED_TEXT
    as2_to = headers.get("as2-to")
    report = (
        f"Reporting-UA: {REPORTING_UA}\r\n"
        f"Original-Recipient: rfc822; {as2_to}\r\n"
        f"Final-Recipient: rfc822; {as2_to}\r\n"
        f"Original-Message-ID: <{message.message_id}>\r\n"
        f"Disposition: automatic-action/MDN-sent-automatically; {status}"
        + (f": {detail}" if detail else "")
        + "\r\n"
    )
    if message.mic:
        mic = message.mic.decode() if isinstance(message.mic, bytes) else str(message.mic)
        report += f"Received-content-MIC: {mic}, {message.digest_alg}\r\n"
    text = f"{confirmation}\r\n"

    inner = _boundary(text, report)
    signed_part = (
        f'Content-Type: multipart/report; report-type="disposition-notification"; boundary="{inner}"\r\n'
        "MIME-Version: 1.0\r\n\r\n"
        f"--{inner}\r\n"
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{text}\r\n--{inner}\r\n"
        "Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{report}\r\n--{inner}--\r\n"
    ).encode()
    signature = signing.sign_detached(signed_part, digest_alg, receiver.sign_key, sender.sign_alg)
    if signature is None:
        return None
    encoded = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    outer = _boundary(signed_part.decode("utf-8"))
    content = (
        f"--{outer}\r\n".encode()
        + signed_part
        + (
            f"\r\n--{outer}\r\n"
            'Content-Type: application/pkcs7-signature; name="smime.p7s"; smime-type="signed-data"\r\n'
            'Content-Disposition: attachment; filename="smime.p7s"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + encoded
        + f"\r\n--{outer}--\r\n".encode()
    )
    message_id = email_utils.make_msgid(domain=receiver.domain).lstrip("<").rstrip(">")
    mdn_headers = {
        "Content-Type": f'multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg="{digest_alg}"; boundary="{outer}"',
        "AS2-Version": AS2_VERSION,
        "ediint-features": EDIINT_FEATURES,
        "Message-ID": f"<{message_id}>",
        "AS2-From": _quote_as2name(as2_to),
        "AS2-To": _quote_as2name(headers.get("as2-from")),
        "Date": email_utils.formatdate(localtime=True),
        "user-agent": user_agent,
    }
    clean = {k: " ".join(str(v).split()) for k, v in mdn_headers.items()}
    return Built(message_id=message_id, digest_alg=digest_alg, headers=clean, content=content)
