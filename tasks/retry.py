"""One retry policy for side-effect tasks: backoff with jitter, never for auth or validation errors."""

from __future__ import annotations

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


def is_retryable(error: object) -> bool:
    """Transient and unclassified endpoint errors are retried; bugs and permanent refusals are not."""
    if isinstance(error, PERMANENT):
        return False
    return isinstance(error, (EndpointError, OSError, TimeoutError))


def retry_condition(_task: Any, _task_run: Any, state: Any) -> bool:
    return is_retryable(state.data)


def retry_options(retries: int, base_delay: float) -> dict[str, Any]:
    """Task options for a data flow's retry policy (retries, first delay doubled each time, ±50% jitter)."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=base_delay)(retries) if retries else 0,
        "retry_jitter_factor": 0.5 if retries else None,
        "retry_condition_fn": retry_condition,
    }
