"""Translating azure-core / azure-storage-blob failures into the endpoint error tree.

* `ContainerNotFound` is a `ConfigError`, not `NotFound`: the endpoint points at nothing.
* A bad key is `AuthenticationFailed` on Azure but `AuthorizationFailure` ("Server failed to
  authenticate the request") on Azurite; Azure also uses `AuthorizationFailure` for firewall
  and network rules. The message tells the two apart: authenticate → `AuthError`, else
  `PermissionDenied`.
* Messages name the blob and Azure's error code, never the account key, SAS or connection string."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from core.endpoints.base import (
    AuthError,
    EndpointError,
    PermissionDenied,
    TransientError,
)
from core.endpoints.errors import ErrorCodes
from core.endpoints.network import network_error

_AUTH = frozenset(
    {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation", "InvalidAccessKey"}
)
_DENIED = frozenset(
    {
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
        "KeyBasedAuthenticationNotPermitted",
        "BlobImmutableDueToPolicy",
        "LeaseIdMissing",
        "LeaseIdMismatchWithBlobOperation",
    }
)
_NOT_FOUND = frozenset({"BlobNotFound", "ResourceNotFound"})
_CONFIG = frozenset(
    {
        "ContainerNotFound",
        "ContainerBeingDeleted",
        "ContainerDisabled",
        "InvalidResourceName",
        "AccountNotFound",
    }
)
_TRANSIENT = frozenset(
    {"ServerBusy", "OperationTimedOut", "InternalError", "ConditionNotMet", "TooManyRequests"}
)
CODES = ErrorCodes(
    auth=_AUTH,
    config=_CONFIG,
    denied=_DENIED,
    not_found=_NOT_FOUND,
    transient=_TRANSIENT,
    transient_statuses=frozenset({408, 429}),
)


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    if not code and exc.response is not None:  # errors from the generated layer: the header has it
        code = getattr(exc.response, "headers", {}).get("x-ms-error-code")
    code = getattr(code, "value", code)  # the SDK sometimes hands back a StorageErrorCode enum
    return str(code or exc.status_code or "error")


def _short_message(exc: HttpResponseError) -> str:
    """Azure's one-line reason, without the request id, timestamp and raw XML body."""
    text = str(getattr(exc, "reason", None) or "")
    message = str(getattr(exc, "message", "") or "")
    first = message.splitlines()[0] if message else ""
    first = first.removeprefix("Operation returned an invalid status ").strip("'\" ")
    return first or text


def condition_failed(exc: AzureError) -> bool:
    """Azure's answer to a conditional write whose blob exists (409 BlobAlreadyExists, 412)."""
    if not isinstance(exc, HttpResponseError):
        return False
    return exc.status_code in (409, 412) or _error_code(exc) in ("BlobAlreadyExists", "ConditionNotMet")


def map_azure_error(exc: AzureError, what: str, host: str = "the server") -> EndpointError:
    """Translate an azure-core / azure-storage-blob failure into the endpoint error tree."""
    if isinstance(exc, HttpResponseError) and exc.status_code:
        code, status = _error_code(exc), int(exc.status_code)
        text = f"{what}: {code}: {_short_message(exc)}"
        if code == "AuthorizationFailure":
            authenticate = "authenticate" in text.lower()
            return AuthError(text) if authenticate else PermissionDenied(text)
        if found := CODES.error(code, status, text):
            return found
        if isinstance(exc, ClientAuthenticationError) or status == 401:
            return AuthError(text)
        if status == 403:
            return PermissionDenied(text)
        return EndpointError(text)
    if isinstance(exc, ClientAuthenticationError):
        # No response: the SDK could not even sign the request (an account key that is not base64).
        return AuthError(f"{what}: cannot sign the request: the account key is malformed")
    if found := network_error(exc, what, host):
        return found  # DNS, TLS, refused, timed out
    if isinstance(exc, ServiceRequestError | ServiceResponseError | HttpResponseError):
        # No HTTP status: the connection failed or broke mid-body (IncompleteRead and the like).
        return TransientError(f"{what}: {type(exc).__name__}: could not talk to {host}")
    return EndpointError(f"{what}: {type(exc).__name__}: {exc}")
