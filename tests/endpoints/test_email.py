"""The email endpoint against real servers: aiosmtpd for SMTP pushes, Dovecot for IMAP pulls.

The SMTP server delivers into the Maildirs Dovecot serves (tests/endpoint_servers/mail.py), so a
file pushed by SMTP can be pulled back over IMAP. Email is not a filesystem, though: a pushed
"a/b.txt" comes back as "<UID>/b.txt", and a message cannot be replaced. So the contract suite
runs where its assertions fit (failed and aborted writes leave nothing, missing paths are
NotFound, invalid paths are refused, no secret in URIs or errors), and the rest of the contract's
ground - round trips, empty files, bounded memory, chunked reads, bytes-likes, stat, delete - is
covered below in email's own shape.
"""

from __future__ import annotations

import base64
import email
import hashlib
import io
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP, default
from typing import Any

import pytest

from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
    NotFound,
    PermissionDenied,
    TlsError,
    TransientError,
    Unreachable,
)
from core.endpoints.email import (
    TAKEN,
    EmailEndpoint,
    EmailWriteStream,
    attachments_of,
    base64_decoded_size,
    base64_length,
    mutf7,
    parse_fetch,
    safe_filename,
)
from core.endpoints.email.mime import compose, message_chunks
from core.endpoints.registry import open_endpoint
from tests.endpoint_servers.mail import DEFERRED_LOCAL_PART, ImapServer, MailUser, SmtpServer
from tests.endpoints.contract import MIB, EndpointContract, get, paths, payload_chunks, peak_memory, put
from tests.servers import free_port

SMTP_PASSWORD_UNUSED = "not-the-password-at-all"


# --- helpers ---------------------------------------------------------------------------------

_opened: list[EmailEndpoint] = []


def _track(endpoint: EmailEndpoint) -> EmailEndpoint:
    _opened.append(endpoint)
    return endpoint


@pytest.fixture(autouse=True)
def _close_endpoints() -> Iterator[None]:
    """Each endpoint a test made is closed after it, as the flows close theirs: an IMAP session left
    open is a socket only the garbage collector would close (a ResourceWarning)."""
    yield
    while _opened:
        _opened.pop().close()


def smtp_config(server: SmtpServer, to: Any, tls: str = "starttls", **extra: Any) -> dict[str, Any]:
    port = {"starttls": server.starttls_port, "ssl": server.ssl_port, "none": server.plain_port}[tls]
    return {
        "smtp_host": server.host,
        "smtp_port": port,
        "smtp_tls": tls,
        "from": "Tradelane <hub@tradelane.test>",
        "to": to,
        "cafile": str(server.cafile),
        "timeout": 10,
    } | extra


def sender(
    server: SmtpServer, to: Any, tls: str = "starttls", password: str | None = None, **extra: Any
) -> EmailEndpoint:
    secrets = {"user": server.user, "password": password or server.password}
    return _track(EmailEndpoint(smtp_config(server, to, tls, **extra), secrets))


def imap_config(server: ImapServer, tls: str = "ssl", **extra: Any) -> dict[str, Any]:
    port = server.ssl_port if tls == "ssl" else server.port
    return {
        "imap_host": server.host,
        "imap_port": port,
        "imap_tls": tls,
        "cafile": str(server.cafile),
        "timeout": 10,
    } | extra


def receiver(
    server: ImapServer, user: MailUser, tls: str = "ssl", password: str | None = None, **extra: Any
) -> EmailEndpoint:
    return _track(
        EmailEndpoint(
            imap_config(server, tls, **extra), {"user": user.name, "password": password or user.password}
        )
    )


def both(smtp: SmtpServer, imap: ImapServer, user: MailUser, **extra: Any) -> EmailEndpoint:
    """Sends to `user` over SMTP and pulls from their INBOX over IMAP."""
    config = smtp_config(smtp, user.address) | imap_config(imap) | extra
    secrets = {
        "smtp_user": smtp.user,
        "smtp_password": smtp.password,
        "imap_user": user.name,
        "imap_password": user.password,
    }
    return _track(EmailEndpoint(config, secrets))


def mail(*attachments: tuple[str, bytes] | MIMEArgs, text: str = "Files attached.") -> bytes:
    """A message as a partner's mailer would write it, with these attachments."""
    message = EmailMessage(policy=SMTP)
    message["From"] = "partner@example.test"
    message["To"] = "hub@tradelane.test"
    message["Subject"] = "files"
    message.set_content(text)
    for item in attachments:
        if isinstance(item, MIMEArgs):
            message.add_attachment(item.content, **item.kwargs)
        else:
            name, data = item
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


