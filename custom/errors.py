"""Typed errors: every failure the library reports is an ``AmperityError``.

Messages name what went wrong and where. Text that came from a server (an error body, a detail of
a failed connection) is scrubbed of tokens and secrets by whoever raises the error, before it is
built into a message; see ``secrets.Redactor``.

Token-endpoint failures sit where users look for them: rejected credentials are also an
``AuthenticationError``, an unreachable or overloaded token endpoint also an ``APIConnectionError``
(and a timed-out one an ``APITimeoutError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

_BODY_LIMIT = 500
_TOKEN_DETAIL_LIMIT = 200

Scrub = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


def truncate(text: str, limit: int = _BODY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
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
    """The API answered with a non-2xx status.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

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
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.method = method
        self.url = url
        self.request_id = request_id
        self.trace_id = trace_id
        self.body = body
        self.response = response
        self.retry_after = retry_after
        ids = "".join(
            f", {name}={value}"
            for name, value in (("request_id", request_id), ("trace_id", trace_id))
            if value
        )
        super().__init__(f"{status_code} from {method} {url}: {message}{ids}")


class BadRequestError(APIStatusError):
    """400: a parameter is missing or invalid, or the api-version is unsupported."""


class AuthenticationError(APIStatusError):
    """401: the token is invalid or expired (after one refresh and one replay), or the token
    endpoint rejected the credentials (``TokenCredentialsRejectedError``)."""


class PermissionDeniedError(APIStatusError):
    """403: the API key's policies do not allow this operation."""


class NotFoundError(APIStatusError):
    """404."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the current state (e.g. a workflow already stopping)."""


class RateLimitError(APIStatusError):
    """429, still, after the client's retries; or at once when ``Retry-After`` asked for a longer
    pause than the client's ``max_retry_after`` (``retry_after`` holds the server's value)."""


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


def _body_text(response: httpx.Response) -> str:
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return ""
    # Whatever the declared charset, an error body is shown, never decoded strictly.
    return content.decode("utf-8", errors="replace")


def error_for_response(
    response: httpx.Response, *, scrub: Scrub = _unchanged, retry_after: float | None = None
) -> APIStatusError:
    """The typed error for a non-2xx response, from its documented JSON body or its raw text.

    ``scrub`` removes secrets from the server's text before it goes into the message and ``body``.
    """
    status = response.status_code
    cls = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    text = _body_text(response)
    message, request_id, trace_id = "", None, None
    try:
        body: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        request_id = str(body["request_id"]) if body.get("request_id") is not None else None
        trace_id = str(body["trace_id"]) if body.get("trace_id") is not None else None
    # Scrubbed before truncation: a cut must never leave half a secret behind.
    text = scrub(text)
    if message:
        message = truncate(scrub(message))
    else:
        shown = truncate(text.strip()) if text.strip() else "(empty body)"
        message = f"{response.reason_phrase or 'error'}; body: {shown}"
    request = response.request
    return cls(
        message,
        status_code=status,
        method=request.method,
        url=scrub(str(request.url)),
        request_id=scrub(request_id or response.headers.get("x-request-id") or "") or None,
        trace_id=scrub(trace_id) if trace_id else None,
        body=truncate(text),
        response=response,
        retry_after=retry_after,
    )


class APIConnectionError(AmperityError):
    """The request could not be completed: connection refused or dropped, DNS, TLS, protocol errors.

    ``kind`` says which: ``refused``, ``dns``, ``tls``, ``connect`` (another failure to connect),
    ``timeout``, ``dropped`` (the connection closed before the whole answer came), ``protocol``
    (the answer is not valid HTTP, or its body cannot be decoded as its headers declare).
    """

    def __init__(self, message: str, *, method: str, url: str, kind: str = "connect") -> None:
        self.method, self.url, self.kind = method, url, kind
        super().__init__(f"{method} {url}: {message}")


class APITimeoutError(APIConnectionError):
    """A time bound was hit. ``bound`` says which: ``timeout`` (one attempt's total time: connect,
    headers and the whole body) or ``deadline`` (the whole call: token, rate-limit waits, retries and
    the replay after a 401); ``seconds`` is the bound's value."""

    def __init__(
        self, message: str, *, method: str, url: str, bound: str = "timeout", seconds: float | None = None
    ) -> None:
        self.bound, self.seconds = bound, seconds
        super().__init__(message, method=method, url=url, kind="timeout")


class ResponseTooLargeError(AmperityError):
    """A response body grew past the client's ``max_response_bytes`` (counted after decompression)."""

    def __init__(self, *, method: str, url: str, limit: int) -> None:
        self.method, self.url, self.limit = method, url, limit
        super().__init__(
            f"{method} {url}: the response body exceeds max_response_bytes={limit:,} (counted after "
            "decompression); it was not read further"
        )


