"""The one retry policy (pure logic): what is tried again, and how the waits grow."""

from __future__ import annotations

import pytest

from core.delivery import ChecksumMismatch
from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    EndpointError,
    NameTaken,
    NameTakenMeanwhile,
    NotFound,
    PermissionDenied,
    TemporaryDnsError,
    TlsError,
    TransientError,
    Unreachable,
)
from core.endpoints.hostkeys import HostKeyMismatch
from core.validators import ValidationError
from tasks.retry import JITTER, is_retryable, retry_delays


@pytest.mark.parametrize(
    "error",
    [
        Unreachable("refused"),
        TransientError("503"),
        TemporaryDnsError("EAI_AGAIN"),
        NameTakenMeanwhile("another writer took the name"),
        EndpointError("?"),
        OSError(),
    ],
    ids=type,
)
def test_passing_and_unclassified_failures_are_retried(error: BaseException) -> None:
    assert is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        AuthError("535"),
        HostKeyMismatch("changed"),
        PermissionDenied("403"),
        ConfigError("no bucket"),
        NotFound("gone"),
        DnsError("no such host"),
        TlsError("certificate verify failed"),
        ChecksumMismatch("changed"),
        NameTaken("exists and on_conflict is fail"),
        ValidationError("json", "not JSON"),
        ValueError("a bug"),
    ],
    ids=type,
)
def test_permanent_failures_and_bugs_are_not_retried(error: BaseException) -> None:
    assert not is_retryable(error)


def test_waits_double_within_the_jitter() -> None:
    for _ in range(200):
        delays = retry_delays(4, 2.0)
        assert len(delays) == 4
        for n, delay in enumerate(delays):
            assert 2.0 * 2**n * (1 - JITTER) <= delay <= 2.0 * 2**n * (1 + JITTER)
    assert retry_delays(0, 2.0) == []
    assert len({tuple(retry_delays(3, 1.0)) for _ in range(20)}) > 1  # jittered, not fixed


def test_a_whole_task_is_retried_only_after_a_passing_failure() -> None:
    from prefect.states import Completed, Failed

    from core.endpoints.http import RedirectRefused
    from tasks.retry import passing_failure

    assert passing_failure(None, None, Failed(data=TransientError("503")))
    assert not passing_failure(None, None, Failed(data=RedirectRefused("302 to 127.0.0.1: refused")))
    assert not passing_failure(None, None, Failed(data=AuthError("wrong key")))
    assert passing_failure(None, None, Completed())
