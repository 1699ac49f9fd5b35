"""B2B connection tests share the fixtures of tests/b2b/helpers.py."""

from tests.b2b.helpers import b2b  # noqa: F401
