"""Fewer copies of every byte an SFTP session moves: paramiko's packet reader, writer and channel
pipe, tuned.

paramiko (5.1) copies each byte of an SSH packet it receives about nine times before our SFTP
loop sees it: the socket reads are joined by `bytes +=`, the length and MAC input are prefixed by
concatenation, the payload is sliced twice, `Message` copies the channel data out again, and the
channel's `BufferedPipe` copies it into an `array` and out of it. Sending costs as many: `Message`
copies the data in and out, the packet is built by concatenation, sliced for the cipher, joined to
its length, to its sequence number for the MAC and to the MAC. On the one thread that also
encrypts and MACs, those copies cost as much as the cipher.

Here, for the ciphers OpenSSH's client ends up with against us (AES-CTR with an encrypt-then-MAC
HMAC, or AES-GCM):
* a received packet is read into one buffer with `recv_into`, MAC'd in two `update`s, decrypted
  once, and its channel data handed on as a memoryview of the decrypted packet, which `ChunkPipe`
  keeps as it is until our loop copies it into its buffer;
* channel data sent (`send_all`) is encrypted straight from the caller's buffer into one reused
  output buffer, several SSH packets at a time, MAC'd there and written with one `send`.
Every other case (a MAC over the plaintext, a CBC cipher, compression, before the first key
exchange) takes paramiko's own code, and what the two paths check and count is the same: MAC,
sequence numbers, windows, rekeying.
"""

from __future__ import annotations

import collections
import errno
import hmac
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import paramiko
from cryptography.exceptions import InvalidTag
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout
from paramiko.common import MSG_CHANNEL_DATA, cMSG_CHANNEL_DATA
from paramiko.packet import Packetizer
from paramiko.ssh_exception import SSHException

LENGTH = struct.Struct(">I")
SEQ_AND_LENGTH = struct.Struct(">II")
# After a sent packet's length: padding length, SSH_MSG_CHANNEL_DATA, recipient channel, data length.
DATA_HEAD = struct.Struct(">BBII")
ZEROS = bytes(64)
# At most this much channel data goes out in one `send_all` batch (one write to the socket).
BATCH_BYTES = 512 * 1024
# No SSH packet we take is larger: channel data is at most MAX_PACKET_SIZE (channels.py) plus
# its headers, and everything else is small. A larger length is refused before it is allocated.
MAX_PACKET = 1024 * 1024


class ChannelData:
    """An SSH_MSG_CHANNEL_DATA payload as the transport's channel handlers read it: the channel
    id, then the data as a memoryview of the decrypted packet (not copied)."""

    def __init__(self, payload: memoryview, seqno: int) -> None:
        self._payload = payload
        self._at = 1  # past the message type
        self.seqno = seqno

    def get_int(self) -> int:
        (value,) = LENGTH.unpack_from(self._payload, self._at)
        self._at += 4
        return int(value)

    def get_binary(self) -> memoryview:
        length = self.get_int()
        data = self._payload[self._at : self._at + length]
        if len(data) != length:
            raise SSHException("truncated channel data")
        self._at += length
        return data


class ChannelDataOut:
    """Channel data to send, as one or more SSH_MSG_CHANNEL_DATA packets of the given sizes (each
    within the peer's maximum packet, their sum within its window): what `send_all` hands the
    transport instead of a `Message`, so the data is not copied into one."""

    def __init__(self, channel_id: int, data: memoryview, sizes: list[int]) -> None:
        self.channel_id = channel_id
        self.data = data
        self.sizes = sizes

    def messages(self) -> Iterator[paramiko.Message]:
        """The same packets as paramiko Messages, for paramiko's own writer."""
        at = 0
        for size in self.sizes:
            m = paramiko.Message()
            m.add_byte(cMSG_CHANNEL_DATA)
            m.add_int(self.channel_id)
            m.add_string(bytes(self.data[at : at + size]))
            at += size
            yield m


