"""The hash a login of an unknown user is verified against (core/login.py) costs what a real one does."""

from argon2 import PasswordHasher

from core import login
from core.crypto import hash_password, verify_password


def test_the_dummy_hash_has_the_parameters_of_every_new_password_hash() -> None:
    # Same algorithm, memory, time and parallelism as a new hash: verifying takes as long.
    assert not PasswordHasher().check_needs_rehash(login._DUMMY_HASH)
    fresh = hash_password("anything")
    assert fresh.split("$")[1:4] == login._DUMMY_HASH.split("$")[1:4]


def test_the_dummy_hash_is_a_hash_that_verifies() -> None:
    # A hash verify_password can read (a malformed one would return at once: no time spent);
    # its own password is refused by the login all the same (no stored hash: wrong credentials).
    assert verify_password(login._DUMMY_HASH, "tradelane-no-such-user") is True
    assert verify_password(login._DUMMY_HASH, "password") is False
