"""A throwaway GnuPG home for one operation, filled from the keys in the database.

tradelane keeps every key in its database (core/pgp/keyring.py), so no operator manages a GnuPG home.
Each operation makes a private (0700) temporary home, imports the keys it needs, runs `gpg` through
python-gnupg, and on leaving stops that home's gpg-agent and deletes the directory: an unprotected
private key exists on disk only inside that directory, for the length of one operation.

Passphrase-protected private keys stay protected: their passphrases are handed to this home's agent
with `gpg-preset-passphrase`, so each key opens with its own passphrase and gpg never prompts
(`--pinentry-mode error`: a key that would need a prompt fails instead of hanging).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import gnupg

from core.pgp.errors import PgpUnavailableError

GPG_PROGRAM = "gpg"
INSTALL_HINT = "install GnuPG (Debian/Ubuntu: apt-get install gnupg)"
# Every operation: trust is our keyring's business, not GnuPG's web of trust; never fetch keys from
# the network; never prompt.
BASE_OPTIONS = (
    "--trust-model",
    "always",
    "--no-auto-key-retrieve",
    "--no-auto-key-locate",
    "--pinentry-mode",
    "error",
)
# python-gnupg logs every early stop of gpg (bad input) with a traceback; our errors say what happened.
logging.getLogger("gnupg").setLevel(logging.CRITICAL)
# gpg's pipes are read and written in chunks of this size: measured fastest for 1 GiB decrypts.
BUFFER_SIZE = 256 * 1024


@lru_cache
def gpg_binary() -> str:
    """The path of `gpg` (2.1 or newer), or PgpUnavailableError saying how to install it."""
    path = shutil.which(GPG_PROGRAM)
    if path is None:
        raise PgpUnavailableError(f"the gpg program is not installed: {INSTALL_HINT}")
    return path


@lru_cache
def gpgconf_binary() -> str:
    """GnuPG's `gpgconf` (it starts and stops a home's agent), found beside gpg first."""
    beside = Path(gpg_binary()).with_name("gpgconf")
    found = str(beside) if beside.exists() else shutil.which("gpgconf")
    if found is None:
        raise PgpUnavailableError(f"gpgconf (part of GnuPG) is not installed: {INSTALL_HINT}")
    return found


@lru_cache
def _preset_binary() -> str:
    out = subprocess.run(
        [gpgconf_binary(), "--list-dirs", "libexecdir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    preset = Path(out or "/usr/lib/gnupg") / "gpg-preset-passphrase"
    if not preset.exists():
        raise PgpUnavailableError(f"{preset} is missing (part of gpg-agent): {INSTALL_HINT}")
    return str(preset)


@lru_cache
def dies_with_caller() -> tuple[str, ...]:
    """The command prefix that makes a gpg die with the thread that started it (Linux's parent-death
    signal, set by util-linux's `setpriv`), or () where there is none.

    A gpg that writes its output file itself (`--output`) has no pipe to us to break when the run
    that started it is killed (SIGKILL, a machine's runner dying): without this it would decrypt on,
    unwatched, into a file nobody takes (a compression bomb to its end)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL")
    try:
        works = subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=30).returncode
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if works == 0 else ()


@dataclass(frozen=True)
class Status:
    """gpg's machine-readable status lines (`[GNUPG:] KEYWORD args…`, doc/DETAILS in GnuPG)."""

    lines: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, stderr: str) -> Status:
        found = []
        for line in stderr.splitlines():
            if line.startswith("[GNUPG:] "):
                keyword, *args = line[9:].split(" ")
                found.append((keyword, tuple(args)))
        return cls(tuple(found))

    def has(self, keyword: str) -> bool:
        return any(k == keyword for k, _ in self.lines)

    def args(self, keyword: str) -> list[tuple[str, ...]]:
        """The arguments of every line with this keyword, in order."""
        return [a for k, a in self.lines if k == keyword]

    def first(self, keyword: str) -> tuple[str, ...] | None:
        found = self.args(keyword)
        return found[0] if found else None


# gpg's chatter about the throwaway home itself, which says nothing about the file or the key.
_NOISE = re.compile(
    r"keybox '.*' created|trustdb|Total number processed|WARNING: unsafe|using .* as default|block_filter"
)


def error_lines(stderr: str) -> str:
    """gpg's own messages (not status lines), for an error that quotes what gpg said."""
    said = [
        line.removeprefix("gpg: ").strip()
        for line in stderr.splitlines()
        if line.startswith("gpg: ") and not _NOISE.search(line)
    ]
    return "; ".join(said[-3:])