class MIMEArgs:
    def __init__(self, content: Any, **kwargs: Any) -> None:
        self.content, self.kwargs = content, kwargs


def attachment_of(message: EmailMessage) -> tuple[str | None, bytes]:
    [part] = list(message.iter_attachments())
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return part.get_filename(), data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def user(imap_server: ImapServer) -> MailUser:
    return imap_server.add_user()


@pytest.fixture
def recipient(smtp_server: SmtpServer) -> str:
    """A fresh Maildir that only the SMTP tests look at."""
    return smtp_server.root.create()


# --- the contract, where it fits -------------------------------------------------------------

PATHS_DIFFER = "email: a pushed 'a/b.txt' is pulled as '<UID>/b.txt'; covered by test_email's own tests"
NO_REPLACE = "email: a sent message cannot be replaced or hidden until commit"


def _not_applicable(reason: str) -> None:
    """Removes an inherited contract test that cannot hold for email (pytest collects only callables)."""
    return None


class TestEmailContract(EndpointContract):
    secret_values = ()  # set per test from the fixture's users

    @pytest.fixture
    def endpoint(self, smtp_server: SmtpServer, imap_server: ImapServer) -> Iterator[Endpoint]:
        user = imap_server.add_user()
        self.secret_values = (user.password, smtp_server.password)
        with both(smtp_server, imap_server, user) as endpoint:
            yield endpoint

    test_roundtrip_is_byte_exact = _not_applicable(PATHS_DIFFER)
    test_empty_file = _not_applicable(PATHS_DIFFER)
    test_large_file_streams_with_bounded_memory = _not_applicable(PATHS_DIFFER)
    test_read_returns_requested_chunks = _not_applicable(PATHS_DIFFER)
    test_write_accepts_any_bytes_like = _not_applicable(PATHS_DIFFER)
    test_nested_folders_are_created = _not_applicable(PATHS_DIFFER)
    test_list_shows_files_in_name_order = _not_applicable(PATHS_DIFFER)
    test_stat_reports_size_and_modified = _not_applicable(PATHS_DIFFER)
    test_delete = _not_applicable(PATHS_DIFFER)
    test_overwrite_replaces_atomically = _not_applicable(NO_REPLACE)
    test_failed_overwrite_keeps_old_file = _not_applicable(NO_REPLACE)
    test_write_in_progress_is_invisible = _not_applicable(PATHS_DIFFER)


# --- configuration ---------------------------------------------------------------------------


def test_registry_opens_email() -> None:
    endpoint = open_endpoint(
        "email", {"smtp_host": "mail.example", "from": "a@example.test", "to": "b@example.test"}
    )
    assert isinstance(endpoint, EmailEndpoint)


