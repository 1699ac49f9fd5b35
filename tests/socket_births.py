"""Where was the unclosed socket opened? Said in the error an unclosed socket raises.

A socket left open raises a ResourceWarning when the garbage collector finds it, which
`filterwarnings = error` turns into an error of whichever test then runs: often not the one that
left it, and tracemalloc (which would name it) is too slow to keep on for the whole suite. So every
socket's opening is noted (a few frames, no source lines read, by a wrapped `socket.socket.__init__`,
which SSL sockets and accepted ones pass through too), and the unraisable error of an unclosed one
says where it was opened.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

FRAMES = 40  # a socket of httpx or asyncio is born deep in libraries
INNERMOST = 4  # shown wherever they are; beyond them only frames outside the libraries
KEPT = 20_000  # a bound, should sockets stay open by the thousand: the oldest notes go first

Birth = tuple[tuple[CodeType, int], ...]
# The births of the sockets still open: a socket's note goes when it is closed or detached.
_births: OrderedDict[int, Birth] = OrderedDict()


def _note_birth(sock: object) -> None:
    frames: list[tuple[CodeType, int]] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < FRAMES:
        frames.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    # An object's id is unique among living objects: the latest birth at an id is the living one's.
    key = id(sock)
    _births[key] = tuple(frames)
    _births.move_to_end(key)
    while len(_births) > KEPT:
        _births.popitem(last=False)


def _forget(sock: object) -> None:
    _births.pop(id(sock), None)


def birth_of(sock: object) -> str | None:
    """Where `sock` was opened, innermost call first, or None if not noted."""
    frames = _births.get(id(sock))
    if frames is None:
        return None
    shown = [
        f"  {code.co_filename}:{line} in {code.co_name}"
        for n, (code, line) in enumerate(frames)
        if n < INNERMOST or not _in_a_library(code.co_filename)
    ]
    return "\n".join(shown)


def _in_a_library(path: str) -> bool:
    return "site-packages" in path or path.startswith((sys.prefix, sys.base_prefix, "<"))


def _naming(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    def with_birth(unraisable: Any) -> object:
        if isinstance(unraisable.object, socket.socket) and (where := birth_of(unraisable.object)):
            _forget(unraisable.object)  # finalized: its id may be another socket's next
            said = unraisable.err_msg or "Exception ignored in"
            unraisable = type(unraisable)(
                (
                    unraisable.exc_type,
                    unraisable.exc_value,
                    unraisable.exc_traceback,
                    f"{said} (a socket opened at, innermost first:\n{where}\n)",
                    unraisable.object,
                )
            )
        return hook(unraisable)

    return with_birth


def install() -> None:
    """Note every socket's birth from now on."""
    init, real_close, detach = socket.socket.__init__, socket.socket._real_close, socket.socket.detach
    if getattr(init, "notes_births", False):
        return

    # A note (threads racing on the table, say) never fails the socket it is about.
    def noting_birth(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        with contextlib.suppress(Exception):
            _note_birth(self)

    def forgetting_on_close(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(Exception):
            _forget(self)
        real_close(self, *args, **kwargs)

    def forgetting_on_detach(self: socket.socket) -> int:
        with contextlib.suppress(Exception):
            _forget(self)
        return detach(self)

    noting_birth.notes_births = True  # type: ignore[attr-defined]
    socket.socket.__init__ = noting_birth  # type: ignore[method-assign]
    socket.socket._real_close = forgetting_on_close  # type: ignore[method-assign]
    socket.socket.detach = forgetting_on_detach  # type: ignore[method-assign]


def name_births_in_unraisable_errors() -> None:
    """Wrap the unraisable hook in place now (pytest's, once its plugin has configured)."""
    sys.unraisablehook = _naming(sys.unraisablehook)
