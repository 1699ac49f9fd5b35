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
import sys
from collections import OrderedDict
from collections.abc import Callable
from types import FrameType
from typing import Any

FRAMES = 40  # a socket of httpx or asyncio is born deep in libraries
INNERMOST = 4  # shown wherever they are; beyond them only frames outside the libraries
KEPT = 20_000  # the latest sockets' births; an unclosed socket is found by the next GC pass or so

Birth = tuple[tuple[str, int, str], ...]
_births: OrderedDict[int, Birth] = OrderedDict()


def _note_birth(sock: object) -> None:
    frames: list[tuple[str, int, str]] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < FRAMES:
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    # An object's id is unique among living objects: the latest birth at an id is the living one's.
    key = id(sock)
    _births[key] = tuple(frames)
    _births.move_to_end(key)
    while len(_births) > KEPT:
        _births.popitem(last=False)


def birth_of(sock: object) -> str | None:
    """Where `sock` was opened, innermost call first, or None if not noted."""
    frames = _births.get(id(sock))
    if frames is None:
        return None
    shown = [
        f"  {path}:{line} in {name}"
        for n, (path, line, name) in enumerate(frames)
        if n < INNERMOST or not _in_a_library(path)
    ]
    return "\n".join(shown)


def _in_a_library(path: str) -> bool:
    return "site-packages" in path or path.startswith((sys.prefix, sys.base_prefix, "<"))


def _naming(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    def with_birth(unraisable: Any) -> object:
        import socket

        if isinstance(unraisable.object, socket.socket) and (where := birth_of(unraisable.object)):
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
    import socket

    init = socket.socket.__init__
    if getattr(init, "notes_births", False):
        return

    def noting_birth(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        with contextlib.suppress(Exception):  # a note (threads racing on it, say) never fails a socket
            _note_birth(self)

    noting_birth.notes_births = True  # type: ignore[attr-defined]
    socket.socket.__init__ = noting_birth  # type: ignore[method-assign]


def name_births_in_unraisable_errors() -> None:
    """Wrap the unraisable hook in place now (pytest's, once its plugin has configured)."""
    sys.unraisablehook = _naming(sys.unraisablehook)
