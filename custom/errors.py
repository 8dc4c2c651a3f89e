"""Typed errors. Every message names what went wrong and where; none carries a token or secret."""

from __future__ import annotations

import json
from typing import Any

import httpx

_BODY_LIMIT = 500


def _truncate(text: str, limit: int = _BODY_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


class AmperityError(Exception):
    """Base of every error raised by amperity-async."""


class ConfigurationError(AmperityError, ValueError):
    """The client was set up or called with values it cannot work with."""


class UnstableOperationError(ConfigurationError):
    """An operation that exists only in the unstable API was called with a stable api_version."""

    def __init__(self, operation: str, api_version: str, required: str) -> None:
        self.operation, self.api_version, self.required = operation, api_version, required
        super().__init__(
            f"{operation} exists only in the {required!r} version of the API, but this client uses "
            f"api_version={api_version!r}; create the client with api_version={required!r} to call it"
        )


class APIStatusError(AmperityError):
    """The API answered with a non-2xx status."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        url: str,
        request_id: str | None = None,
        trace_id: str | None = None,
        body: str = "",
        response: httpx.Response | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.method = method
        self.url = url
        self.request_id = request_id
        self.trace_id = trace_id
        self.body = body
        self.response = response
        ids = "".join(
            f", {name}={value}" for name, value in (("request_id", request_id), ("trace_id", trace_id)) if value
        )
        super().__init__(f"{status_code} from {method} {url}: {message}{ids}")


class BadRequestError(APIStatusError):
    """400: a parameter is missing or invalid, or the api-version is unsupported."""


class AuthenticationError(APIStatusError):
    """401: the token is invalid or expired (after one refresh and one replay)."""


class PermissionDeniedError(APIStatusError):
    """403: the API key's policies do not allow this operation."""


class NotFoundError(APIStatusError):
    """404."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the current state (e.g. a workflow already stopping)."""


class RateLimitError(APIStatusError):
    """429, still, after the client's retries."""


class InternalServerError(APIStatusError):
    """5xx, still, after the client's retries (for requests that may be retried)."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_for_response(response: httpx.Response) -> APIStatusError:
    """The typed error for a non-2xx response, from its documented JSON body or its raw text."""
    status = response.status_code
    cls = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        text = ""
    message, request_id, trace_id = "", None, None
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        request_id = str(body["request_id"]) if body.get("request_id") is not None else None
        trace_id = str(body["trace_id"]) if body.get("trace_id") is not None else None
    if not message:
        shown = _truncate(text.strip()) if text.strip() else "(empty body)"
        message = f"{response.reason_phrase or 'error'}; body: {shown}"
    request = response.request
    return cls(
        message,
        status_code=status,
        method=request.method,
        url=str(request.url),
        request_id=request_id or response.headers.get("x-request-id"),
        trace_id=trace_id,
        body=_truncate(text),
        response=response,
    )


class APIConnectionError(AmperityError):
    """The request could not be completed: connection refused or dropped, DNS, TLS."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        self.method, self.url = method, url
        super().__init__(f"{method} {url}: {message}")


class APITimeoutError(APIConnectionError):
    """The request timed out (after the client's retries, where it may be retried)."""


class ResponseValidationError(AmperityError):
    """A 2xx response does not match the spec: not JSON, a missing required field, a wrong type."""

    def __init__(self, *, operation: str, field: str, detail: str, request_id: str | None = None) -> None:
        self.operation, self.field, self.detail, self.request_id = operation, field, detail, request_id
        where = f" (request_id={request_id})" if request_id else ""
        super().__init__(f"{operation}: response field {field!r} does not match the spec: {detail}{where}")


class PaginationError(AmperityError):
    """The server's cursors cannot be followed (e.g. a cursor that repeats)."""


class TokenError(AmperityError):
    """A token could not be obtained or used. Messages name the token URL, never the secret."""


class TokenEndpointError(TokenError):
    def __init__(self, token_url: str, status_code: int | None, detail: str) -> None:
        self.token_url, self.status_code = token_url, status_code
        status = f" answered {status_code}" if status_code is not None else " failed"
        super().__init__(f"token endpoint {token_url}{status}: {_truncate(detail, 200)}")


class TokenEndpointUnavailableError(TokenEndpointError):
    """The token endpoint was unreachable or answered 429/5xx: worth another try after a pause.

    Raised (after its retries) by the built-in token sources; a custom token source may raise it too
    to have its failures retried with backoff.
    """

    def __init__(
        self, token_url: str, status_code: int | None, detail: str, *, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(token_url, status_code, detail)


class TokenExpiredError(TokenError):
    """A fixed token has expired; a new one is needed (no request is sent with it)."""


class RateLimiterUnavailableError(AmperityError):
    """The shared rate budget's store (Redis) did not answer in time. The URL shown carries no password."""

    def __init__(self, url: str, detail: str) -> None:
        self.url, self.detail = url, detail
        super().__init__(f"rate limit store {url} unavailable: {detail}")


class RateLimiterFallbackWarning(RuntimeWarning):
    """The shared rate budget is unreachable; this process limits itself locally until it returns."""


class AmperityDeprecationWarning(DeprecationWarning):
    """An operation answered with Deprecation/Sunset headers: it will stop working."""

    def __init__(self, operation: str, deprecation: str | None, sunset: str | None) -> None:
        self.operation, self.deprecation, self.sunset = operation, deprecation, sunset
        dates = ", ".join(
            f"{name} {value}" for name, value in (("deprecated from", deprecation), ("sunset", sunset)) if value
        )
        super().__init__(f"{operation} is deprecated by Amperity ({dates}); plan the move to a newer api_version")