SMTP_OK = {"smtp_host": "mail.example", "from": "hub@example.test", "to": "ap@example.test"}
IMAP_OK = {"imap_host": "imap.example"}
CREDS = {"user": "hub", "password": "pw-pw-pw"}


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        ({}, CREDS),
        ({"smtp_host": "mail.example", "to": "ap@example.test"}, {}),
        ({"smtp_host": "mail.example", "from": "hub@example.test"}, {}),
        (SMTP_OK | {"to": "not an address"}, {}),
        (SMTP_OK | {"from": "a@example.test, b@example.test"}, {}),
        (SMTP_OK | {"smtp_tls": "tls13"}, {}),
        (SMTP_OK | {"smtp_port": "smtp"}, {}),
        (SMTP_OK | {"smtp_port": 70000}, {}),
        (SMTP_OK | {"subject": "{name.__class__}"}, {}),
        (SMTP_OK | {"subject": "{nope}"}, {}),
        (SMTP_OK | {"body": "{size:{sha256}}"}, {}),
        (SMTP_OK | {"subject": "{name"}, {}),
        (SMTP_OK | {"to": "ap@example.test\r\nBcc: all@example.test"}, {}),
        (SMTP_OK, {"user": "hub"}),
        (SMTP_OK | {"timeout": -1}, {}),
        (IMAP_OK, {}),
        (IMAP_OK, {"user": "hub"}),
        (IMAP_OK | {"imap_tls": "maybe"}, CREDS),
        (IMAP_OK | {"after_pull": "archive"}, CREDS),
        (IMAP_OK | {"after_pull": "move:"}, CREDS),
        (IMAP_OK | {"search": 'SUBJECT "é"'}, CREDS),
        (IMAP_OK | {"search": "ALL\r\nA1 DELETE INBOX"}, CREDS),
    ],
)
def test_bad_config(config: dict[str, Any], secrets: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        EmailEndpoint(config, secrets)


def test_settings_and_defaults() -> None:
    endpoint = EmailEndpoint(
        SMTP_OK | IMAP_OK | {"to": "AP <ap@example.test>, ar@example.test", "after_pull": "move:Done/2024"},
        CREDS | {"imap_user": "box", "imap_password": "box-pw"},
    )
    assert endpoint.smtp is not None and endpoint.imap is not None
    assert (endpoint.smtp.port, endpoint.smtp.tls) == (587, "starttls")
    assert endpoint.smtp.recipients == ("ap@example.test", "ar@example.test")
    assert (endpoint.smtp.user, endpoint.smtp.password) == ("hub", "pw-pw-pw")
    assert (endpoint.imap.port, endpoint.imap.tls, endpoint.imap.mailbox) == (993, "ssl", "INBOX")
    assert (endpoint.imap.user, endpoint.imap.password) == ("box", "box-pw")
    assert (endpoint.imap.after_pull, endpoint.imap.move_to, endpoint.imap.search) == (
        "move",
        "Done/2024",
        "UNSEEN",
    )
    assert "pw" not in repr(endpoint.smtp) and "box-pw" not in repr(endpoint.imap)
    ssl_only = EmailEndpoint(SMTP_OK | {"smtp_tls": "ssl", "to": ["a@example.test", "b@example.test"]})
    assert ssl_only.smtp is not None and ssl_only.smtp.port == 465
    assert ssl_only.smtp.recipients == ("a@example.test", "b@example.test")
    assert ssl_only.smtp.user is None


def test_uri_names_no_secret() -> None:
    push = EmailEndpoint(SMTP_OK, CREDS)
    assert push.uri("out/po.csv") == "email:smtp://mail.example:587/out/po.csv → ap@example.test"
    pull = EmailEndpoint(SMTP_OK | IMAP_OK, CREDS)
    assert pull.uri("") == "email:imap://hub@imap.example:993/INBOX"
    assert pull.uri("7/po.csv") == "email:imap://hub@imap.example:993/INBOX/7/po.csv"
    for uri in (push.uri("x"), pull.uri("x")):
        assert "pw-pw-pw" not in uri


def test_push_only_endpoint_cannot_pull() -> None:
    endpoint = EmailEndpoint(SMTP_OK, CREDS)
    with pytest.raises(ConfigError, match="only send"):
        list(endpoint.list())
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(ConfigError, match="imap_host"):
            getattr(endpoint, operation)("1/x.txt")


def test_pull_only_endpoint_cannot_push() -> None:
    with pytest.raises(ConfigError, match="only receive"):
        EmailEndpoint(IMAP_OK, CREDS).open_write("x.txt")


# --- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 56, 57, 58, 114, 190, 191, 192, 193, 1000, 4096, 100_003])
@pytest.mark.parametrize(
    ("width", "newline", "trailer"), [(76, b"\r\n", b""), (76, b"\r\n", b"\r\n"), (64, b"\n", b"\n\n")]
)
def test_base64_decoded_size(size: int, width: int, newline: bytes, trailer: bytes) -> None:
    flat = base64.b64encode(random.Random(size).randbytes(size))
    body = newline.join(flat[i : i + width] for i in range(0, len(flat), width)) + trailer
    head, tail = body[:256], body[-256:]
    if len(body) <= 512:
        head = body
    assert base64_decoded_size(len(body), head, tail) == size


def test_base64_decoded_size_gives_up_on_irregular_lines() -> None:
    flat = base64.b64encode(bytes(3000))
    body = flat[:100] + b"\r\n" + flat[100:3000] + b"\r\n" + flat[3000:] + b"\r\n"
    assert base64_decoded_size(len(body), body[:256], body[-256:]) is None


def test_base64_length_matches_encoder() -> None:
    for size in (0, 1, 56, 57, 58, 1000, 57 * 100):
        assert base64_length(size) == len(base64.encodebytes(bytes(size)).replace(b"\n", b"\r\n"))


def test_generated_message_is_seven_bit_crlf_with_short_lines() -> None:
    endpoint = EmailEndpoint(SMTP_OK | {"subject": "{name} " + "long " * 60})
    data = random.Random(3).randbytes(57 * 40 + 11)
    assert endpoint.smtp is not None
    head, tail, message_id = compose(
        endpoint.smtp, "naïve name.csv", "a/naïve name.csv", len(data), sha(data)
    )
    raw = b"".join(message_chunks(head, io.BytesIO(data), tail))
    assert len(raw) == len(head) + base64_length(len(data)) + len(tail)  # what MAIL FROM SIZE= says
    assert raw.isascii()  # no 8BITMIME or SMTPUTF8 needed
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == message_id
    assert attachment_of(message) == ("naïve name.csv", data)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.csv", "report.csv"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\invoice.pdf", "invoice.pdf"),
        ("tab\there\x00.txt", "tab_here_.txt"),
        ("  spaced.txt  ", "spaced.txt"),
        ("..", "attachment-2.pdf"),
        ("", "attachment-2.pdf"),
        (None, "attachment-2.pdf"),
        ("é" * 150 + ".xml", "é" * 98 + ".xml"),
    ],
)
def test_safe_filename(raw: str | None, expected: str) -> None:
    assert safe_filename(raw, "2", "application/pdf") == expected


