"""One retry policy for side-effect steps: backoff with jitter, never for auth or validation errors.

Batch tasks apply it per file (a failed file is tried again alone), so it is plain Python rather
than Prefect's task-level `retries`, which would run the whole batch again."""

from __future__ import annotations

import random
from typing import Any

from prefect.client.schemas.objects import State

from core.delivery import ChecksumMismatch, TransferTaken
from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    EndpointError,
    InvalidPath,
    NameTaken,
    NotFound,
    PermissionDenied,
    TlsError,
    TransientError,
)
from core.validators import ValidationError

# Errors that fail the same way every time: retrying only delays the operator's fix.
PERMANENT = (
    AuthError,
    PermissionDenied,
    ConfigError,
    DnsError,
    TlsError,
    InvalidPath,
    NameTaken,
    NotFound,
    ChecksumMismatch,
    TransferTaken,
    ValidationError,
    LookupError,
)
# Each delay is scaled by a random factor in [1 - JITTER, 1 + JITTER] so retries of many runs spread out.
JITTER = 0.5


def is_retryable(error: object) -> bool:
    """Transient and unclassified endpoint errors are retried; bugs and permanent refusals are not."""
    if isinstance(error, TransientError):  # before PERMANENT: a temporary DNS failure is both
        return True
    if isinstance(error, PERMANENT):
        return False
    return isinstance(error, (EndpointError, OSError, TimeoutError))


def retry_delays(retries: int, base_delay: float) -> list[float]:
    """The waits before each retry: base, 2×base, 4×base… each with ±50% jitter."""
    return [base_delay * 2**n * random.uniform(1 - JITTER, 1 + JITTER) for n in range(retries)]


def passing_failure(_task: object, _task_run: object, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn` for a task that is retried whole: only a passing failure is
    worth another try (a refused login, a refused redirect or a bad setting fails the same way)."""
    error = state.data
    return not isinstance(error, BaseException) or is_retryable(error)
