"""Shared pytest fixtures: real servers come from tests/servers.py."""

from tests.servers import *  # noqa: F403
from tests.system import *  # noqa: F403