class FastPacketizer(Packetizer):  # type: ignore[misc]  # paramiko ships no type hints
    """paramiko's Packetizer with a copy-free read and a batched, copy-free write of channel data
    under AES-CTR with encrypt-then-MAC and under AES-GCM.

    Installed on a Transport's packetizer by swapping its class (`install`): paramiko builds the
    Packetizer itself, and the attributes below are its own (name-mangled) state.
    """

    # paramiko's own state, as its name mangling spells it.
    _Packetizer__sequence_number_in: int
    _Packetizer__received_bytes: int
    _Packetizer__received_packets: int
    _Packetizer__received_bytes_overflow: int
    _Packetizer__received_packets_overflow: int
    _Packetizer__need_rekey: bool
    _Packetizer__closed: bool
    _Packetizer__iv_in: bytes
    _Packetizer__sequence_number_out: int
    _Packetizer__sent_bytes: int
    _Packetizer__sent_packets: int
    _Packetizer__iv_out: bytes
    _out_buffer: bytearray | None = None

    # -- sending ---------------------------------------------------------------------------------

    def send_message(self, data: Any) -> None:
        if not isinstance(data, ChannelDataOut):
            super().send_message(data)
            return
        with self._Packetizer__write_lock:
            if not self._writes_fast():
                for message in data.messages():
                    super().send_message(message)
                return
            out = self._sealed(data)
            self.write_all(out)

    def _writes_fast(self) -> bool:
        etm, aead = self._Packetizer__etm_out, self._Packetizer__aead_out
        return bool(
            (aead or (etm and self._Packetizer__sdctr_out))  # CTR: every piece encrypts in full
            and self._Packetizer__block_engine_out is not None
            and self._Packetizer__compress_engine_out is None
            and not self._Packetizer__dump_packets
        )

    def _sealed(self, data: ChannelDataOut) -> memoryview:
        """`data`'s packets, encrypted and MAC'd one after another in the reused output buffer,
        with the sequence number and rekey counters moved on as paramiko's `send_message` does."""
        block = self._Packetizer__block_size_out
        aead = self._Packetizer__aead_out
        mac_size = self._Packetizer__mac_size_out
        engine = self._Packetizer__block_engine_out
        need = len(data.data) + len(data.sizes) * (4 + DATA_HEAD.size + block + 3 + mac_size)
        if self._out_buffer is None or len(self._out_buffer) < need:
            self._out_buffer = bytearray(max(need, 64 * 1024))
        out = memoryview(self._out_buffer)
        at = taken = 0
        for size in data.sizes:
            piece = data.data[taken : taken + size]
            taken += size
            # Padding as paramiko's `_build_packet` has it for EtM and AEAD: the length field is
            # outside the cipher, the rest fills whole blocks, with at least 4 bytes of padding.
            padding = 3 + block - ((9 + size + 4) % block)
            packet_length = 1 + 9 + size + padding
            LENGTH.pack_into(out, at, packet_length)
            head = DATA_HEAD.pack(padding, MSG_CHANNEL_DATA, data.channel_id, size)
            if aead:
                # GCM seals the whole packet in one call: gather it first (random padding, as
                # paramiko pads outside SDCTR), then encrypt it with its tag into the output.
                plain = bytearray(packet_length)
                plain[: DATA_HEAD.size] = head
                plain[DATA_HEAD.size : DATA_HEAD.size + size] = piece
                plain[DATA_HEAD.size + size :] = os.urandom(padding)
                iv = self._Packetizer__iv_out
                sealed = out[at + 4 : at + 4 + packet_length + mac_size]
                engine.encrypt_into(iv, plain, out[at : at + 4], sealed)
                del sealed
                self._Packetizer__iv_out = self._inc_iv_counter(iv)
            else:
                # CTR is a stream: the header, the data and the zero padding (as paramiko pads
                # under SDCTR) encrypt piece by piece, straight into the packet.
                body = out[at + 4 : at + 4 + packet_length]
                engine.update_into(head, body)
                engine.update_into(piece, body[DATA_HEAD.size :])
                engine.update_into(ZEROS[:padding], body[DATA_HEAD.size + size :])
                check = hmac.new(
                    self._Packetizer__mac_key_out,
                    LENGTH.pack(self._Packetizer__sequence_number_out),
                    self._Packetizer__mac_engine_out,
                )
                check.update(out[at : at + 4 + packet_length])
                end = at + 4 + packet_length
                out[end : end + mac_size] = check.digest()[:mac_size]
                del body
            at += 4 + packet_length + mac_size
            self._count_sent(4 + packet_length + mac_size)
        return out[:at]

    def _count_sent(self, raw_size: int) -> None:
        """The sequence number and rekey trigger, as paramiko's `send_message` keeps them."""
        next_seq = (self._Packetizer__sequence_number_out + 1) & 0xFFFFFFFF
        if next_seq == 0 and not self._initial_kex_done:
            raise SSHException("Sequence number rolled over during initial kex!")
        self._Packetizer__sequence_number_out = next_seq
        self._Packetizer__sent_bytes += raw_size
        self._Packetizer__sent_packets += 1
        too_much = (
            self._Packetizer__sent_packets >= self.REKEY_PACKETS
            or self._Packetizer__sent_bytes >= self.REKEY_BYTES
        )
        if too_much and not self._Packetizer__need_rekey:  # only ask once
            self._Packetizer__received_bytes_overflow = 0
            self._Packetizer__received_packets_overflow = 0
            self._trigger_rekey()

    # -- receiving -------------------------------------------------------------------------------

    def read_message(self) -> tuple[int, Any]:
        etm = self._Packetizer__etm_in
        aead = self._Packetizer__aead_in
        if (
            not (etm or aead)
            or self._Packetizer__block_engine_in is None
            or self._Packetizer__compress_engine_in is not None
            or self._Packetizer__dump_packets
            or self._Packetizer__remainder
        ):
            return super().read_message()  # type: ignore[no-any-return]
        block = self._Packetizer__block_size_in
        mac_size = self._Packetizer__mac_size_in
        header = self.read_all(block, check_rekey=True)
        (packet_size,) = LENGTH.unpack_from(header)
        if packet_size > MAX_PACKET or packet_size + 4 < block:
            raise SSHException(f"bad packet length {packet_size}")
        # The packet after its (unencrypted) length field, and for GCM the tag after it.
        packet = bytearray(packet_size + (mac_size if aead else 0))
        view = memoryview(packet)
        view[: block - 4] = header[4:]
        self._read_into(view[block - 4 :])
        if aead:
            iv = self._Packetizer__iv_in
            try:
                plain = self._Packetizer__block_engine_in.decrypt(iv, packet, header[:4])
            except InvalidTag:
                raise SSHException("Mismatched MAC (AES-GCM tag)") from None
            self._Packetizer__iv_in = self._inc_iv_counter(iv)
        else:
            mac = self.read_all(mac_size, check_rekey=False)
            seq = self._Packetizer__sequence_number_in
            check = hmac.HMAC(
                self._Packetizer__mac_key_in,
                SEQ_AND_LENGTH.pack(seq, packet_size),
                self._Packetizer__mac_engine_in,
            )
            check.update(packet)
            if not hmac.compare_digest(check.digest()[:mac_size], mac):
                raise SSHException("Mismatched MAC")
            plain = self._Packetizer__block_engine_in.update(packet)
        del view, packet
        if len(plain) != packet_size:  # a CBC cipher holds back a partial block: not a whole packet
            raise SSHException("Invalid packet blocking")
        padding = plain[0]
        if padding + 2 > packet_size:
            raise SSHException("bad packet padding")
        payload = memoryview(plain)[1 : packet_size - padding]
        seqno = self._Packetizer__sequence_number_in
        self._count_received(packet_size)
        kind = payload[0]
        if kind == MSG_CHANNEL_DATA:
            return kind, ChannelData(payload, seqno)
        msg = paramiko.Message(bytes(payload[1:]))
        msg.seqno = seqno
        return kind, msg

    def _read_into(self, view: memoryview) -> None:
        """Fill `view` from the socket, waiting as paramiko's `read_all` waits."""
        sock = self._Packetizer__socket
        while view:
            if self.handshake_timed_out():
                raise EOFError()
            try:
                got = sock.recv_into(view)
            except TimeoutError:  # the socket's short timeout: a chance to send a keepalive
                got = -1
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    if self._Packetizer__closed:
                        raise EOFError() from exc
                    raise
                got = -1
            if got < 0:
                if self._Packetizer__closed:
                    raise EOFError()
                self._check_keepalive()
                continue
            if got == 0:
                raise EOFError()
            view = view[got:]

    def _count_received(self, packet_size: int) -> None:
        """The sequence number and the rekey counters, as paramiko's `read_message` keeps them."""
        next_seq = (self._Packetizer__sequence_number_in + 1) & 0xFFFFFFFF
        if next_seq == 0 and not self._initial_kex_done:
            raise SSHException("Sequence number rolled over during initial kex!")
        self._Packetizer__sequence_number_in = next_seq
        raw_packet_size = packet_size + self._Packetizer__mac_size_in + 4
        self._Packetizer__received_bytes += raw_packet_size
        self._Packetizer__received_packets += 1
        if self._Packetizer__need_rekey:
            self._Packetizer__received_bytes_overflow += raw_packet_size
            self._Packetizer__received_packets_overflow += 1
            if (
                self._Packetizer__received_packets_overflow >= self.REKEY_PACKETS_OVERFLOW_MAX
                or self._Packetizer__received_bytes_overflow >= self.REKEY_BYTES_OVERFLOW_MAX
            ):
                raise SSHException("Remote transport is ignoring rekey requests")
        elif (
            self._Packetizer__received_packets >= self.REKEY_PACKETS
            or self._Packetizer__received_bytes >= self.REKEY_BYTES
        ):
            self._Packetizer__received_bytes_overflow = 0
            self._Packetizer__received_packets_overflow = 0
            self._trigger_rekey()


