from tests.derived.support import derived_home  # noqa: F401
from tests.pgp.support import ours, partner, pgp_home, stranger  # noqa: F401
