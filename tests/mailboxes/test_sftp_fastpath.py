"""mailboxes/sftp/fastpath.py: paramiko's own packet writer sends to FastPacketizer, and
FastPacketizer sends to paramiko's own reader, over a real socket pair, with real keys, for each
cipher shape; what arrives is what was sent, and a changed byte, a wrong key or an absurd length
is refused. (The SFTP tests run OpenSSH's client over both directions.)"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from hashlib import sha256
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.common import MSG_CHANNEL_DATA, MSG_IGNORE
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException

from mailboxes.sftp.fastpath import MAX_PACKET, ChannelData, ChannelDataOut, ChunkPipe, FastPacketizer
from mailboxes.sftp.sockets import BufferedSocket

SHAPES = ["ctr-etm", "gcm", "ctr-mac"]  # the last: a MAC over the plaintext, paramiko's own path


class Flipping:
    """A socket that flips one byte of what it sends, at stream offset `at` (None: none)."""

    def __init__(self, sock: socket.socket, at: int | None) -> None:
        self.sock, self.at, self.sent = sock, at, 0

    def send(self, data: Any) -> int:
        data = bytearray(data)
        if self.at is not None and self.sent <= self.at < self.sent + len(data):
            data[self.at - self.sent] ^= 0x01
        self.sent += len(data)
        self.sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def keyed(shape: str, sender: Packetizer, receiver: Packetizer, wrong_key: bool = False) -> None:
    key, iv, mac_key = os.urandom(16), os.urandom(16), os.urandom(32)
    their_key = os.urandom(16) if wrong_key else key
    their_mac_key = os.urandom(32) if wrong_key else mac_key
    if shape == "gcm":
        nonce = os.urandom(12)
        sender.set_outbound_cipher(AESGCM(key), 16, None, 16, None, aead=True, iv_out=nonce)
        receiver.set_inbound_cipher(AESGCM(their_key), 16, None, 16, None, aead=True, iv_in=nonce)
        return
    etm = shape == "ctr-etm"
    encrypt = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    decrypt = Cipher(algorithms.AES(their_key), modes.CTR(iv)).decryptor()
    sender.set_outbound_cipher(encrypt, 16, sha256, 32, mac_key, sdctr=True, etm=etm)
    receiver.set_inbound_cipher(decrypt, 16, sha256, 32, their_mac_key, etm=etm)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    b.close()  # the reader first: a sender still writing then fails at once
    a.close()


def channel_data(data: bytes) -> paramiko.Message:
    m = paramiko.Message()
    m.add_byte(bytes((MSG_CHANNEL_DATA,)))
    m.add_int(7)
    m.add_string(data)
    return m


def send_all(
    sender: Packetizer, messages: list[paramiko.Message], then_close: socket.socket | None = None
) -> threading.Thread:
    def run() -> None:
        try:
            for m in messages:
                sender.send_message(m)
            if then_close is not None:  # a changed length may leave the reader waiting for more
                then_close.shutdown(socket.SHUT_WR)
        except OSError:  # a reader that refused a packet reads no more; its socket is closed
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def pair(
    sockets: tuple[socket.socket, socket.socket],
    shape: str,
    flip_at: int | None = None,
    wrong_key: bool = False,
) -> tuple[Packetizer, FastPacketizer]:
    a, b = sockets
    sender, receiver = Packetizer(Flipping(a, flip_at)), Packetizer(BufferedSocket(b))
    receiver.__class__ = FastPacketizer
    keyed(shape, sender, receiver, wrong_key)
    return sender, receiver


@pytest.mark.parametrize("shape", SHAPES)
def test_what_arrives_is_what_was_sent(sockets: tuple[socket.socket, socket.socket], shape: str) -> None:
    sender, receiver = pair(sockets, shape)
    payloads = [b"x", os.urandom(50 * 1024), os.urandom(256 * 1024), b""]
    ignore = paramiko.Message()
    ignore.add_byte(bytes((MSG_IGNORE,)))
    ignore.add_string(b"padding")
    thread = send_all(sender, [channel_data(p) for p in payloads] + [ignore])
    pipe = ChunkPipe()
    for n, payload in enumerate(payloads):
        kind, msg = receiver.read_message()
        assert kind == MSG_CHANNEL_DATA
        assert isinstance(msg, ChannelData) == (shape != "ctr-mac")  # the fast path, where it applies
        assert msg.seqno == n
        assert msg.get_int() == 7
        pipe.feed(msg.get_binary())
        assert bytes(pipe.empty()) == payload
    kind, msg = receiver.read_message()
    assert kind == MSG_IGNORE and msg.get_binary() == b"padding"
    thread.join(5)


@pytest.mark.parametrize("shape", ["ctr-etm", "gcm"])
@pytest.mark.parametrize("flip_at", [2, 40, 30_000])  # the length, the first block, the body
def test_a_changed_byte_is_refused(
    sockets: tuple[socket.socket, socket.socket], shape: str, flip_at: int
) -> None:
    sender, receiver = pair(sockets, shape, flip_at=flip_at)
    send_all(sender, [channel_data(os.urandom(64 * 1024))], then_close=sockets[0])
    with pytest.raises((SSHException, EOFError)):  # EOF: a longer length, waiting for more
        receiver.read_message()


@pytest.mark.parametrize("shape", ["ctr-etm", "gcm"])
def test_a_wrong_key_is_refused(sockets: tuple[socket.socket, socket.socket], shape: str) -> None:
    sender, receiver = pair(sockets, shape, wrong_key=True)
    send_all(sender, [channel_data(b"secret")])
    with pytest.raises(SSHException, match="Mismatched MAC"):
        receiver.read_message()


@pytest.mark.parametrize("shape", ["ctr-etm", "gcm"])
def test_an_absurd_length_is_refused_before_it_is_allocated(
    sockets: tuple[socket.socket, socket.socket], shape: str
) -> None:
    a, _ = sockets
    _, receiver = pair(sockets, shape)
    a.sendall((MAX_PACKET + 1).to_bytes(4, "big") + os.urandom(12))
    with pytest.raises(SSHException, match="bad packet length"):
        receiver.read_message()


def writing_pair(
    sockets: tuple[socket.socket, socket.socket], shape: str
) -> tuple[FastPacketizer, Packetizer]:
    a, b = sockets
    sender, receiver = Packetizer(a), Packetizer(b)
    sender.__class__ = FastPacketizer
    keyed(shape, sender, receiver)
    return sender, receiver


@pytest.mark.parametrize("shape", SHAPES)
def test_paramikos_reader_gets_what_the_fast_writer_sent(
    sockets: tuple[socket.socket, socket.socket], shape: str
) -> None:
    """Batches of several packets (the last one short, as a window cut it), between ordinary
    messages: paramiko's own reader checks every MAC and sequence number, and gets every byte."""
    sender, receiver = writing_pair(sockets, shape)
    data = os.urandom(300_000)
    sizes = [32_704] * 9 + [300_000 - 9 * 32_704]
    ignore = paramiko.Message()
    ignore.add_byte(bytes((MSG_IGNORE,)))
    ignore.add_string(b"between")

    def run() -> None:
        sender.send_message(ChannelDataOut(7, memoryview(data), sizes))
        sender.send_message(ignore)
        sender.send_message(ChannelDataOut(7, memoryview(b"tail"), [4]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    got = bytearray()
    for _ in sizes:
        kind, msg = receiver.read_message()
        assert kind == MSG_CHANNEL_DATA and msg.get_int() == 7
        got += msg.get_binary()
    assert got == data
    kind, msg = receiver.read_message()
    assert kind == MSG_IGNORE and msg.get_binary() == b"between"
    kind, msg = receiver.read_message()
    assert kind == MSG_CHANNEL_DATA and msg.get_int() == 7 and msg.get_binary() == b"tail"
    assert msg.seqno == len(sizes) + 1  # sequence numbers count every packet of a batch
    thread.join(5)


class Recording:
    def __init__(self) -> None:
        self.sent = bytearray()

    def send(self, data: Any) -> int:
        self.sent += data
        return len(data)


def test_the_fast_writer_puts_on_the_wire_exactly_what_paramikos_writer_does() -> None:
    """Under AES-CTR with encrypt-then-MAC the padding is zeros, so the bytes are determined: the
    same keys give the same bytes, packet lengths, padding and MACs included."""
    key, iv, mac_key = os.urandom(16), os.urandom(16), os.urandom(32)
    batches = [ChannelDataOut(9, memoryview(bytes(range(n))), [n]) for n in (1, 15, 16, 17, 100)]
    batches.append(ChannelDataOut(7, memoryview(os.urandom(70_000)), [32_704, 32_704, 4592]))
    wires = []
    for fast in (True, False):
        packetizer = Packetizer(Recording())
        if fast:
            packetizer.__class__ = FastPacketizer
        encrypt = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
        packetizer.set_outbound_cipher(encrypt, 16, sha256, 32, mac_key, sdctr=True, etm=True)
        for batch in batches:
            for message in [batch] if fast else batch.messages():
                packetizer.send_message(message)
        wires.append(bytes(packetizer._Packetizer__socket.sent))
    assert wires[0] == wires[1]


@pytest.mark.parametrize("shape", ["ctr-etm", "gcm"])
def test_the_fast_writer_asks_for_a_rekey_as_paramiko_does(
    sockets: tuple[socket.socket, socket.socket], shape: str
) -> None:
    sender, receiver = writing_pair(sockets, shape)
    sender.REKEY_PACKETS = 3
    sender.send_message(ChannelDataOut(7, memoryview(bytes(2000)), [1000, 1000]))
    assert not sender.need_rekey()
    sender.send_message(ChannelDataOut(7, memoryview(bytes(1000)), [1000]))
    assert sender.need_rekey()  # at the 3rd packet, counted across batches
    for _ in range(3):
        assert receiver.read_message()[0] == MSG_CHANNEL_DATA


def test_the_chunk_pipe_hands_out_what_it_was_fed_in_order() -> None:
    pipe = ChunkPipe()
    pipe.feed(memoryview(b"abcdef"))
    pipe.feed(b"gh")
    assert len(pipe) == 8 and pipe.read_ready()
    assert bytes(pipe.read(4)) == b"abcd"
    assert bytes(pipe.read(100)) == b"ef"
    assert bytes(pipe.read(100)) == b"gh"
    assert not pipe.read_ready()
    with pytest.raises(paramiko.buffered_pipe.PipeTimeout):
        pipe.read(10, timeout=0.05)
    event = threading.Event()
    pipe.set_event(event)  # what Channel.fileno() relies on: set while there is something to read
    assert not event.is_set()
    pipe.feed(b"i")
    assert event.is_set()
    pipe.set_event(event := threading.Event())
    assert event.is_set()
    assert bytes(pipe.read(10)) == b"i" and not event.is_set()
    threading.Timer(0.05, pipe.close).start()
    assert pipe.read(10, timeout=5) == b""  # a closed, empty pipe: the end of the channel