def install(transport: paramiko.Transport) -> None:
    """Read and write `transport`'s packets with FastPacketizer (before it starts)."""
    assert type(transport.packetizer) is Packetizer
    transport.packetizer.__class__ = FastPacketizer


def send_all(channel: paramiko.Channel, data: memoryview) -> None:
    """Send all of `data` on `channel`, waiting for window as `Channel.send` does; EOFError once
    the channel is closed or at its end. Each batch takes what the window allows (paramiko's own
    window accounting, one maximum packet at a time) up to BATCH_BYTES, and goes to the transport
    as one ChannelDataOut: one write to the socket for several SSH packets."""
    if not isinstance(channel.transport.packetizer, FastPacketizer):
        while data:
            sent = channel.send(data)
            if sent <= 0:
                raise EOFError("channel closed")
            data = data[sent:]
        return
    while data:
        sizes: list[int] = []
        taken = 0
        with channel.lock:
            if channel.closed:
                raise EOFError("channel closed")
            size = channel._wait_for_send_window(len(data))  # blocks while the window is shut
            while size:
                sizes.append(size)
                taken += size
                if taken == len(data) or taken >= BATCH_BYTES or channel.out_window_size == 0:
                    break
                size = channel._wait_for_send_window(len(data) - taken)
        if not taken:
            raise EOFError("channel closed")
        # Outside the channel's lock, as paramiko's Channel._send (a rekey could deadlock).
        channel.transport._send_user_message(ChannelDataOut(channel.remote_chanid, data[:taken], sizes))
        data = data[taken:]


