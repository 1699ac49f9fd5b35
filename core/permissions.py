"""Who may read what tradelane writes: its home is private; folders an operator points it at are not.

Every entry point (`tradelane ...`, the runner) calls `make_private` first. The umask becomes 077, so
every file any tradelane process creates in the home — store, keys, logs, Prefect's database,
mailboxes, staging, archive — is 0600 and every folder 0700, whatever umask it was started with;
child processes (the Prefect server, the runner, flow runs) inherit it. The operator's own umask
is kept in TRADELANE_OPERATOR_UMASK for what is written outside the home: a `file` endpoint's
folder is the operator's, and its files get the permissions any program run there would give.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
OPERATOR_UMASK_ENV = "TRADELANE_OPERATOR_UMASK"


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise RuntimeError("/proc/self/status has no Umask line")


def make_private(home: Path) -> None:
    """Make what this process (and its children) create private, and an existing home private too."""
    previous = os.umask(PRIVATE_UMASK)
    # A child of an entry point inherits the private umask: the operator's is the first one seen.
    os.environ.setdefault(OPERATOR_UMASK_ENV, format(previous, "03o"))
    tighten(home)


def operator_umask() -> int:
    """The umask the operator started tradelane with."""
    raw = os.environ.get(OPERATOR_UMASK_ENV, "")
    try:
        return int(raw, 8) & 0o777
    except ValueError:
        return current_umask()


def shared_file_mode() -> int:
    """Mode for a new file outside the home: 0666 less the operator's umask."""
    return 0o666 & ~operator_umask()


def shared_dir_mode() -> int:
    """Mode for a new folder outside the home: 0777 less the operator's umask."""
    return 0o777 & ~operator_umask()


def tighten(home: Path) -> None:
    """Take group and other permissions off a home made before homes were private (once: then it is 0700).

    Symbolic links are left alone (their targets may be anywhere); what cannot be changed is logged.
    """
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except FileNotFoundError:
        return  # created later, under the private umask
    if not mode & 0o077:
        return
    for folder, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            _tighten_one(Path(folder, name))
    _tighten_one(home)
    log.warning("made %s private: it and everything in it were readable by other users", home)


def _tighten_one(path: Path) -> None:
    try:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            path.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
    except OSError as exc:
        log.warning("could not make %s private: %s", path, exc)
