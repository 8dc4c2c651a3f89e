"""Where access tokens come from: ``StaticToken``, ``ClientCredentials``, ``IssuerToken``, or any
object with ``async def fetch(self) -> Token``.

The built-in sources that call a token endpoint send one bounded request per ``fetch`` (the
client's per-attempt timeout and response size cap apply) and report failures as typed errors:
rejected credentials as ``TokenCredentialsRejectedError`` (an ``AuthenticationError``), an
unreachable or overloaded endpoint as ``TokenEndpointUnavailableError`` (an ``APIConnectionError``,
retried by the ``TokenRefresher``). Each source has a ``redactor`` knowing its secrets; no message
it builds contains them, in any encoding.
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
import math
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import attrs
import httpx

from . import attempt
from .attempt import AttemptFailed, BodyTooLarge
from .calls import DEFAULT_BOUNDS, Bounds
from .clock import Clock, SystemClock
from .errors import (
    ConfigurationError,
    TokenCredentialsRejectedError,
    TokenEndpointError,
    TokenEndpointTimeoutError,
    TokenEndpointUnavailableError,
    TokenExpiredError,
)
from .retry import parse_retry_after
from .secrets import Redactor, Secret, as_secret
from .urls import checked_url

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Expiries past this are not expiries: the token is kept until the API refuses it.
_LATEST_EXPIRY = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
MAX_TOKEN_LIFETIME = 10 * 365 * 86400.0
_REJECTED_CREDENTIALS = frozenset({400, 401, 403})


@attrs.frozen
class Token:
    """An access token and, when known, the wall-clock time (epoch seconds) at which it expires."""

    access_token: Secret = attrs.field(converter=as_secret)
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
    ``bounds`` gives each token request its timeout and response size cap. ``redactor``, when
    given (the client's), scrubs what the endpoint says of every secret and token the client
    knows, not only the source's own.
    """

    base_url: str
    tenant: str
    transport: httpx.AsyncBaseTransport
    bounds: Bounds = DEFAULT_BOUNDS
    redactor: Redactor | None = None


def iso(epoch_seconds: float) -> str:
    """``epoch_seconds`` as an ISO-8601 UTC time; never raises, whatever the number."""
    try:
        return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{epoch_seconds!r} (epoch seconds)"


def describe_expiry(token: Token) -> str:
    return "unknown" if token.expires_at is None else iso(token.expires_at)


def _usable_expiry(value: float) -> float | None:
    return float(value) if math.isfinite(value) and 0 <= value <= _LATEST_EXPIRY else None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without verifying the signature.

    ``None`` when ``token`` is not a JWT, carries no numeric ``exp``, or one outside the years 1970
    to 9999.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        return None
    try:
        return _usable_expiry(float(expiry))
    except OverflowError:  # an int too large for a float
        return None


def _error_detail(response: httpx.Response) -> str:
    """What a token endpoint said about a failure: OAuth ``error``/``error_description``, Amperity
    ``message``, or the raw body text."""
    text = response.content.decode("utf-8", errors="replace").strip()
    try:
        body: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("error", "error_description", "message") if body.get(key)]
        if parts:
            return ": ".join(parts)
    return text or response.reason_phrase or "(empty body)"


def _body(response: httpx.Response) -> str:
    return response.content.decode("utf-8", errors="replace").strip()


def _expires_in_seconds(value: object, token_url: str, status: int) -> float | None:
    """Seconds from ``expires_in``; ``None`` (expiry unknown) for a lifetime beyond any real one."""
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float: no real lifetime either
            return None
    if number is None or not math.isfinite(number) or number <= 0:
        raise TokenEndpointError(
            token_url,
            status,
            f"token response field 'expires_in' must be a positive number of seconds, got {value!r}",
        )
    return number if number <= MAX_TOKEN_LIFETIME else None


def _parse_expires_at(value: object, token_url: str, status: int) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _usable_expiry(float(value))
        except OverflowError:
            return None
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
        status,
        f"token response field 'expires_at' is neither an ISO-8601 date-time nor epoch seconds: {value!r}",
    )


