"""One exception type for every failure, with a subclass per kind a caller acts on differently."""
from __future__ import annotations

from typing import Optional

import httpx


class FoodAPIError(Exception):
    """A call failed. status: the HTTP status (None when no answer came); code: the server's
    error_type ("overloaded", "invalid_image", ...); attempts: tries made; request_id: the
    X-Request-Id of the last answer, to find it in the server's log and history."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None,
                 attempts: int = 1, request_id: Optional[str] = None):
        super().__init__(message)
        self.status, self.code, self.attempts, self.request_id = status, code, attempts, request_id


class BadInput(FoodAPIError):
    """The request itself is wrong (400, 413, 415, 422): not an image, too large, a bad top_k...
    Retrying cannot help."""


class Unauthorized(FoodAPIError):
    """401 or 403: an admin route without the right token (or from a remote host without one)."""


class NotFound(FoodAPIError):
    """404: no such model, version, alias or route."""


class Conflict(FoodAPIError):
    """409 or 412: the version is not loaded, an alias points at it, the state changed meanwhile."""


class Overloaded(FoodAPIError):
    """429 or 503 until the last retry or the deadline: the server is full."""


class ServerError(FoodAPIError):
    """Any other 5xx (the model failed, the server's own deadline passed)."""


class Unreachable(FoodAPIError):
    """No answer at all: the connection was refused, reset or timed out on every try."""


class DeadlineExceeded(FoodAPIError):
    """The call's deadline passed before an answer (status: the last try's, if it had one)."""


class UnexpectedResponse(FoodAPIError):
    """A success status whose body is not what the route answers (a proxy's HTML page, say)."""


def error_for(response: httpx.Response, attempts: int) -> FoodAPIError:
    """The exception for an error answer, with the server's sentence and error_type when it sent
    its JSON error ({"error": ..., "error_type": ...})."""
    status = response.status_code
    try:
        body = response.json()
        message, code = body.get("error") or response.text[:200], body.get("error_type")
    except (ValueError, AttributeError):
        message, code = response.text[:200], None
    kind = {400: BadInput, 413: BadInput, 415: BadInput, 422: BadInput, 401: Unauthorized,
            403: Unauthorized, 404: NotFound, 409: Conflict, 412: Conflict, 429: Overloaded,
            503: Overloaded}.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else FoodAPIError
    return kind(f"{status}: {message}", status, code, attempts, response.headers.get("x-request-id"))
