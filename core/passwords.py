"""The partner password policy: long enough, not the partner's own name, not a commonly breached one.

Applied wherever a partner password is set: `partner add`, `partner set --password`, `apply`.
The list of common passwords ships in `core/data/common_passwords.txt` (its header says where it
comes from); the minimum length is `TRADELANE_PASSWORD_MIN_LENGTH` (default 12).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from core.config import get_settings


class WeakPassword(ValueError):
    """A password the policy refuses; the message says why (never the password)."""


@lru_cache
def common_passwords() -> frozenset[str]:
    text = files("core").joinpath("data/common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password(password: str, name: str, min_length: int | None = None) -> str:
    """`password` if the policy accepts it for partner `name`; WeakPassword saying why otherwise."""
    minimum = get_settings().password_min_length if min_length is None else min_length
    if len(password) < minimum:
        raise WeakPassword(
            f"the password is too short: at least {minimum} characters (TRADELANE_PASSWORD_MIN_LENGTH)"
        )
    if name and name.lower() in password.lower():
        raise WeakPassword(f"the password must not contain the partner's name ({name!r})")
    if password.lower() in common_passwords():
        raise WeakPassword("the password is on a list of commonly used (breached) passwords; choose another")
    return password
