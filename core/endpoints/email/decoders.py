"""Content-Transfer-Encodings decoded a window at a time, and decoded sizes told from encoded ones.

An attachment is fetched in windows that cut base64 quads and quoted-printable lines anywhere, so
each decoder keeps the unfinished tail of one window (a few bytes, or one line) for the next.
"""

from __future__ import annotations

import binascii

B64_LINE = 57  # raw bytes per 76-character base64 line
_B64_JUNK = bytes(
    b
    for b in range(256)
    if bytes([b]) not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)


class Decoder:
    """Identity: 7bit, 8bit, binary and anything unknown pass through."""

    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class Base64Decoder(Decoder):
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        chars = data.translate(None, _B64_JUNK)
        if self._carry:
            chars = self._carry + chars
        cut = len(chars) - len(chars) % 4
        self._carry = chars[cut:]
        return binascii.a2b_base64(memoryview(chars)[:cut]) if cut else b""

    def flush(self) -> bytes:
        rest, self._carry = self._carry.rstrip(b"="), b""
        if not rest:
            return b""
        try:
            return binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))
        except binascii.Error:
            return b""


class QuotedPrintableDecoder(Decoder):
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return binascii.a2b_qp(data[:cut]) if cut else b""

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        return binascii.a2b_qp(rest) if rest else b""


def decoder_for(encoding: str) -> Decoder:
    """A fresh decoder for a lower-case Content-Transfer-Encoding."""
    if encoding == "base64":
        return Base64Decoder()
    if encoding == "quoted-printable":
        return QuotedPrintableDecoder()
    return Decoder()


def base64_decoded_size(encoded_size: int, head: bytes, tail: bytes) -> int | None:
    """Exact decoded size of a base64 body from its size, first and last bytes; None if irregular.

    Mailers write base64 in lines of one length L (76 usually) ended by CRLF, the last line
    shorter. So the body is k full lines plus a last line of m characters, with P '=' at the end.
    """
    if encoded_size <= len(head):  # the whole body is in `head`
        alphabet = head.translate(None, _B64_JUNK)
        padding = len(alphabet) - len(alphabet.rstrip(b"="))
        return None if len(alphabet) % 4 else len(alphabet) // 4 * 3 - padding
    stripped = tail.rstrip(b" \t\r\n")
    body = encoded_size - (len(tail) - len(stripped))
    padding = len(stripped) - len(stripped.rstrip(b"="))
    newline = head.find(b"\n")
    if newline <= 0:
        return None
    ending = 2 if head[newline - 1 : newline] == b"\r" else 1
    width = newline - (ending - 1)
    if b"\n" not in stripped:  # the last line is longer than the probe: not regular lines
        return None
    last = len(stripped) - (stripped.rfind(b"\n") + 1)
    full = body - last
    if width <= 0 or full < 0 or full % (width + ending):
        return None
    chars = full // (width + ending) * width + last
    return None if chars % 4 else chars // 4 * 3 - padding


def estimated_size(encoding: str, encoded_size: int) -> int:
    """The decoded size when it cannot be told exactly (an upper bound for quoted-printable)."""
    if encoding == "base64":
        return encoded_size * 76 // 78 * 3 // 4
    return encoded_size


def base64_length(size: int) -> int:
    """Bytes of `size` raw bytes as CRLF-terminated 76-character base64 lines."""
    full, rest = divmod(size, B64_LINE)
    return full * 78 + ((rest + 2) // 3 * 4 + 2 if rest else 0)
