"""One retry policy for side-effect steps: backoff with jitter, never for auth or validation errors."""

from __future__ import annotations

import random
from typing import Any

from prefect.tasks import exponential_backoff

from core.delivery import ChecksumMismatch
from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
    InvalidPath,
    NotFound,
    PermissionDenied,
)
from core.validators import ValidationError

# Errors that fail the same way every time: retrying only delays the operator's fix.
PERMANENT = (
    AuthError,
    PermissionDenied,
    ConfigError,
    InvalidPath,
    NotFound,
    ChecksumMismatch,
    ValidationError,
    LookupError,
)
# Each delay is scaled by a random factor in [1 - JITTER, 1 + JITTER] so retries of many runs spread out.
JITTER = 0.5


def is_retryable(error: object) -> bool:
    """Transient and unclassified endpoint errors are retried; bugs and permanent refusals are not."""
    if isinstance(error, PERMANENT):
        return False
    return isinstance(error, (EndpointError, OSError, TimeoutError))


def retry_delays(retries: int, base_delay: float) -> list[float]:
    """The waits before each retry: base, 2×base, 4×base… each with ±50% jitter."""
    return [base_delay * 2**n * random.uniform(1 - JITTER, 1 + JITTER) for n in range(retries)]


def retry_condition(_task: Any, _task_run: Any, state: Any) -> bool:
    return is_retryable(state.data)


def retry_options(retries: int, base_delay: float) -> dict[str, Any]:
    """Prefect task options for the same policy, for steps that are one task run per try."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=base_delay)(retries) if retries else 0,
        "retry_jitter_factor": JITTER if retries else None,
        "retry_condition_fn": retry_condition,
    }
