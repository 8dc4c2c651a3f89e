"""Credentials and access tokens: where tokens come from, when they are renewed, how they are sent.

A ``TokenSource`` produces a ``Token``; a ``TokenRefresher`` keeps the current one and renews it before it
expires, making a single token request however many tasks need a token at the same moment; an
``AmperityAuth`` puts it on each request and, after a 401, renews it once and replays the request once.

Secret values (tokens, client secrets, issuer tokens) are held in ``Secret`` so that no ``repr``, log
record or exception message built by this module contains them.
"""

from __future__ import annotations

import abc
import base64
import binascii
import email.utils
import hmac
import ipaddress
import json
import logging
import math
import random
import re
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import anyio
import attrs
import httpx

from .errors import (
    ConfigurationError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
    TokenError,
    TokenExpiredError,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

_REDACTED = "**********"
# Retry-After and backoff delays above this are clamped: a token request is on the path of every call.
_MAX_BACKOFF_SECONDS = 30.0
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_DEFAULT_ENDPOINT_TIMEOUT = httpx.Timeout(30.0)


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` print asterisks.

    ``get_secret_value()`` returns the string; two secrets are equal when their strings are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _as_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


@attrs.frozen
class Token:
    """An access token and, when known, the wall-clock time (epoch seconds) at which it expires."""

    access_token: Secret = attrs.field(converter=_as_secret)
    expires_at: float | None = None

    def expires_in(self, now: float) -> float | None:
        """Seconds left at wall-clock time ``now`` (negative once expired); ``None`` when unknown."""
        return None if self.expires_at is None else self.expires_at - now


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can produce a fresh access token.

    Each call should return a token that is valid now; the refresher decides when to call. To have a
    failure retried with backoff, raise ``TokenEndpointUnavailableError``; any other exception reaches
    the caller at once.
    """

    async def fetch(self) -> Token: ...


@attrs.frozen
class TokenEndpointContext:
    """How the built-in token sources reach Amperity's token endpoints.

    ``transport`` is used as is and never closed here: its owner (normally the client) closes it.
    """

    base_url: str
    tenant: str
    transport: httpx.AsyncBaseTransport
    timeout: httpx.Timeout = _DEFAULT_ENDPOINT_TIMEOUT


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without verifying the signature.

    ``None`` when ``token`` is not a JWT or carries no numeric ``exp``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expiry, bool) or not isinstance(expiry, int | float) or not math.isfinite(expiry):
        return None
    return float(expiry)


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked_url(url: str, what: str) -> str:
    """``url`` if it is https (or http to a loopback host, for local servers); else a ConfigurationError."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"{what} {url!r} is not a valid URL: {exc}") from None
    if parsed.userinfo:
        raise ConfigurationError(
            f"{what} must not carry credentials in the URL; pass them to the token source"
        )
    if parsed.scheme == "https" or (parsed.scheme == "http" and _is_loopback(parsed.host)):
        return url
    raise ConfigurationError(
        f"{what} {url!r} must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)"
    )


def _scrub(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every secret value replaced by asterisks, in case a server echoes one back."""
    for secret in secrets:
        value = secret.get_secret_value()
        if value:
            text = text.replace(value, _REDACTED)
    return text


def _retry_after_seconds(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_detail(response: httpx.Response) -> str:
    """What a token endpoint said about a failure: OAuth ``error``/``error_description``, Amperity
    ``message``, or the raw body text."""
    text = response.text.strip()
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("error", "error_description", "message") if body.get(key)]
        if parts:
            return ": ".join(parts)
    return text or response.reason_phrase or "(empty body)"


def _expires_in_seconds(value: object, token_url: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise TokenEndpointError(
            token_url,
            None,
            f"token response field 'expires_in' must be a positive number of seconds, got {value!r}",
        )
    return float(value)


class _BuiltinTokenSource(abc.ABC):
    """The token sources shipped here: they may use the token endpoint context the client provides.

    Their wall clock is the one given to them, else the ``TokenRefresher``'s (so that one clock,
    injected once, governs the whole auth layer), else ``time.time``.
    """

    #: Whether ``fetch`` calls a token endpoint (and so needs a ``TokenEndpointContext``).
    needs_endpoint: bool = True

    def __init__(self, clock: Clock | None) -> None:
        self._clock = clock

    async def fetch(self, context: TokenEndpointContext | None = None) -> Token:
        return await self._fetch(context, self._clock or time.time)

    @abc.abstractmethod
    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        """A fresh token, reading the time from ``clock``."""

    def _require_context(self, context: TokenEndpointContext | None) -> TokenEndpointContext:
        if context is None:
            raise ConfigurationError(
                f"{type(self).__name__} requests tokens from Amperity's token endpoint and needs to know "
                "where it is: use it as AmperityClient(auth=...), or give "
                "TokenRefresher(..., context=TokenEndpointContext(base_url=..., tenant=..., transport=...))"
            )
        return context

    async def _post(
        self,
        context: TokenEndpointContext,
        token_url: str,
        secrets: Iterable[Secret],
        clock: Clock,
        **request: Any,
    ) -> httpx.Response:
        """One request to a token endpoint; the 2xx response, or a TokenEndpointError."""
        # A client of its own over the shared transport, so that token requests never pass through the
        # auth flow (or the rate limits and retries) of API calls. Not closed: closing a client closes
        # its transport, which belongs to the caller.
        client = httpx.AsyncClient(
            transport=context.transport, timeout=context.timeout, follow_redirects=False, trust_env=False
        )
        logger.debug("requesting an access token from %s", token_url)
        try:
            response = await client.post(token_url, **request)
        except _RETRYABLE_TRANSPORT_ERRORS as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            raise TokenEndpointUnavailableError(token_url, None, detail) from None
        except httpx.HTTPError as exc:
            raise TokenEndpointError(
                token_url, None, _scrub(f"{type(exc).__name__}: {exc}", secrets)
            ) from None
        if response.is_success:
            return response
        detail = _scrub(_error_detail(response), secrets)
        if response.status_code == 429 or response.status_code >= 500:
            raise TokenEndpointUnavailableError(
                token_url, response.status_code, detail, retry_after=_retry_after_seconds(response, clock())
            )
        raise TokenEndpointError(token_url, response.status_code, detail)


class StaticToken(_BuiltinTokenSource):
    """A fixed access token, e.g. one generated in the Amperity UI.

    When the token is a JWT its ``exp`` claim is read (the signature is not verified) and, once the token
    has expired, ``fetch`` raises ``TokenExpiredError`` instead of letting requests fail with 401s.
    Tokens that are not JWTs are used until the API rejects them.
    """

    needs_endpoint = False

    def __init__(self, token: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock)
        if not isinstance(token, str):
            raise ConfigurationError(f"StaticToken takes the token as a str, not {type(token).__name__}")
        value = token.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if not value:
            raise ConfigurationError("StaticToken was given an empty token")
        if any(char.isspace() for char in value):
            raise ConfigurationError(
                "StaticToken was given a token containing whitespace; pass the token alone"
            )
        self._token = Token(Secret(value), jwt_expiry(value))

    @property
    def expires_at(self) -> float | None:
        """The token's ``exp`` (epoch seconds), or ``None`` when it is not a JWT with an ``exp``."""
        return self._token.expires_at

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        expires_at = self._token.expires_at
        if expires_at is not None:
            now = clock()
            if now >= expires_at:
                raise TokenExpiredError(
                    f"the static access token expired at {_iso(expires_at)} ({now - expires_at:.0f} s ago); "
                    "create a new token, or use ClientCredentials or IssuerToken to have tokens renewed"
                )
        return self._token

    def __repr__(self) -> str:
        expiry = "unknown" if self._token.expires_at is None else _iso(self._token.expires_at)
        return f"StaticToken(token={self._token.access_token!r}, expires_at={expiry})"


class ClientCredentials(_BuiltinTokenSource):
    """OAuth 2.0 client credentials: ``POST {base_url}/v0/oauth2/token`` (or ``token_url``).

    Sends ``grant_type=client_credentials``, ``client_id`` and ``client_secret`` form-encoded with the
    ``X-Amperity-Tenant`` header and reads ``{"access_token", "expires_in", "token_type"}``. The expiry
    is ``expires_in`` seconds from the request, or the JWT ``exp`` when ``expires_in`` is absent.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock)
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError("ClientCredentials needs a non-empty client_id")
        if not isinstance(client_secret, str) or not client_secret:
            raise ConfigurationError("ClientCredentials needs a non-empty client_secret")
        self.client_id = client_id.strip()
        self._client_secret = Secret(client_secret)
        self.token_url = None if token_url is None else _checked_url(token_url, "token_url")

    def url_for(self, context: TokenEndpointContext) -> str:
        if self.token_url is not None:
            return self.token_url
        return _checked_url(context.base_url.rstrip("/") + "/v0/oauth2/token", "base_url")

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        context = self._require_context(context)
        token_url = self.url_for(context)
        requested_at = clock()
        response = await self._post(
            context,
            token_url,
            [self._client_secret],
            clock,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret.get_secret_value(),
            },
            headers={"X-Amperity-Tenant": context.tenant, "Accept": "application/json"},
        )
        try:
            body: Any = response.json()
        except ValueError:
            raise TokenEndpointError(
                token_url,
                response.status_code,
                "token response is not JSON (expected an object with access_token)",
            ) from None
        if not isinstance(body, dict):
            raise TokenEndpointError(
                token_url,
                response.status_code,
                f"token response is a JSON {type(body).__name__}, not an object",
            )
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token.strip():
            raise TokenEndpointError(
                token_url, response.status_code, "token response has no 'access_token' string"
            )
        token_type = body.get("token_type")
        if token_type is not None and str(token_type).lower() != "bearer":
            raise TokenEndpointError(
                token_url,
                response.status_code,
                f"token_type {token_type!r} is not supported (expected 'Bearer')",
            )
        access_token = access_token.strip()
        if body.get("expires_in") is not None:
            expires_at: float | None = requested_at + _expires_in_seconds(body["expires_in"], token_url)
        else:
            expires_at = jwt_expiry(access_token)
        return Token(Secret(access_token), expires_at)

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(client_id={self.client_id!r}, client_secret={self._client_secret!r}, "
            f"token_url={self.token_url!r})"
        )


class IssuerToken(_BuiltinTokenSource):
    """Access tokens minted by an API key's token issuer.

    Sends ``POST {base_url}/v0/admin/api-keys/{api_key_id}/tokens`` with ``Authorization: Bearer
    <issuer_token>``, ``X-Amperity-Tenant`` and the JSON body ``{"expires-at": "<ISO-8601 UTC>"}``
    asking for a token valid for ``lifetime`` seconds.

    Amperity does not document the response, so each of these is accepted:

    - a JSON object with the token under ``access_token`` or ``token``, optionally with ``expires_in``
      (seconds) or ``expires_at`` (ISO-8601 date-time, or epoch seconds);
    - a JSON string holding the token;
    - the bare token as the body (e.g. ``text/plain``), which must then look like a JWT.

    The expiry is taken from ``expires_in``/``expires_at`` if present, else from the JWT ``exp``, else
    it is the expiry that was asked for.
    """

    def __init__(
        self,
        api_key_id: str,
        issuer_token: str,
        *,
        lifetime: float = 3600.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock)
        if not isinstance(api_key_id, str) or not api_key_id.strip():
            raise ConfigurationError("IssuerToken needs a non-empty api_key_id")
        if not isinstance(issuer_token, str) or not issuer_token.strip():
            raise ConfigurationError("IssuerToken needs a non-empty issuer_token")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not lifetime > 0:
            raise ConfigurationError(
                f"IssuerToken lifetime must be a positive number of seconds, got {lifetime!r}"
            )
        self.api_key_id = api_key_id.strip()
        self._issuer_token = Secret(issuer_token.strip())
        self.lifetime = float(lifetime)

    def url_for(self, context: TokenEndpointContext) -> str:
        key = urllib.parse.quote(self.api_key_id, safe="")
        return _checked_url(f"{context.base_url.rstrip('/')}/v0/admin/api-keys/{key}/tokens", "base_url")

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        context = self._require_context(context)
        token_url = self.url_for(context)
        requested_at = clock()
        requested_expiry = requested_at + self.lifetime
        response = await self._post(
            context,
            token_url,
            [self._issuer_token],
            clock,
            json={"expires-at": _iso(requested_expiry)},
            headers={
                "Authorization": f"Bearer {self._issuer_token.get_secret_value()}",
                "X-Amperity-Tenant": context.tenant,
                "Accept": "application/json, text/plain",
            },
        )
        value, expires_at = self._parse(response, token_url, requested_at)
        if expires_at is None:
            expires_at = jwt_expiry(value)
        if expires_at is None:
            expires_at = requested_expiry
        return Token(Secret(value), expires_at)

    @staticmethod
    def _parse(response: httpx.Response, token_url: str, requested_at: float) -> tuple[str, float | None]:
        status = response.status_code
        text = response.text.strip()
        if not text:
            raise TokenEndpointError(token_url, status, "token response is empty (expected a token)")
        try:
            body: Any = json.loads(text)
        except ValueError:
            if not _JWT_SHAPE.fullmatch(text):
                raise TokenEndpointError(
                    token_url, status, "token response is neither JSON nor a bare JWT"
                ) from None
            return text, None
        if isinstance(body, str):
            if not body.strip():
                raise TokenEndpointError(token_url, status, "token response is an empty JSON string")
            return body.strip(), None
        if not isinstance(body, dict):
            raise TokenEndpointError(
                token_url, status, f"token response is a JSON {type(body).__name__}, not an object or string"
            )
        value = body.get("access_token", body.get("token"))
        if not isinstance(value, str) or not value.strip():
            raise TokenEndpointError(
                token_url, status, "token response has no 'access_token' or 'token' string"
            )
        if body.get("expires_in") is not None:
            return value.strip(), requested_at + _expires_in_seconds(body["expires_in"], token_url)
        if body.get("expires_at") is not None:
            return value.strip(), _parse_expires_at(body["expires_at"], token_url)
        return value.strip(), None

    def __repr__(self) -> str:
        return (
            f"IssuerToken(api_key_id={self.api_key_id!r}, issuer_token={self._issuer_token!r}, "
            f"lifetime={self.lifetime!r})"
        )


def _parse_expires_at(value: object, token_url: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            # A time without a zone is read as UTC, the zone the request's expires-at uses.
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise TokenEndpointError(
        token_url,
        None,
        f"token response field 'expires_at' is neither an ISO-8601 date-time nor epoch seconds: {value!r}",
    )


@attrs.define
class _Flight:
    """One token request in progress, which every task that needs a token waits for."""

    done: anyio.Event = attrs.field(factory=anyio.Event)
    token: Token | None = None
    error: Exception | None = None


class TokenRefresher:
    """Keeps the current access token and renews it, with one token request at a time.

    ``get()`` returns the current token, renewing it first once ``now >= expires_at - leeway`` (for
    tokens that live less than twice the leeway, halfway through their life). Tokens without an expiry
    are kept until ``refresh()`` is called after a 401. Whatever the number of tasks asking at once,
    one request is made and all of them get its token, or its error. Failures the source marks as
    retryable (``TokenEndpointUnavailableError``) are retried up to ``max_attempts`` in all, with
    exponential backoff and full jitter (``backoff_base * 2**(attempt - 1)`` at most, capped; a
    ``Retry-After`` from the endpoint wins). ``clock`` is the wall clock that expiries are measured
    with, also lent to the built-in sources that were not given one; ``sleep`` and ``rng`` make the
    backoff deterministic in tests. ``fetch_count`` counts token requests (each attempt is one).
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        context: TokenEndpointContext | None = None,
        leeway: float = 60.0,
        clock: Clock = time.time,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(source, TokenSource):
            raise ConfigurationError(
                f"auth must be StaticToken, ClientCredentials, IssuerToken or an object with "
                f"'async def fetch(self) -> Token', not {type(source).__name__}"
            )
        if isinstance(source, _BuiltinTokenSource) and source.needs_endpoint and context is None:
            source._require_context(context)
        if not leeway >= 0:
            raise ConfigurationError(f"leeway must be zero or more seconds, got {leeway!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an integer of at least 1, got {max_attempts!r}")
        if not backoff_base >= 0:
            raise ConfigurationError(f"backoff_base must be zero or more seconds, got {backoff_base!r}")
        self._source = source
        self._context = context
        self._leeway = float(leeway)
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff_base = float(backoff_base)
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._token: Token | None = None
        self._refresh_at: float | None = None
        self._flight: _Flight | None = None
        self.fetch_count = 0

    @property
    def source(self) -> TokenSource:
        return self._source

    @property
    def current(self) -> Token | None:
        """The token held now (possibly due for renewal), or ``None`` before the first one."""
        return self._token

    async def get(self) -> Token:
        """The current token, renewed first if it is within the leeway of its expiry."""
        while True:
            token = self._token
            if token is not None and self._is_fresh():
                return token
            flight = self._flight
            if flight is None:
                return await self._fly()
            fetched = await self._wait(flight)
            if fetched is not None:
                return fetched

    async def refresh(self, rejected: Token | None = None) -> Token:
        """A new token after ``rejected`` was refused (a 401).

        When another task has already replaced ``rejected`` with a token that is still fresh, that one
        is returned without a request; when a renewal is in progress, its token is.
        """
        while True:
            flight = self._flight
            if flight is not None:
                fetched = await self._wait(flight)
                if fetched is not None:
                    return fetched
                continue
            token = self._token
            if (
                token is not None
                and rejected is not None
                and token.access_token != rejected.access_token
                and self._is_fresh()
            ):
                return token
            return await self._fly()

    def _is_fresh(self) -> bool:
        return self._refresh_at is None or self._clock() < self._refresh_at

    async def _wait(self, flight: _Flight) -> Token | None:
        """The flight's token; ``None`` if its leader was cancelled, so that a waiter takes over."""
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.token

    async def _fly(self) -> Token:
        # The flight is published before the first await, so every task arriving later joins it.
        flight = self._flight = _Flight()
        try:
            token = await self._fetch_with_retries()
        except Exception as exc:
            flight.error = exc
            raise
        else:
            self._keep(token)
            flight.token = token
            return token
        finally:
            # Reached on cancellation too: waiters then see neither token nor error and retry themselves.
            self._flight = None
            flight.done.set()

    def _keep(self, token: Token) -> None:
        fetched_at = self._clock()
        self._token = token
        if token.expires_at is None:
            self._refresh_at = None
        else:
            # A token that lives less than twice the leeway is renewed halfway through its life, not
            # at once: renewing on every call would flood the token endpoint.
            leeway = min(self._leeway, (token.expires_at - fetched_at) / 2)
            self._refresh_at = token.expires_at - leeway

    async def _fetch_with_retries(self) -> Token:
        attempt = 1
        while True:
            self.fetch_count += 1
            try:
                token = await self._fetch_once()
            except TokenEndpointUnavailableError as exc:
                if attempt >= self._max_attempts:
                    logger.warning("giving up on the token request after %d attempts: %s", attempt, exc)
                    raise
                delay = self._backoff_delay(attempt, exc.retry_after)
                logger.warning(
                    "token request failed (attempt %d of %d): %s; retrying in %.2f s",
                    attempt,
                    self._max_attempts,
                    exc,
                    delay,
                )
                await self._sleep(delay)
                attempt += 1
                continue
            self._check_usable(token)
            logger.debug("obtained an access token (expires at %s)", _describe_expiry(token))
            return token

    async def _fetch_once(self) -> Token:
        source = self._source
        if isinstance(source, _BuiltinTokenSource):
            return await source._fetch(self._context, source._clock or self._clock)
        return await source.fetch()

    def _check_usable(self, token: object) -> None:
        name = type(self._source).__name__
        if not isinstance(token, Token):
            raise TokenError(f"{name}.fetch() returned {type(token).__name__}, expected a Token")
        if not token.access_token:
            raise TokenError(f"{name}.fetch() returned a Token with an empty access_token")
        if token.expires_at is not None:
            now = self._clock()
            if now >= token.expires_at:
                raise TokenExpiredError(
                    f"{name}.fetch() returned a token that expired at {_iso(token.expires_at)} "
                    f"({now - token.expires_at:.0f} s ago); check the token source and the local clock"
                )

    def _backoff_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_BACKOFF_SECONDS)
        # Full jitter: spreads the retries of many clients hitting the same struggling endpoint.
        return self._rng.uniform(0.0, min(_MAX_BACKOFF_SECONDS, self._backoff_base * 2 ** (attempt - 1)))

    def __repr__(self) -> str:
        held = "none" if self._token is None else f"expires at {_describe_expiry(self._token)}"
        return f"TokenRefresher(source={self._source!r}, leeway={self._leeway!r}, token={held})"


def _describe_expiry(token: Token) -> str:
    return "unknown" if token.expires_at is None else _iso(token.expires_at)


class AmperityAuth(httpx.Auth):
    """httpx authentication with tokens from a ``TokenRefresher``, for ``httpx.AsyncClient``.

    Sets ``Authorization: Bearer <token>``. After a 401 the token is renewed once and the request
    replayed once; a second 401 is returned as it is, for the caller to raise. When the renewal yields
    the token that was just refused (a fixed token), the 401 is returned without a replay.
    """

    # The body is read up front so that the replay after a 401 can send it again.
    requires_request_body = True

    def __init__(self, refresher: TokenRefresher) -> None:
        if not isinstance(refresher, TokenRefresher):
            raise ConfigurationError(f"AmperityAuth takes a TokenRefresher, not {type(refresher).__name__}")
        self.refresher = refresher

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise ConfigurationError(
            "AmperityAuth renews tokens asynchronously and works only with httpx.AsyncClient"
        )

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        token = await self.refresher.get()
        _authorize(request, token)
        response = yield request
        if response.status_code != 401:
            return
        renewed = await self.refresher.refresh(token)
        if renewed.access_token == token.access_token:
            logger.warning(
                "%s %s was refused with 401 and the token source has no other token",
                request.method,
                request.url.copy_with(query=None),
            )
            return
        logger.info(
            "%s %s was refused with 401; replaying it once with a renewed token",
            request.method,
            request.url.copy_with(query=None),
        )
        _authorize(request, renewed)
        yield request

    def __repr__(self) -> str:
        return f"AmperityAuth({self.refresher!r})"


def _authorize(request: httpx.Request, token: Token) -> None:
    request.headers["Authorization"] = f"Bearer {token.access_token.get_secret_value()}"
