"""The current access token: renewed before it expires, once for all tasks, and after a 401 only
when the rejected token is still the current one.
"""

from __future__ import annotations

import logging
import math
import random as _random
from collections.abc import Callable

import anyio
import attrs

from .clock import Clock, SystemClock
from .errors import (
    AmperityError,
    ConfigurationError,
    TokenEndpointUnavailableError,
    TokenError,
    TokenExpiredError,
)
from .retry import TOKEN_RETRY_POLICY, RetryPolicy
from .secrets import RedactedLog, Redactor
from .tokens import Token, TokenEndpointContext, TokenSource, _BuiltinTokenSource, describe_expiry, iso

logger = logging.getLogger("amperity_async.auth")

DEFAULT_UNAUTHORIZED_REFRESH_INTERVAL = 5.0


@attrs.define
class _Flight:
    """One token request in progress, which every task that needs a token waits for."""

    done: anyio.Event = attrs.field(factory=anyio.Event)
    token: Token | None = None
    error: Exception | None = None


class TokenRefresher:
    """Keeps the current access token and renews it, with one token request at a time.

    - ``get()`` returns the current token, renewing it first once ``now >= expires_at - leeway``
      (for tokens that live less than twice the leeway, halfway through their life). Tokens without
      an expiry are kept until a 401 says otherwise.
    - ``refresh(rejected)`` after a 401: a new token only if ``rejected`` is still the current one
      (a task whose request carried an older token gets the newer one at once), and at most one
      such renewal every ``unauthorized_refresh_interval`` seconds: an endpoint that answers 401 to
      every token does not turn each call into a token request.
    - Whatever the number of tasks asking at once, one request is made and all of them get its
      token, or its error. Failures the source marks as retryable (``TokenEndpointUnavailableError``)
      are retried as ``retry`` says (exponential backoff with full jitter; a ``Retry-After`` wins up
      to its cap, a longer one fails at once).

    ``clock`` gives the wall time that expiries are measured with and the monotonic time of waits;
    it is lent to the built-in sources that were not given one. ``random`` makes backoff
    deterministic in tests. ``fetch_count`` counts token requests (each attempt is one). Every token
    obtained is added to ``redactor``, and every error leaving is scrubbed by it.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        context: TokenEndpointContext | None = None,
        leeway: float = 60.0,
        clock: Clock | None = None,
        retry: RetryPolicy = TOKEN_RETRY_POLICY,
        random: Callable[[], float] = _random.random,
        unauthorized_refresh_interval: float = DEFAULT_UNAUTHORIZED_REFRESH_INTERVAL,
        redactor: Redactor | None = None,
    ) -> None:
        if not isinstance(source, TokenSource):
            raise ConfigurationError(
                f"auth must be StaticToken, ClientCredentials, IssuerToken or an object with "
                f"'async def fetch(self) -> Token', not {type(source).__name__}"
            )
        if isinstance(source, _BuiltinTokenSource) and source.needs_endpoint:
            source.require_context(context)
        if isinstance(leeway, bool) or not isinstance(leeway, int | float) or not leeway >= 0:
            raise ConfigurationError(f"leeway must be zero or more seconds, got {leeway!r}")
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if (
            isinstance(unauthorized_refresh_interval, bool)
            or not isinstance(unauthorized_refresh_interval, int | float)
            or not unauthorized_refresh_interval >= 0
        ):
            raise ConfigurationError(
                "unauthorized_refresh_interval must be zero or more seconds, "
                f"got {unauthorized_refresh_interval!r}"
            )
        self._source = source
        self._context = context
        self._leeway = float(leeway)
        self._clock = clock or SystemClock()
        self._retry = retry
        self._random = random
        self._unauthorized_interval = float(unauthorized_refresh_interval)
        self._redactor = redactor if redactor is not None else Redactor()
        source_redactor = getattr(source, "redactor", None)
        if isinstance(source_redactor, Redactor):
            self._redactor.include(source_redactor)
        self._log = RedactedLog(logger, self._redactor)
        self._token: Token | None = None
        self._refresh_at: float | None = None
        self._flight: _Flight | None = None
        self._last_unauthorized_refresh = -math.inf
        self.fetch_count = 0

    @property
    def source(self) -> TokenSource:
        return self._source

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    @property
    def current(self) -> Token | None:
        """The token held now (possibly due for renewal), or ``None`` before the first one."""
        return self._token

    def fresh(self) -> Token | None:
        """The current token if it needs no renewal (no await needed), else ``None``: ``await get()``."""
        token = self._token
        return token if token is not None and self._is_fresh() else None

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
        """A token to use after ``rejected`` was refused (a 401); without ``rejected``, a new one.

        Returns the current token without a request when it is not ``rejected`` (another task
        renewed it already), or when the last renewal after a 401 was less than
        ``unauthorized_refresh_interval`` seconds ago; callers compare the result with ``rejected``
        to know whether a replay makes sense. A renewal in progress is joined.
        """
        while True:
            flight = self._flight
            if flight is not None:
                fetched = await self._wait(flight)
                if fetched is not None:
                    return fetched
                continue
            token = self._token
            if rejected is None or token is None:
                return await self._fly()
            if token is not rejected:
                return token if self._is_fresh() else await self.get()
            if self._clock.now() - self._last_unauthorized_refresh < self._unauthorized_interval:
                return token
            self._last_unauthorized_refresh = self._clock.now()
            return await self._fly()

    def _is_fresh(self) -> bool:
        return self._refresh_at is None or self._clock.time() < self._refresh_at

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
        fetched_at = self._clock.time()
        self._token = token
        self._redactor.add_token(token.access_token)
        if token.expires_at is None:
            self._refresh_at = None
        else:
            # A token that lives less than twice the leeway is renewed halfway through its life, not
            # at once: renewing on every call would flood the token endpoint.
            leeway = min(self._leeway, (token.expires_at - fetched_at) / 2)
            self._refresh_at = token.expires_at - leeway

    async def _fetch_with_retries(self) -> Token:
        policy, clock = self._retry, self._clock
        retry = 0
        while True:
            self.fetch_count += 1
            try:
                token = await self._fetch_once()
            except TokenEndpointUnavailableError as exc:
                self._scrub(exc)
                if policy.exceeds_cap(exc.retry_after):
                    self._log.warning(
                        "not retrying the token request: the endpoint asked to wait %.0f s (Retry-After), "
                        "more than max_retry_after=%.0f s: %s",
                        exc.retry_after,
                        policy.max_retry_after,
                        exc,
                    )
                    raise
                if not policy.allows_retry(retry):
                    self._log.warning("giving up on the token request after %d attempts: %s", retry + 1, exc)
                    raise
                delay = policy.delay(retry, exc.retry_after, self._random)
                self._log.warning(
                    "token request failed (attempt %d of %d): %s; retrying in %.2f s",
                    retry + 1,
                    policy.max_retries + 1,
                    exc,
                    delay,
                )
                await clock.sleep_until(clock.now() + delay)
                retry += 1
                continue
            except AmperityError as exc:
                self._scrub(exc)
                raise
            self._check_usable(token)
            self._log.debug("obtained an access token (expires at %s)", describe_expiry(token))
            return token

    def _scrub(self, error: AmperityError) -> None:
        # Errors from custom sources, too, are scrubbed of every secret and token the client knows.
        self._redactor.scrub_error(error)

    async def _fetch_once(self) -> Token:
        source = self._source
        if isinstance(source, _BuiltinTokenSource):
            return await source.fetch_with(self._context, self._clock)
        return await source.fetch()

    def _check_usable(self, token: object) -> None:
        name = type(self._source).__name__
        if not isinstance(token, Token):
            raise TokenError(f"{name}.fetch() returned {type(token).__name__}, expected a Token")
        if not token.access_token:
            raise TokenError(f"{name}.fetch() returned a Token with an empty access_token")
        if token.expires_at is not None:
            now = self._clock.time()
            if now >= token.expires_at:
                raise TokenExpiredError(
                    f"{name}.fetch() returned a token that expired at {iso(token.expires_at)} "
                    f"({now - token.expires_at:.0f} s ago); check the token source and the local clock"
                )

    def __repr__(self) -> str:
        held = "none" if self._token is None else f"expires at {describe_expiry(self._token)}"
        return f"TokenRefresher(source={self._source!r}, leeway={self._leeway!r}, token={held})"