def test_mutf7() -> None:
    assert mutf7("INBOX") == "INBOX"
    assert mutf7("Entwürfe") == "Entw&APw-rfe"
    assert mutf7("R&D") == "R&-D"
    assert mutf7("台北") == "&U,BTFw-"


def test_parse_fetch_with_literals_and_names() -> None:
    data = [
        (b"3 (UID 9 BODY[2]<0> {5}", b'a)b"c'),
        b" FLAGS (\\Seen $Forwarded))",
        b'4 (UID 10 BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL)'
        b'("application" "pdf" ("name" "x.pdf") NIL NIL "base64" 100 NIL'
        b' ("attachment" ("filename" "r\\"e.pdf")) NIL NIL)'
        b' "mixed" ("boundary" "b") NIL NIL NIL))',
    ]
    first, second = parse_fetch(data)
    assert first == {"UID": "9", "BODY[2]<0>": b'a)b"c', "FLAGS": ["\\Seen", "$Forwarded"]}
    [attachment] = attachments_of(second["BODYSTRUCTURE"])
    assert (attachment.part, attachment.name, attachment.encoding, attachment.encoded_size) == (
        "2",
        'r"e.pdf',
        "base64",
        100,
    )


# --- pushing over SMTP -----------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "ssl", "none"])
def test_push_sends_the_file_as_an_attachment(smtp_server: SmtpServer, recipient: str, tls: str) -> None:
    data = random.Random(1).randbytes(300 * 1024 + 7)
    endpoint = sender(smtp_server, smtp_server.address(recipient), tls)
    with endpoint.open_write("outbound/po 850.bin") as stream:
        assert isinstance(stream, EmailWriteStream)
        for offset in range(0, len(data), 100_000):
            stream.write(data[offset : offset + 100_000])
    [message] = smtp_server.root.messages(recipient)
    assert message["From"] == "Tradelane <hub@tradelane.test>"
    assert message["To"] == smtp_server.address(recipient)
    assert message["Subject"] == "po 850.bin"
    assert message["Return-Path"] == "<hub@tradelane.test>"
    assert message["X-Test-Authenticated-As"] == smtp_server.user  # AUTH happened
    assert message["Message-ID"] == endpoint.last_message_id == stream.message_id
    name, received = attachment_of(message)
    assert name == "po 850.bin"
    assert sha(received) == sha(data)
    body = message.get_body(("plain",))
    assert body is not None
    assert sha(data) in body.get_content()


def test_push_to_several_recipients_with_templates(smtp_server: SmtpServer) -> None:
    first, second = smtp_server.root.create(), smtp_server.root.create()
    endpoint = sender(
        smtp_server,
        f"AP <{smtp_server.address(first)}>, {smtp_server.address(second)}",
        subject="Rechnung {name} ({size} bytes)",
        body="Path {path}, digest {sha256}",
    )
    put(endpoint, "2024/Größe résumé.pdf", b"%PDF-1.7 tiny")
    for user in (first, second):
        [message] = smtp_server.root.messages(user)
        assert message["Subject"] == "Rechnung Größe résumé.pdf (13 bytes)"
        assert attachment_of(message) == ("Größe résumé.pdf", b"%PDF-1.7 tiny")
        body = message.get_body(("plain",))
        assert body is not None
        assert body.get_content().strip() == f"Path 2024/Größe résumé.pdf, digest {sha(b'%PDF-1.7 tiny')}"


