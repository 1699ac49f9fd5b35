from tests.pgp.support import ours, partner, pgp_home, stranger  # noqa: F401
