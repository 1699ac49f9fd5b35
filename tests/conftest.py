"""Shared pytest fixtures: real servers come from tests/servers.py."""

from tests.b2b.helpers import *  # noqa: F403
from tests.endpoint_servers.azurite import *  # noqa: F403
from tests.endpoint_servers.ftpd import *  # noqa: F403
from tests.endpoint_servers.http_app import *  # noqa: F403
from tests.endpoint_servers.mail import *  # noqa: F403
from tests.endpoint_servers.sshd import *  # noqa: F403
from tests.servers import *  # noqa: F403
from tests.system import *  # noqa: F403