@pytest.mark.parametrize("data", [b"", b".", b".\r\n.\r\n..\n.", bytes(range(256)) * 3])
def test_push_edge_contents(smtp_server: SmtpServer, recipient: str, data: bytes) -> None:
    # Body lines that start with dots, and a lone ".": SMTP's end-of-data unless dot-stuffed.
    endpoint = sender(smtp_server, smtp_server.address(recipient), body="{name}\n.\n..{size}\n.")
    put(endpoint, ".hidden", data)
    [message] = smtp_server.root.messages(recipient)
    assert attachment_of(message) == (".hidden", data)
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content() == f".hidden\n.\n..{len(data)}\n."


def test_write_accepts_any_bytes_like(smtp_server: SmtpServer, recipient: str) -> None:
    data = bytes(range(64))
    with sender(smtp_server, smtp_server.address(recipient)).open_write("views.bin") as stream:
        stream.write(bytearray(data[:16]))
        stream.write(memoryview(data[16:]).cast("I"))
    assert stream.bytes_written == 64
    [message] = smtp_server.root.messages(recipient)
    assert attachment_of(message) == ("views.bin", data)


@pytest.mark.parametrize("how", ["abort", "exception"])
def test_failed_write_sends_nothing(smtp_server: SmtpServer, recipient: str, how: str) -> None:
    stream = sender(smtp_server, smtp_server.address(recipient)).open_write("broken.bin")
    stream.write(b"partial" * 1000)
    if how == "abort":
        stream.abort()
    else:
        stream.__exit__(RuntimeError, RuntimeError("boom"), None)
    assert smtp_server.root.files(recipient) == []


def test_wrong_smtp_password_is_auth_error(smtp_server: SmtpServer, recipient: str) -> None:
    endpoint = sender(smtp_server, smtp_server.address(recipient), password=SMTP_PASSWORD_UNUSED)
    with pytest.raises(AuthError, match="535") as caught:
        put(endpoint, "x.txt", b"x")
    assert not caught.value.retryable
    assert SMTP_PASSWORD_UNUSED not in str(caught.value)
    with pytest.raises(AuthError):
        endpoint.check()
    assert smtp_server.root.files(recipient) == []


def test_no_credentials_is_auth_error(smtp_server: SmtpServer, recipient: str) -> None:
    endpoint = EmailEndpoint(smtp_config(smtp_server, smtp_server.address(recipient)))
    with pytest.raises(AuthError, match="530"):
        put(endpoint, "x.txt", b"x")


def test_refused_connection_is_transient(smtp_server: SmtpServer) -> None:
    config = smtp_config(smtp_server, "a@tradelane.test") | {"smtp_port": free_port()}
    endpoint = EmailEndpoint(config, {"user": smtp_server.user, "password": smtp_server.password})
    with pytest.raises(Unreachable, match="refused") as caught:
        put(endpoint, "x.txt", b"x")
    assert caught.value.retryable
    assert smtp_server.password not in str(caught.value)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_untrusted_certificate_is_refused(smtp_server: SmtpServer, recipient: str, tls: str) -> None:
    endpoint = sender(smtp_server, smtp_server.address(recipient), tls, cafile=None)
    with pytest.raises(TlsError, match="TLS certificate verify failed") as caught:
        put(endpoint, "x.txt", b"x")
    assert not isinstance(caught.value, TransientError)
    assert not caught.value.retryable
    assert smtp_server.root.files(recipient) == []


def test_verify_false_skips_certificate_checks(smtp_server: SmtpServer, recipient: str) -> None:
    put(sender(smtp_server, smtp_server.address(recipient), cafile=None, verify=False), "x.txt", b"x")
    assert len(smtp_server.root.files(recipient)) == 1


def test_wrong_tls_mode_for_the_port(smtp_server: SmtpServer, recipient: str) -> None:
    address = smtp_server.address(recipient)
    # STARTTLS asked of a server that offers none: a setting to fix, not a transient failure.
    no_starttls = sender(smtp_server, address, "none", smtp_tls="starttls")
    with pytest.raises(ConfigError, match="STARTTLS"):
        put(no_starttls, "x.txt", b"x")
    # Implicit TLS spoken to a port that greets in plain text.
    tls_to_plain = sender(smtp_server, address, "starttls", smtp_tls="ssl")
    with pytest.raises(TlsError, match="TLS error") as caught:
        put(tls_to_plain, "x.txt", b"x")
    assert not caught.value.retryable
    # No TLS on a port that offers AUTH only after STARTTLS.
    plain_to_starttls = sender(smtp_server, address, "starttls", smtp_tls="none")
    with pytest.raises(ConfigError, match="AUTH"):
        put(plain_to_starttls, "x.txt", b"x")


