"""API errors: every failure is answered as JSON `{"message": ...}` with its HTTP status."""

from __future__ import annotations

import logging
from typing import ClassVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import StatusError

log = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# A refusal given before the body is read: closing the connection stops the client sending it.
CLOSE = {"Connection": "close"}


class ApiError(HTTPException):
    """An HTTPException whose class fixes the status; the message is shown to the client."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=self.status, detail=message, headers=headers)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers=BEARER_CHALLENGE)


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message, headers={"Allow": allow})


class ContentTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429


class UnsupportedMediaType(ApiError):
    status = 415


class ServiceUnavailable(ApiError):
    status = 503


def _message(status: int, detail: object, request: Request) -> str:
    if status == 404 and detail == "Not Found":
        return f"not found: {request.url.path}"
    if status == 405 and detail == "Method Not Allowed":
        return f"method {request.method} not allowed on {request.url.path}"
    return detail if isinstance(detail, str) else str(detail)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"message": _message(exc.status_code, exc.detail, request)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:]) or ".".join(loc)
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return JSONResponse({"message": "invalid request: " + "; ".join(problems)}, status_code=400)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"message": "internal server error"}, status_code=500)


async def status_error(request: Request, exc: Exception) -> JSONResponse:
    """A core refusal that carries its status (core/errors.py): the same status and message."""
    assert isinstance(exc, StatusError)
    return JSONResponse({"message": exc.message}, status_code=exc.status)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into `{"message": ...}`."""
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StatusError, status_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