class ChunkPipe(BufferedPipe):  # type: ignore[misc]  # paramiko ships no type hints
    """A channel's receive buffer that keeps the chunks it is fed (memoryviews of decrypted
    packets) as they are, and hands them out without copying; BufferedPipe copies each byte into
    an `array` and out again. Same locking, events, timeouts and end as BufferedPipe."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: collections.deque[memoryview | bytes] = collections.deque()
        self._size = 0

    def feed(self, data: memoryview | bytes) -> None:
        if not data:
            return
        with self._lock:
            if self._event is not None:
                self._event.set()
            self._chunks.append(data)
            self._size += len(data)
            self._cv.notify_all()

    def set_event(self, event: Any) -> None:
        with self._lock:
            self._event = event
            if self._closed or self._size > 0:
                event.set()
            else:
                event.clear()

    def read_ready(self) -> bool:
        with self._lock:
            return self._size > 0

    def read(self, nbytes: int, timeout: float | None = None) -> memoryview | bytes:
        """Up to `nbytes` (the first chunk, or its first `nbytes`); b"" once closed and empty."""
        with self._lock:
            while self._size == 0:
                if self._closed:
                    return b""
                if timeout == 0.0:
                    raise PipeTimeout()
                then = time.monotonic()
                self._cv.wait(timeout)
                if timeout is not None:
                    timeout -= time.monotonic() - then
                    if timeout <= 0.0 and self._size == 0:
                        raise PipeTimeout()
            first = self._chunks[0]
            if len(first) <= nbytes:
                self._chunks.popleft()
                out = first
            else:
                out, self._chunks[0] = first[:nbytes], first[nbytes:]
            self._size -= len(out)
            if self._size == 0 and self._event is not None and not self._closed:
                self._event.clear()
            return out

    def empty(self) -> bytes:
        with self._lock:
            out = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            if self._event is not None and not self._closed:
                self._event.clear()
            return out

    def __len__(self) -> int:
        with self._lock:
            return self._size


def use_chunk_pipe(channel: paramiko.Channel) -> None:
    """Give the channel a ChunkPipe as its receive buffer, with what it held. Only from the
    transport's thread (the one that feeds it), before anyone reads the channel: a reader already
    waiting on the old buffer would never be woken."""
    pipe = channel.in_buffer
    if isinstance(pipe, ChunkPipe):
        return
    replacement = ChunkPipe()
    with pipe._lock:
        held = pipe._buffer.tobytes()
        if held:
            replacement.feed(held)
        if pipe._closed:
            replacement.close()
        if pipe._event is not None:
            replacement.set_event(pipe._event)
        channel.in_buffer = replacement