def test_refused_recipient_sends_to_nobody(smtp_server: SmtpServer, recipient: str) -> None:
    endpoint = sender(smtp_server, [smtp_server.address(recipient), "nobody-here@tradelane.test"])
    with pytest.raises(PermissionDenied, match=r"nobody-here@tradelane\.test: 550"):
        put(endpoint, "x.txt", b"x")
    assert smtp_server.root.files(recipient) == []


def test_deferred_recipient_is_transient(smtp_server: SmtpServer) -> None:
    endpoint = sender(smtp_server, f"{DEFERRED_LOCAL_PART}@tradelane.test")
    with pytest.raises(TransientError, match="451"):
        put(endpoint, "x.txt", b"x")


def test_unknown_host_names_dns() -> None:
    endpoint = EmailEndpoint(SMTP_OK | {"smtp_host": "no-such-host.invalid", "timeout": 5}, CREDS)
    with pytest.raises(DnsError, match="DNS") as caught:
        put(endpoint, "x.txt", b"x")
    assert "pw-pw-pw" not in str(caught.value)


def test_check_logs_in(smtp_server: SmtpServer, recipient: str) -> None:
    sender(smtp_server, smtp_server.address(recipient)).check()
    assert smtp_server.root.files(recipient) == []


# --- pulling over IMAP -----------------------------------------------------------------------


def test_pull_lists_reads_and_takes_each_message_once(imap_server: ImapServer, user: MailUser) -> None:
    big = random.Random(5).randbytes(5 * MIB + 3)
    csv = b"po,qty\r\n850,12\r\n"
    first = imap_server.append(user, mail(("report.csv", csv), ("data.bin", big)))
    second = imap_server.append(
        user,
        mail(
            MIMEArgs(b"x" * 10, maintype="application", subtype="pdf", filename="résumé.pdf"),
            ("a.txt", b"one"),
            ("a.txt", b"two"),
            MIMEArgs("line one\nligne deux é\n", subtype="csv", filename="qp.csv", cte="quoted-printable"),
            MIMEArgs(
                b"plain 7bit\r\ntext\r\n",
                maintype="text",
                subtype="plain",
                cte="7bit",
                disposition="attachment",
            ),
        ),
    )
    imap_server.append(user, mail(text="no attachments here"))
    seen_already = imap_server.append(user, mail(("old.txt", b"old")), flags="\\Seen")
    before = datetime.now(UTC)

    endpoint = receiver(imap_server, user)
    infos = {info.path: info for info in endpoint.list()}
    expected = {
        f"{first}/report.csv": csv,
        f"{first}/data.bin": big,
        f"{second}/résumé.pdf": b"x" * 10,
        f"{second}/a.txt": b"one",
        f"{second}/a-2.txt": b"two",
        f"{second}/qp.csv": "line one\r\nligne deux é\r\n".encode(),
        f"{second}/attachment-6.txt": b"plain 7bit\r\ntext\r\n",
    }
    assert list(infos) == sorted(expected)
    for path, data in expected.items():
        assert get(endpoint, path) == data, path
        if not path.endswith("qp.csv"):  # quoted-printable sizes are the encoded size
            assert infos[path].size == len(data), path
        assert endpoint.stat(path) == infos[path]
    info = infos[f"{first}/data.bin"]
    assert info.name == "data.bin"
    assert before - timedelta(minutes=1) <= info.modified <= before + timedelta(minutes=1)
    assert info.etag and info.etag.endswith(f".{first}.3")
    assert [i.path for i in endpoint.list(str(first))] == [f"{first}/data.bin", f"{first}/report.csv"]
    assert paths(endpoint, "no-such-folder") == []
    # Listing and reading peeked: nothing is marked seen yet.
    assert all("\\Seen" not in flags for uid, flags in imap_server.flags(user).items() if uid != seen_already)

    # Taking one attachment hides it; the message is marked seen once all of its are taken.
    endpoint.delete(f"{first}/report.csv")
    assert f"{TAKEN}.2" in imap_server.flags(user)[first]
    assert "\\Seen" not in imap_server.flags(user)[first]
    with receiver(imap_server, user) as fresh:  # the mark lives on the server, not in the object
        assert f"{first}/report.csv" not in paths(fresh)
        assert f"{first}/data.bin" in paths(fresh)
        fresh.delete(f"{first}/data.bin")
    assert {"\\Seen", TAKEN} <= imap_server.flags(user)[first]
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(NotFound):
            getattr(endpoint, operation)(f"{first}/data.bin")
    assert all(path.startswith(f"{second}/") for path in paths(endpoint))
    endpoint.close()
    endpoint.close()


