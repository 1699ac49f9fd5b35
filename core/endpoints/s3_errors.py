"""Translating boto3/botocore failures into the endpoint error tree.

* `NoSuchBucket` is a `ConfigError`, not `NotFound`: the endpoint points at nothing, and a task
  must not mistake that for "this one file is gone".
* `HEAD` answers carry no error body, so after a bare 403/404 from `HeadObject` the endpoint asks
  again with a one-byte ranged `GetObject` to learn the real code (core/endpoints/s3.py)."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
    TlsError,
    TransientError,
)
from core.endpoints.errors import ErrorCodes
from core.endpoints.network import network_error

_AUTH = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
_CONFIG = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",  # usually the wrong region
        "IllegalLocationConstraintException",
        "RequestTimeTooSkewed",  # the local clock is wrong; retrying will not fix it
    }
)
_TRANSIENT = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
CODES = ErrorCodes(auth=_AUTH, config=_CONFIG, denied=_DENIED, not_found=_NOT_FOUND, transient=_TRANSIENT)


def client_error(exc: ClientError) -> tuple[str, int, str]:
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    code = str(error.get("Code") or status)
    return code, status, str(error.get("Message") or code)


def condition_failed(exc: Exception) -> bool:
    """S3's answer to a conditional write whose key exists (412), or that raced another one (409)."""
    if not isinstance(exc, ClientError):
        return False
    code, status, _ = client_error(exc)
    return status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")


def map_boto_error(exc: Exception, what: str, host: str = "") -> EndpointError:
    """Translate a boto3/botocore failure into the endpoint error tree."""
    if isinstance(exc, ClientError):
        code, status, message = client_error(exc)
        text = f"{what}: {code}: {message}"
        return CODES.error(code, status, text) or EndpointError(text)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return AuthError(f"{what}: no usable credentials ({type(exc).__name__})")
    if found := network_error(exc, what, host):
        return found  # DNS, TLS, refused, timed out: botocore wraps urllib3 wrapping the socket's
    if isinstance(exc, SSLError):
        # A certificate problem does not fix itself; say so rather than retrying.
        return TlsError(f"{what}: TLS error: {exc}")
    if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ParamValidationError):
        return ConfigError(f"{what}: {exc}")
    return EndpointError(f"{what}: {type(exc).__name__}: {exc}")
