"""tests/socket_births.py: the error of an unclosed socket says where the socket was opened."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from typing import Any

from tests import socket_births


def open_a_socket_here() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_a_sockets_birth_names_the_function_that_opened_it() -> None:
    with open_a_socket_here() as sock:
        where = socket_births.birth_of(sock)
    assert where is not None
    lines = where.splitlines()
    assert lines[0].endswith(" in open_a_socket_here"), where  # innermost first: the opener, not socket.py
    assert "test_socket_births.py" in lines[0]


def test_the_unraisable_error_of_an_unclosed_socket_says_where_it_was_opened() -> None:
    heard: list[Any] = []
    saved = sys.unraisablehook
    sock = open_a_socket_here()
    mine = id(sock)

    def ours_or_passed_on(unraisable: Any) -> None:  # another thread's, say: pytest's as always
        (heard.append if id(unraisable.object) == mine else saved)(unraisable)

    sys.unraisablehook = socket_births._naming(ours_or_passed_on)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)  # as the suite's `filterwarnings = error`
            del sock  # unclosed: its finalizer raises the warning, which goes to the hook
    finally:
        sys.unraisablehook = saved
    (named,) = heard
    assert named.exc_type is ResourceWarning
    assert "in open_a_socket_here" in named.err_msg.split("a socket opened at")[1], named.err_msg
    assert socket_births.birth_of(named.object) is None  # told once; its id may be the next one's

    other = type(named)((ValueError, ValueError("x"), None, "Exception ignored in", object()))
    socket_births._naming(heard.append)(other)
    assert heard[-1] is other  # not a socket: passed on as it was


def test_a_closed_or_detached_sockets_note_is_gone() -> None:
    closed, detached = open_a_socket_here(), open_a_socket_here()
    assert socket_births.birth_of(closed) and socket_births.birth_of(detached)
    closed.close()
    fd = detached.detach()
    try:
        assert socket_births.birth_of(closed) is None and socket_births.birth_of(detached) is None
    finally:
        os.close(fd)


def test_the_suite_notes_births_and_names_them_in_pytests_hook() -> None:
    assert getattr(socket.socket.__init__, "notes_births", False)
    assert sys.unraisablehook.__name__ == "with_birth"
