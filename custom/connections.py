"""The inner transport: pooled connections, httpx-aiohttp on asyncio and httpx's own on trio.

aiohttp quietly sends an idempotent request a second time when a pooled connection turns out to
be closed; that second send would pass neither the rate limiter nor the statistics, nor the
retry count. The sessions made here have that re-send turned off, so the failure reaches the
``AmperityTransport``, which retries it like any other dropped connection.
"""

from __future__ import annotations

import ssl

import httpx
import sniffio

DEFAULT_MAX_CONNECTIONS = 100


def _aiohttp_transport(limits: httpx.Limits, verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    ssl_context = httpx.create_ssl_context(verify=verify)

    def session() -> aiohttp.ClientSession:
        # Made on the first request, inside the running event loop, as aiohttp wants.
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=ssl_context,
        )
        made = aiohttp.ClientSession(connector=connector)
        # The switch aiohttp's own test client uses; without it a request on a pooled connection the
        # server has closed is silently sent again.
        if hasattr(made, "_retry_connection"):
            made._retry_connection = False
        return made

    transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, verify=verify, client=session)
    return transport


class _PerBackendTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp on asyncio, httpx's own transport on trio (aiohttp runs on asyncio only).

    The choice waits for the first request, because clients are often built before the event
    loop runs.
    """

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        self._limits = limits
        self._verify = verify
        self._chosen: httpx.AsyncBaseTransport | None = None

    def _choose(self) -> httpx.AsyncBaseTransport:
        transport: httpx.AsyncBaseTransport
        if sniffio.current_async_library() == "asyncio":
            try:
                transport = _aiohttp_transport(self._limits, self._verify)
            except ImportError:  # the fast transport is a dependency, but may be uninstalled
                transport = httpx.AsyncHTTPTransport(limits=self._limits, verify=self._verify)
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
        if self._chosen is not None:
            await self._chosen.aclose()

    def __repr__(self) -> str:
        return f"default_inner_transport(chosen={type(self._chosen).__name__ if self._chosen else None})"


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