class RequestTooLargeError(AmperityError, ValueError):
    """A request body larger than the operation accepts: refused before it is sent (no 413 round trip)."""

    def __init__(self, *, operation: str, size: int, limit: int, method: str, url: str) -> None:
        self.operation, self.size, self.limit, self.method, self.url = operation, size, limit, method, url
        super().__init__(
            f"{operation}: the request body is {size} bytes; the operation accepts at most {limit} "
            f"(not sent: {method} {url})"
        )


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


def _token_endpoint_message(token_url: str, status_code: int | None, detail: str) -> str:
    status = f" answered {status_code}" if status_code is not None else " failed"
    return f"token endpoint {token_url}{status}: {truncate(detail, _TOKEN_DETAIL_LIMIT)}"


class TokenEndpointError(TokenError):
    """A token endpoint answered something the client cannot use (a malformed token response, an
    unexpected status). Its subclasses say more: rejected credentials, an unavailable endpoint."""

    def __init__(self, token_url: str, status_code: int | None, detail: str) -> None:
        self.token_url, self.status_code, self.detail = token_url, status_code, detail
        super().__init__(_token_endpoint_message(token_url, status_code, detail))


# Its status_code is always an int, as AuthenticationError promises; TokenEndpointError allows None
# for failures without an answer, which this class never describes.
class TokenCredentialsRejectedError(TokenEndpointError, AuthenticationError):  # type: ignore[misc]
    """The token endpoint refused the credentials (400, 401 or 403): a wrong client secret, a revoked
    API key. Also an ``AuthenticationError``, so ``except AuthenticationError`` catches it."""

    def __init__(self, token_url: str, status_code: int, detail: str) -> None:
        self.token_url, self.detail = token_url, detail
        message = _token_endpoint_message(token_url, status_code, detail)
        # Both bases describe the same failure; their attributes are set here, once.
        self.message, self.status_code, self.method, self.url = detail, status_code, "POST", token_url
        self.request_id = self.trace_id = None
        self.body, self.response, self.retry_after = "", None, None
        Exception.__init__(self, message)


class TokenEndpointUnavailableError(TokenEndpointError, APIConnectionError):
    """The token endpoint was unreachable or answered 429/5xx: worth another try after a pause.

    Also an ``APIConnectionError``. Raised (after its retries) by the built-in token sources; a
    custom token source may raise it too to have its failures retried with backoff.
    """

    def __init__(
        self,
        token_url: str,
        status_code: int | None,
        detail: str,
        *,
        retry_after: float | None = None,
        kind: str = "connect",
    ) -> None:
        self.token_url, self.status_code, self.detail = token_url, status_code, detail
        self.retry_after, self.method, self.url, self.kind = retry_after, "POST", token_url, kind
        Exception.__init__(self, _token_endpoint_message(token_url, status_code, detail))


class TokenEndpointTimeoutError(TokenEndpointUnavailableError, APITimeoutError):
    """A token request hit a time bound (see ``APITimeoutError.bound``)."""

    def __init__(
        self, token_url: str, detail: str, *, bound: str = "timeout", seconds: float | None = None
    ) -> None:
        self.bound, self.seconds = bound, seconds
        super().__init__(token_url, None, detail, kind="timeout")


class TokenExpiredError(TokenError):
    """A fixed token has expired; a new one is needed (no request is sent with it)."""


class RateLimiterUnavailableError(AmperityError):
    """The shared rate budget's store (Redis) did not answer in time. The URL shown carries no password."""

    def __init__(self, url: str, detail: str) -> None:
        self.url, self.detail = url, detail
        super().__init__(f"rate limit store {url} unavailable: {detail}")


class RateLimiterFallbackWarning(RuntimeWarning):
    """The shared rate budget is unreachable; this process limits itself locally until it returns."""


class IncompleteListWarning(UserWarning):
    """A list that answers one page, with no cursor that can be followed, holds fewer items than its
    ``total`` says (the Real-time API's segment members): the rest cannot be fetched."""

    def __init__(self, operation: str, shown: int, total: int) -> None:
        self.operation, self.shown, self.total = operation, shown, total
        super().__init__(
            f"{operation} answered {shown} of {total} items; it takes no cursor, so the other "
            f"{total - shown} cannot be fetched"
        )


class AmperityDeprecationWarning(DeprecationWarning):
    """An operation answered with Deprecation/Sunset headers: it will stop working."""

    def __init__(self, operation: str, deprecation: str | None, sunset: str | None) -> None:
        self.operation, self.deprecation, self.sunset = operation, deprecation, sunset
        dates = ", ".join(
            f"{name} {value}"
            for name, value in (("deprecated from", deprecation), ("sunset", sunset))
            if value
        )
        super().__init__(
            f"{operation} is deprecated by Amperity ({dates}); plan the move to a newer api_version"
        )
