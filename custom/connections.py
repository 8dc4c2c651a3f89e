"""The inner transport: pooled connections, httpx-aiohttp on asyncio and httpx's own on trio; on
asyncio the fast path (``fastwire``) sends on the same aiohttp session, so both share one pool.

aiohttp quietly sends an idempotent request a second time when a pooled connection turns out to
be closed; that second send would pass neither the rate limiter nor the statistics, nor the
retry count. The sessions made here have that re-send turned off, so the failure reaches the
``AmperityTransport``, which retries it like any other dropped connection.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx
import sniffio

DEFAULT_MAX_CONNECTIONS = 100


class AiohttpSession:
    """The client's one aiohttp session (its connection pool), made on first use inside the
    running event loop, as aiohttp wants; shared by the fast path and httpx-aiohttp."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        self._limits = limits
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=httpx.create_ssl_context(verify=self._verify),
            )
            # Amperity's APIs set no cookies: no jar to consult on every request.
            session = self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
            # The switch aiohttp's own test client uses; without it a request on a pooled
            # connection the server has closed is silently sent again.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
        return session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _aiohttp_transport(session: AiohttpSession) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    transport: httpx.AsyncBaseTransport = AiohttpTransport(client=session)
    return transport


class _PerBackendTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp on asyncio, httpx's own transport on trio (aiohttp runs on asyncio only).

    The choice waits for the first request, because clients are often built before the event
    loop runs. ``aiohttp_session`` is the session the fast path sends on (asyncio only).
    """

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        self._limits = limits
        self._verify = verify
        self._chosen: httpx.AsyncBaseTransport | None = None
        self.aiohttp_session = AiohttpSession(limits=limits, verify=verify)

    def _choose(self) -> httpx.AsyncBaseTransport:
        transport: httpx.AsyncBaseTransport
        if sniffio.current_async_library() == "asyncio":
            transport = _aiohttp_transport(self.aiohttp_session)
        else:
            transport = httpx.AsyncHTTPTransport(limits=self._limits, verify=self._verify)
        self._chosen = transport
        return transport

    @property
    def chosen(self) -> httpx.AsyncBaseTransport | None:
        """The transport in use, once the first request has picked it."""
        return self._chosen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._chosen or self._choose()
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        try:
            if self._chosen is not None:
                await self._chosen.aclose()
        finally:
            await self.aiohttp_session.aclose()

    def __repr__(self) -> str:
        return f"default_inner_transport(chosen={type(self._chosen).__name__ if self._chosen else None})"


def aiohttp_session_of(transport: httpx.AsyncBaseTransport) -> AiohttpSession | None:
    """The aiohttp session behind ``transport`` when it is the default one (else None: a transport
    given by the caller, such as a test's, must see every request)."""
    return transport.aiohttp_session if isinstance(transport, _PerBackendTransport) else None


def default_inner_transport(
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    keepalive_expiry: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncBaseTransport:
    """The fastest transport available: httpx-aiohttp on asyncio, httpx's own on trio.

    Every connection of the pool is kept alive for reuse (a bulk extraction with 50 tasks should
    never reconnect). TLS certificates are verified unless ``verify`` says otherwise. Timeouts come
    from the request, per attempt; the ``AmperityTransport`` above bounds each attempt as a whole.
    """
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return _PerBackendTransport(limits=limits, verify=verify)