class _BuiltinTokenSource(abc.ABC):
    """The token sources shipped here: they may use the token endpoint context the client provides.

    Their clock is the one given to them, else the ``TokenRefresher``'s (so that one clock, injected
    once, governs the whole auth layer), else the system clock.
    """

    #: Whether ``fetch`` calls a token endpoint (and so needs a ``TokenEndpointContext``).
    needs_endpoint: bool = True

    def __init__(self, clock: Clock | None) -> None:
        self._clock = clock
        self.redactor = Redactor()

    @property
    def clock(self) -> Clock | None:
        return self._clock

    async def fetch(self, context: TokenEndpointContext | None = None) -> Token:
        return await self.fetch_with(context, self._clock or SystemClock())

    async def fetch_with(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        """A fresh token, reading the time from this source's own clock if it has one, else ``clock``."""
        return await self._fetch(context, self._clock or clock)

    @abc.abstractmethod
    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        """A fresh token, reading the time from ``clock``."""

    def require_context(self, context: TokenEndpointContext | None) -> TokenEndpointContext:
        if context is None:
            raise ConfigurationError(
                f"{type(self).__name__} requests tokens from Amperity's token endpoint and needs to know "
                "where it is: use it as AmperityClient(auth=...), or give "
                "TokenRefresher(..., context=TokenEndpointContext(base_url=..., tenant=..., transport=...))"
            )
        return context

    def redactor_for(self, context: TokenEndpointContext) -> Redactor:
        """The client's redactor when the context brings one (it includes this source's), else ours."""
        return context.redactor or self.redactor

    async def _post(
        self, context: TokenEndpointContext, token_url: str, clock: Clock, **content: Any
    ) -> httpx.Response:
        """One bounded request to a token endpoint; the 2xx response (body read), or a typed error."""
        bounds = context.bounds
        request = httpx.Request(
            "POST", token_url, extensions={"timeout": bounds.httpx_timeout().as_dict()}, **content
        )
        limit_at = math.inf if bounds.timeout is None else clock.now() + bounds.timeout
        redactor = self.redactor_for(context)
        scrub = redactor.scrub
        try:
            with attempt.bounded(clock, limit_at, "timeout"):
                response = await attempt.send(context.transport, request)
                await attempt.read_body(response, bounds.max_response_bytes)
        except AttemptFailed as exc:
            failure = exc.failure
            detail = scrub(f"{failure.summary} ({failure.detail})")
            error: TokenEndpointError
            if failure.is_timeout:
                seconds = bounds.timeout if exc.bound == "timeout" else None
                if seconds is not None:
                    detail = f"no complete answer within the timeout of {seconds:g} s"
                error = TokenEndpointTimeoutError(token_url, detail, bound="timeout", seconds=seconds)
            elif failure.transient:
                error = TokenEndpointUnavailableError(token_url, None, detail, kind=failure.kind)
            else:
                error = TokenEndpointError(token_url, None, detail)
            raise error from (None if exc.cause is None else redactor.safe_cause(exc.cause))
        except BodyTooLarge as exc:
            raise TokenEndpointError(
                token_url, None, f"the token response exceeds max_response_bytes={exc.limit:,}"
            ) from None
        status = response.status_code
        if response.is_success:
            return response
        detail = scrub(_error_detail(response))
        if status == 429 or status >= 500:
            raise TokenEndpointUnavailableError(
                token_url,
                status,
                detail,
                retry_after=parse_retry_after(response.headers.get("retry-after"), clock.time()),
                kind="unavailable",
            )
        if status in _REJECTED_CREDENTIALS:
            raise TokenCredentialsRejectedError(token_url, status, detail)
        raise TokenEndpointError(token_url, status, detail)


class StaticToken(_BuiltinTokenSource):
    """A fixed access token, e.g. one generated in the Amperity UI.

    When the token is a JWT its ``exp`` claim is read (the signature is not verified) and, once the token
    has expired, ``fetch`` raises ``TokenExpiredError`` instead of letting requests fail with 401s.
    Tokens that are not JWTs (or whose ``exp`` is not a real date) are used until the API rejects them.
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
        self.redactor.add(value)
        self._token = Token(Secret(value), jwt_expiry(value))

    @property
    def expires_at(self) -> float | None:
        """The token's ``exp`` (epoch seconds), or ``None`` when it is not a JWT with an ``exp``."""
        return self._token.expires_at

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        expires_at = self._token.expires_at
        if expires_at is not None:
            now = clock.time()
            if now >= expires_at:
                raise TokenExpiredError(
                    f"the static access token expired at {iso(expires_at)} ({now - expires_at:.0f} s ago); "
                    "create a new token, or use ClientCredentials or IssuerToken to have tokens renewed"
                )
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken(token={self._token.access_token!r}, expires_at={describe_expiry(self._token)})"


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
        self.redactor.add(self._client_secret)
        self.token_url = None if token_url is None else checked_url(token_url, "token_url")

    def url_for(self, context: TokenEndpointContext) -> str:
        if self.token_url is not None:
            return self.token_url
        return checked_url(context.base_url.rstrip("/") + "/v0/oauth2/token", "base_url")

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        context = self.require_context(context)
        token_url = self.url_for(context)
        requested_at = clock.time()
        response = await self._post(
            context,
            token_url,
            clock,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret.get_secret_value(),
            },
            headers={
                "X-Amperity-Tenant": context.tenant,
                "Accept": "application/json",
                "User-Agent": "amperity-async",
            },
        )
        status = response.status_code
        try:
            body: Any = json.loads(_body(response))
        except (ValueError, RecursionError):
            raise TokenEndpointError(
                token_url, status, "token response is not JSON (expected an object with access_token)"
            ) from None
        if not isinstance(body, dict):
            raise TokenEndpointError(
                token_url, status, f"token response is a JSON {type(body).__name__}, not an object"
            )
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token.strip():
            raise TokenEndpointError(token_url, status, "token response has no 'access_token' string")
        token_type = body.get("token_type")
        if token_type is not None and str(token_type).lower() != "bearer":
            raise TokenEndpointError(
                token_url,
                status,
                f"token_type {self.redactor_for(context).scrub(str(token_type))[:40]!r} is not supported "
                "(expected 'Bearer')",
            )
        access_token = access_token.strip()
        expires_at: float | None = None
        if body.get("expires_in") is not None:
            lifetime = _expires_in_seconds(body["expires_in"], token_url, status)
            expires_at = None if lifetime is None else requested_at + lifetime
        if expires_at is None:
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
        if (
            isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
            or not 0 < lifetime <= MAX_TOKEN_LIFETIME
        ):
            raise ConfigurationError(
                f"IssuerToken lifetime must be a positive number of seconds up to {MAX_TOKEN_LIFETIME:.0f} "
                f"(ten years), got {lifetime!r}"
            )
        self.api_key_id = api_key_id.strip()
        self._issuer_token = Secret(issuer_token.strip())
        self.redactor.add(self._issuer_token)
        self.lifetime = float(lifetime)

    def url_for(self, context: TokenEndpointContext) -> str:
        key = urllib.parse.quote(self.api_key_id, safe="")
        return checked_url(f"{context.base_url.rstrip('/')}/v0/admin/api-keys/{key}/tokens", "base_url")

    async def _fetch(self, context: TokenEndpointContext | None, clock: Clock) -> Token:
        context = self.require_context(context)
        token_url = self.url_for(context)
        requested_at = clock.time()
        requested_expiry = requested_at + self.lifetime
        response = await self._post(
            context,
            token_url,
            clock,
            json={"expires-at": iso(requested_expiry)},
            headers={
                "Authorization": f"Bearer {self._issuer_token.get_secret_value()}",
                "X-Amperity-Tenant": context.tenant,
                "Accept": "application/json, text/plain",
                "User-Agent": "amperity-async",
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
        text = _body(response)
        if not text:
            raise TokenEndpointError(token_url, status, "token response is empty (expected a token)")
        try:
            body: Any = json.loads(text)
        except (ValueError, RecursionError):
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
            lifetime = _expires_in_seconds(body["expires_in"], token_url, status)
            # A lifetime beyond any real one: fall back to the JWT exp or the expiry asked for.
            return value.strip(), None if lifetime is None else requested_at + lifetime
        if body.get("expires_at") is not None:
            return value.strip(), _parse_expires_at(body["expires_at"], token_url, status)
        return value.strip(), None

    def __repr__(self) -> str:
        return (
            f"IssuerToken(api_key_id={self.api_key_id!r}, issuer_token={self._issuer_token!r}, "
            f"lifetime={self.lifetime!r})"
        )
