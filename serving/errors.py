"""Errors that become HTTP answers, with TF Serving's status-code mapping.

TF Serving turns a ``tensorflow::Status`` into an HTTP status (its
``http_rest_api_handler``): INVALID_ARGUMENT 400, NOT_FOUND 404,
RESOURCE_EXHAUSTED 429, INTERNAL 500, UNIMPLEMENTED 501, UNAVAILABLE 503,
DEADLINE_EXCEEDED 504. Two transport errors TF Serving's HTTP layer has no
status for are added: 408 (the body did not arrive in time) and 413 (the body
is larger than ``--max-body-bytes``). Every one is answered as
``{"error": "<message>"}``.
"""

from __future__ import annotations


class ServingError(Exception):
    """An error answered as ``{"error": message}`` with HTTP ``status``."""

    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(ServingError):
    status = 400


class NotFound(ServingError):
    status = 404


class RequestTimeout(ServingError):
    status = 408


class PayloadTooLarge(ServingError):
    status = 413


class ResourceExhausted(ServingError):
    status = 429


class Internal(ServingError):
    status = 500


class Unimplemented(ServingError):
    status = 501


class Unavailable(ServingError):
    status = 503


class DeadlineExceeded(ServingError):
    status = 504