class _Gpg(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg's GPG, remembering the gpg process it runs so that it can be stopped early."""

    process: subprocess.Popen[bytes] | None = None

    def make_args(self, args: Any, passphrase: bool) -> list[str]:
        # Every gpg dies with the (blocked) thread that runs it: none outlives a killed run.
        return [*dies_with_caller(), *super().make_args(args, passphrase)]

    def _open_subprocess(self, args: Any, passphrase: bool = False) -> Any:
        self.process = super()._open_subprocess(args, passphrase)
        return self.process


HOME_PREFIX = "tradelane-gpg-"
_ORPHAN = re.compile(re.escape(HOME_PREFIX) + r"(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True


@lru_cache(maxsize=1)  # once per process: the homes of processes that died before it started
def sweep_orphaned_homes() -> list[Path]:
    """Delete the throwaway homes of processes that died inside an operation: each may hold an
    unprotected private key. A home whose pid is alive (or reused) is left alone."""
    swept: list[Path] = []
    root = Path(tempfile.gettempdir())
    for entry in root.glob(HOME_PREFIX + "*"):
        match = _ORPHAN.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                swept.append(entry)
    return swept


class GnupgHome:
    """A private temporary GnuPG home; use as a context manager. `gpg` is its python-gnupg handle."""

    def __init__(self) -> None:
        binary = gpg_binary()
        self._gpgconf = gpgconf_binary()
        sweep_orphaned_homes()
        # The maker's pid in the name: a home whose process died (SIGKILL, a machine's OOM killer)
        # without deleting it is found and deleted by the next process that makes one.
        self.path = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-"))
        os.chmod(self.path, 0o700)
        # Passphrases of protected keys are given to the agent ahead of use (see the module doc).
        (self.path / "gpg-agent.conf").write_text("allow-preset-passphrase\n")
        self._agent_used = False
        try:
            self.gpg = _Gpg(gpgbinary=binary, gnupghome=str(self.path), options=list(BASE_OPTIONS))
        except (OSError, ValueError, RuntimeError) as exc:
            self.close()
            raise PgpUnavailableError(f"cannot run {binary}: {exc} ({INSTALL_HINT})") from exc
        if self.gpg.version is None or self.gpg.version < (2, 1):
            self.close()
            raise PgpUnavailableError(f"{binary} is older than GnuPG 2.1: {INSTALL_HINT}")
        self.gpg.buffer_size = BUFFER_SIZE
        self.gpg.encoding = "utf-8"

    def __enter__(self) -> GnupgHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop this home's agent (if one started) and delete the home with every key in it."""
        if self._agent_used:
            subprocess.run(
                [self._gpgconf, "--homedir", str(self.path), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
            self._agent_used = False
        shutil.rmtree(self.path, ignore_errors=True)

    # ---- filling it ---------------------------------------------------------------------------

    def import_public(self, armored: Sequence[str]) -> None:
        if armored:
            self.gpg.import_keys("\n".join(armored))

    def import_secret(self, data: bytes, passphrase: str | None, keygrips: Sequence[str]) -> Any:
        """Import a private key, and hand its passphrase (if any) to the agent for each keygrip."""
        self._agent_used = True
        result = self.gpg.import_keys(data)
        if passphrase:
            self.preset_passphrase(passphrase, keygrips)
        return result

    def preset_passphrase(self, passphrase: str, keygrips: Sequence[str]) -> None:
        self._agent_used = True
        env = {**os.environ, "GNUPGHOME": str(self.path)}
        subprocess.run(
            [self._gpgconf, "--homedir", str(self.path), "--launch", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        preset = _preset_binary()
        for grip in keygrips:
            subprocess.run(
                [preset, "--preset", grip],
                input=passphrase.encode(),
                env=env,
                capture_output=True,
                check=False,
            )

    def crypt(self, call: Callable[[gnupg.GPG], Any]) -> Any:
        """Run an encrypt/decrypt call of python-gnupg and return its result, also when gpg stopped
        reading its input early (bad data): python-gnupg then raises BrokenPipeError, and gpg's
        status lines, which say why it stopped, are in the result it had filled."""
        made: list[Any] = []
        factory = self.gpg.result_map["crypt"]

        def keep(gpg: gnupg.GPG) -> Any:
            made.append(factory(gpg))
            return made[-1]

        self.gpg.result_map = {**self.gpg.result_map, "crypt": keep}
        try:
            return call(self.gpg)
        except BrokenPipeError:
            if not made:
                raise
            return made[-1]
        finally:
            self.gpg.result_map = {**self.gpg.result_map, "crypt": factory}

    def stop(self) -> None:
        """Kill the gpg that is running (its output is not wanted any more); python-gnupg then
        reads the end of its output and returns."""
        process = self.gpg.process
        if process is not None and process.poll() is None:
            process.kill()

    def uses_agent(self) -> None:
        """Note that this home's agent may start (any private-key operation starts it)."""
        self._agent_used = True


@contextlib.contextmanager
def gnupg_home() -> Iterator[GnupgHome]:
    with GnupgHome() as home:
        yield home
