"""The older names Prefect still reads for the settings tradelane sets or reads itself.

Many Prefect settings have two names, the current one and an older alias (for example
`PREFECT_SERVER_DATABASE_TIMEOUT` and `PREFECT_API_DATABASE_TIMEOUT`), and when both are set the
current one wins. So a default tradelane set under the current name would silently replace the
value a user gave under the older one: a default is only set when none of the names is.

Written out rather than read from Prefect's settings model: importing Prefect freezes its settings
from the environment as it is then, before `up` has set its own (tests/roles/ checks this table
against the model of the Prefect installed).
"""

from __future__ import annotations

import os

from deployments.heartbeat import HEARTBEAT_OLDER_NAMES, HEARTBEAT_VARIABLE

OLDER_NAMES: dict[str, tuple[str, ...]] = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": ("PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS",),
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": ("PREFECT_API_SERVICES_SCHEDULER_MAX_RUNS",),
    "PREFECT_SERVER_DATABASE_TIMEOUT": ("PREFECT_API_DATABASE_TIMEOUT",),
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": ("PREFECT_SQLALCHEMY_POOL_SIZE",),
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": ("PREFECT_SQLALCHEMY_MAX_OVERFLOW",),
    HEARTBEAT_VARIABLE: HEARTBEAT_OLDER_NAMES,
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": (
        "PREFECT_API_SERVICES_EVENT_PERSISTER_BATCH_SIZE",
    ),
    "PREFECT_SERVER_DATABASE_CONNECTION_URL": ("PREFECT_API_DATABASE_CONNECTION_URL",),
}


def setting_names(variable: str) -> tuple[str, ...]:
    """The names Prefect reads for the setting `variable` names, that one first."""
    return (variable, *OLDER_NAMES.get(variable, ()))


def given(variable: str) -> tuple[str, str] | None:
    """The user's value for the setting `variable` names, under whichever of its names, and that name."""
    for name in setting_names(variable):
        if value := os.environ.get(name):
            return name, value
    return None