def test_search_all_still_takes_each_message_once(imap_server: ImapServer, user: MailUser) -> None:
    uid = imap_server.append(user, mail(("a.txt", b"a")), flags="\\Seen")
    endpoint = receiver(imap_server, user, search="ALL")
    assert paths(endpoint) == [f"{uid}/a.txt"]
    endpoint.delete(f"{uid}/a.txt")
    assert paths(endpoint) == []


@pytest.mark.parametrize("server", ["MOVE", "COPY and EXPUNGE only"])
def test_after_pull_move(imap_server: ImapServer, user: MailUser, server: str) -> None:
    uid = imap_server.append(user, mail(("a.txt", b"a")))
    endpoint = receiver(imap_server, user, after_pull="move:Processed/Tradelane")
    assert paths(endpoint) == [f"{uid}/a.txt"]
    assert endpoint.receiver is not None
    conn = endpoint.receiver.connection
    assert conn is not None and {"MOVE", "UIDPLUS"} <= set(conn.capabilities)
    if server != "MOVE":  # as if the server lacked the MOVE and UIDPLUS extensions
        conn.capabilities = tuple(c for c in conn.capabilities if c not in ("MOVE", "UIDPLUS"))
    endpoint.delete(f"{uid}/a.txt")
    assert imap_server.flags(user) == {}
    [flags] = imap_server.flags(user, "Processed/Tradelane").values()
    assert {"\\Seen", TAKEN} <= flags
    assert paths(endpoint) == []
    # The folder exists now; the next move goes straight in.
    second = imap_server.append(user, mail(("b.txt", b"b")))
    endpoint.delete(f"{second}/b.txt")
    assert len(imap_server.flags(user, "Processed/Tradelane")) == 2


def test_after_pull_delete(imap_server: ImapServer, user: MailUser) -> None:
    keep = imap_server.append(user, mail(text="not ours"))
    uid = imap_server.append(user, mail(("a.txt", b"a"), ("b.txt", b"b")))
    endpoint = receiver(imap_server, user, after_pull="delete")
    endpoint.delete(f"{uid}/a.txt")
    assert set(imap_server.flags(user)) == {keep, uid}
    endpoint.delete(f"{uid}/b.txt")
    assert set(imap_server.flags(user)) == {keep}


def test_other_mailbox_and_starttls(imap_server: ImapServer, user: MailUser) -> None:
    with imap_server.client(user) as conn:
        assert conn.create(f'"{mutf7("Partner Files/Zürich")}"')[0] == "OK"
    endpoint = receiver(imap_server, user, "starttls", mailbox="Partner Files/Zürich")
    assert paths(endpoint) == []
    uid = imap_server.append(user, mail(("z.txt", b"z")), mailbox=f'"{mutf7("Partner Files/Zürich")}"')
    assert get(endpoint, f"{uid}/z.txt") == b"z"
    assert paths(endpoint) == [f"{uid}/z.txt"]


def test_read_returns_requested_chunks(imap_server: ImapServer, user: MailUser) -> None:
    uid = imap_server.append(user, mail(("chunks.txt", b"0123456789" * 10)))
    with receiver(imap_server, user).open_read(f"{uid}/chunks.txt") as stream:
        assert stream.read(10) == b"0123456789"
        assert len(stream.read(35)) == 35
        assert len(stream.read()) == 55
        assert stream.read(10) == b""


@pytest.mark.parametrize("path", ["x.txt", "a/b/c.txt", "abc/x.txt", "0/x.txt", "99999/x.txt", "UID/x.txt"])
def test_paths_that_name_no_attachment(imap_server: ImapServer, user: MailUser, path: str) -> None:
    imap_server.append(user, mail(("x.txt", b"x")))
    endpoint = receiver(imap_server, user)
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(NotFound):
            getattr(endpoint, operation)(path)


