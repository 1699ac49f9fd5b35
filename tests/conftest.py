"""Shared pytest fixtures: real servers come from tests/servers.py."""

import contextlib
from collections.abc import Iterator

import pytest

from tests.b2b.helpers import *  # noqa: F403
from tests.b2b.peers_pair import *  # noqa: F403
from tests.endpoint_servers.azurite import *  # noqa: F403
from tests.endpoint_servers.ftpd import *  # noqa: F403
from tests.endpoint_servers.http_app import *  # noqa: F403
from tests.endpoint_servers.mail import *  # noqa: F403
from tests.endpoint_servers.sshd import *  # noqa: F403
from tests.servers import *  # noqa: F403
from tests.system import *  # noqa: F403


@pytest.fixture
def opened() -> Iterator[contextlib.ExitStack]:
    """Closes what a test opens (`opened.enter_context(endpoint)`) when the test ends, pass or fail.
    An endpoint left open keeps its pooled connections until the garbage collector finds them, and
    the ResourceWarning that then raises is an error, reported in whichever test is running."""
    with contextlib.ExitStack() as stack:
        yield stack
