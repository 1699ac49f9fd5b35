"""SSH channel windows: clients held to the window they were offered, and the window grown for SFTP."""

from __future__ import annotations

import logging
from collections.abc import Callable

import paramiko
from paramiko.common import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    cMSG_CHANNEL_WINDOW_ADJUST,
)

from mailboxes.sftp.fastpath import ChannelData, ChunkPipe

log = logging.getLogger(__name__)

# SSH channel: the window the client may fill before we ask for more, and the largest SSH packet
# it may send us. 255 KiB SFTP writes then travel in one packet; the window holds many of them.
WINDOW_SIZE = 16 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024 + 4096
# The window a session channel starts with, until it runs the sftp subsystem: what a channel that
# nobody reads can be made to hold.
OPEN_WINDOW = 64 * 1024


def _within_window(channel: paramiko.Channel, size: int) -> None:
    """Refuse channel data past the window we offered: paramiko would buffer it all.

    A well-behaved client never sends more than the window, and the unread bytes of a channel can
    never legitimately exceed it; more is a protocol violation, answered by disconnecting.
    """
    unread = len(channel.in_buffer) + len(channel.in_stderr_buffer)
    if unread + size > channel.in_window_size:
        try:
            peer = channel.getpeername()[0]
        except (OSError, IndexError):
            peer = "?"
        log.warning(
            "SFTP client %s sent past its %d-byte channel window; disconnecting", peer, channel.in_window_size
        )
        raise EOFError("client exceeded the channel window")


def _feed_data(channel: paramiko.Channel, m: paramiko.Message | ChannelData) -> None:
    data = m.get_binary()
    _within_window(channel, len(data))
    pipe = channel.in_buffer
    # An sftp channel's ChunkPipe keeps the data as it came (fastpath.py); paramiko's wants bytes.
    pipe.feed(data if isinstance(pipe, ChunkPipe) else bytes(data))


def _feed_extended_data(channel: paramiko.Channel, m: paramiko.Message) -> None:
    code = m.get_int()
    data = m.get_binary()
    _within_window(channel, len(data))
    again = paramiko.Message()
    again.add_int(code)
    again.add_string(data)
    again.rewind()
    channel._feed_extended(again)


def grow_window(channel: paramiko.Channel, size: int) -> None:
    """Offer the client a larger window on `channel` (an SSH window adjust for the difference)."""
    with channel.lock:
        extra = size - channel.in_window_size
        if extra <= 0 or channel.closed:
            return
        channel.in_window_size = size
        channel.in_window_threshold = size // 10
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
    m.add_int(channel.remote_chanid)
    m.add_int(extra)
    channel.transport._send_user_message(m)


class Transport(paramiko.Transport):  # type: ignore[misc]  # paramiko ships no type hints
    """A paramiko Transport that tells its connection when it ends, and holds clients to their window."""

    on_finish: Callable[[], None] | None = None
    _channel_handler_table = {  # noqa: RUF012 (paramiko's own class attribute, extended)
        **paramiko.Transport._channel_handler_table,
        MSG_CHANNEL_DATA: _feed_data,
        MSG_CHANNEL_EXTENDED_DATA: _feed_extended_data,
    }

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.on_finish is not None:
                try:
                    self.on_finish()
                except Exception:
                    log.exception("cleaning up an SFTP connection failed")