def test_wrong_name_in_a_real_message_is_not_found(imap_server: ImapServer, user: MailUser) -> None:
    uid = imap_server.append(user, mail(("x.txt", b"x")))
    with pytest.raises(NotFound):
        receiver(imap_server, user).stat(f"{uid}/y.txt")


def test_wrong_imap_password_is_auth_error(imap_server: ImapServer, user: MailUser) -> None:
    endpoint = receiver(imap_server, user, password="definitely-wrong")
    with pytest.raises(AuthError, match="AUTHENTICATIONFAILED") as caught:
        endpoint.check()
    assert not caught.value.retryable
    assert "definitely-wrong" not in str(caught.value)
    assert user.password not in str(caught.value)


def test_missing_mailbox_is_config_error(imap_server: ImapServer, user: MailUser) -> None:
    with pytest.raises(ConfigError, match="Nope"):
        receiver(imap_server, user, mailbox="Nope").check()


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_imap_untrusted_certificate_is_refused(imap_server: ImapServer, user: MailUser, tls: str) -> None:
    with pytest.raises(TlsError, match="TLS certificate verify failed") as caught:
        receiver(imap_server, user, tls, cafile=None).check()
    assert not caught.value.retryable


def test_imap_refused_connection_is_transient(imap_server: ImapServer, user: MailUser) -> None:
    with pytest.raises(Unreachable, match="refused"):
        receiver(imap_server, user, imap_port=free_port()).check()


def test_dropped_connection_is_reopened(imap_server: ImapServer, user: MailUser) -> None:
    uid = imap_server.append(user, mail(("a.txt", b"a")))
    endpoint = receiver(imap_server, user)
    assert paths(endpoint) == [f"{uid}/a.txt"]
    assert endpoint.receiver is not None and endpoint.receiver.connection is not None
    endpoint.receiver.connection.sock.close()  # as if the server had timed the session out
    assert get(endpoint, f"{uid}/a.txt") == b"a"


# --- SMTP into the Maildir, back out over IMAP -----------------------------------------------


def test_push_then_pull(smtp_server: SmtpServer, imap_server: ImapServer, user: MailUser) -> None:
    endpoint = both(smtp_server, imap_server, user)
    data = bytes(range(256)) * 41 + b"\r\n\x00end"
    put(endpoint, "out/hello.bin", data)
    put(endpoint, "out/empty.txt", b"")
    [hello_info, empty_info] = sorted(endpoint.list(), key=lambda info: info.name, reverse=True)
    assert hello_info.path.endswith("/hello.bin") and hello_info.size == len(data)
    assert empty_info.path.endswith("/empty.txt") and empty_info.size == 0
    assert get(endpoint, hello_info.path) == data
    assert get(endpoint, empty_info.path) == b""
    endpoint.delete(hello_info.path)
    assert paths(endpoint) == [empty_info.path]


def test_large_file_streams_with_bounded_memory(
    smtp_server: SmtpServer, imap_server: ImapServer, user: MailUser
) -> None:
    size, budget = 20 * MIB + 12345, 10 * MIB
    endpoint = both(smtp_server, imap_server, user)
    put(endpoint, "warm-up.txt", b"x")  # one-off costs (imports, TLS contexts) are not per-file memory
    [warm] = paths(endpoint)
    assert get(endpoint, warm) == b"x"
    endpoint.delete(warm)

    def write() -> str:
        digest = hashlib.sha256()
        with endpoint.open_write("big/payload.bin") as stream:
            for chunk in payload_chunks(size):
                digest.update(chunk)
                stream.write(chunk)
        return digest.hexdigest()

    sent, write_peak = peak_memory(write)
    [info] = endpoint.list()
    assert info.size == size

    def read() -> tuple[str, int]:
        digest, total = hashlib.sha256(), 0
        with endpoint.open_read(info.path) as stream:
            while chunk := stream.read(MIB):
                digest.update(chunk)
                total += len(chunk)
        return digest.hexdigest(), total

    (received, total), read_peak = peak_memory(read)
    assert (received, total) == (sent, size)
    print(f"email 20 MiB: write peak {write_peak / MIB:.1f} MiB, read peak {read_peak / MIB:.1f} MiB")
    assert write_peak < budget, f"write peak {write_peak / MIB:.1f} MiB"
    assert read_peak < budget, f"read peak {read_peak / MIB:.1f} MiB"
