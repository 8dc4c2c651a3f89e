"""``AmperityAuth``: the httpx authentication flow that puts tokens on requests.

It starts the call (its ``CallContext``, which carries the deadline) and gives the transport a hook
that puts the current token on the request before every attempt, after the rate limiter's wait:
a request that queued for a minute, or a retry after a long ``Retry-After``, leaves with a token
that is valid then. After a 401 it asks the refresher for a token once and replays the request
once, if the refresher has a different token to offer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Generator

import attrs
import httpx

from .calls import CallContext, Outgoing
from .errors import APITimeoutError, ConfigurationError
from .refresher import TokenRefresher
from .secrets import RedactedLog
from .tokens import Token

logger = logging.getLogger("amperity_async.auth")


@attrs.define
class _Sent:
    """The token the request carries now: the one a 401 refers to."""

    refresher: TokenRefresher
    token: Token | None = None

    def put_on(self, request: Outgoing, token: Token) -> None:
        request.headers["Authorization"] = f"Bearer {token.access_token.get_secret_value()}"
        self.token = token

    async def authorize(self, attempt: Outgoing) -> None:
        """Put a current token on ``attempt``: the transport's hook, called before each attempt."""
        refresher = self.refresher
        token = refresher.fresh() or await refresher.get()
        if token is not self.token:
            self.put_on(attempt, token)


class CallTokens:
    """The tokens of one call: a current one before each attempt, one renewal after a 401.

    ``start`` puts a token on the request (within the call's deadline) and gives the transport the
    hook that renews it before every attempt; after a 401, ``replay_after_401`` renews it once and
    says whether the request should be sent again. The httpx auth flow and the client's fast path
    both go through here.
    """

    __slots__ = ("_auth", "_replayed", "_request", "_sent", "context")

    def __init__(self, auth: AmperityAuth, context: CallContext, request: Outgoing) -> None:
        self._auth, self.context, self._request = auth, context, request
        self._sent = _Sent(auth.refresher)
        self._replayed = False

    async def start(self) -> None:
        auth, context, request, sent = self._auth, self.context, self._request, self._sent
        refresher = auth.refresher
        # Set here as well, for transports that do not call the hook.
        token = refresher.fresh() or await auth.within(
            context, request, refresher.get(), "getting an access token"
        )
        sent.put_on(request, token)
        context.authorize = sent.authorize  # holds neither the context nor this object: no cycle

    async def replay_after_401(self) -> bool:
        """After a 401: whether to send the request once more, with the renewed token now on it."""
        rejected = self._sent.token
        if rejected is None or self._replayed:
            return False
        auth, request = self._auth, self._request
        renewed = await auth.within(
            self.context, request, auth.refresher.refresh(rejected), "renewing the access token after a 401"
        )
        where = _without_query(request)
        if renewed.access_token == rejected.access_token:
            auth.log.warning(
                "%s %s was refused with 401 and the token source has no other token to offer now",
                request.method,
                where,
            )
            return False
        auth.log.info(
            "%s %s was refused with 401; replaying it once with a renewed token", request.method, where
        )
        self._sent.put_on(request, renewed)
        self._replayed = True
        return True


def _without_query(request: Outgoing) -> str:
    return str(request.url).partition("?")[0]


class AmperityAuth(httpx.Auth):
    """httpx authentication with tokens from a ``TokenRefresher``, for ``httpx.AsyncClient``.

    Sets ``Authorization: Bearer <token>`` (again before each attempt when the transport is an
    ``AmperityTransport``). After a 401 the token is renewed once and the request replayed once; a
    second 401 is returned as it is, for the caller to raise. When the refresher offers the token that
    was just refused (a fixed token, or a renewal less than ``unauthorized_refresh_interval`` ago),
    the 401 is returned without a replay. ``deadline`` (seconds) bounds the whole call, token
    requests and the replay included.
    """

    # The body is read up front so that the replay after a 401 can send it again.
    requires_request_body = True

    def __init__(self, refresher: TokenRefresher, *, deadline: float | None = None) -> None:
        if not isinstance(refresher, TokenRefresher):
            raise ConfigurationError(f"AmperityAuth takes a TokenRefresher, not {type(refresher).__name__}")
        self.refresher = refresher
        self.deadline = deadline
        self.log = RedactedLog(logger, refresher.redactor)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise ConfigurationError(
            "AmperityAuth renews tokens asynchronously and works only with httpx.AsyncClient"
        )

    def tokens_for(self, request: Outgoing, context: CallContext | None = None) -> CallTokens:
        """The token handling of one call; ``context`` defaults to a new one with this auth's deadline."""
        if context is None:
            context = CallContext.start(self.deadline, self.refresher.clock)
        return CallTokens(self, context, request)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        context = CallContext.of(request)
        if context is None:
            context = CallContext.start(self.deadline, self.refresher.clock)
            context.attach(request)
        tokens = self.tokens_for(request, context)
        await tokens.start()
        response = yield request
        if response.status_code == 401 and await tokens.replay_after_401():
            yield request

    async def within(
        self, context: CallContext, request: Outgoing, waiting: Awaitable[Token], doing: str
    ) -> Token:
        """``await waiting``, raising APITimeoutError once the call's deadline passes."""
        if context.deadline_at == math.inf:
            return await waiting
        with self.refresher.clock.cancel_at(context.deadline_at) as scope:
            token = await waiting
        if scope.cancelled_caught:
            raise APITimeoutError(
                f"{context.deadline_text()} passed while {doing}",
                method=request.method,
                url=self.refresher.redactor.scrub(str(request.url)),
                bound="deadline",
                seconds=context.deadline,
            )
        return token

    def __repr__(self) -> str:
        return f"AmperityAuth({self.refresher!r})"
