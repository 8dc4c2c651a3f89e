"""Starting and stopping the fake tenant: an async context manager, a runner, and a thread for
callers that are not on asyncio (trio tests, synchronous code, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web

from amperity_async.custom.errors import ConfigurationError

from .app import API_PREFIX, TenantApp
from .config import FakeTenantConfig
from .data import Dataset
from .profile_store import ProfileStore


def _config(config: FakeTenantConfig | None, overrides: dict[str, Any]) -> FakeTenantConfig:
    base = config or FakeTenantConfig()
    return attrs.evolve(base, **overrides) if overrides else base


class FakeTenant:
    """An Amperity tenant on loopback that serves every operation of the spec.

    ``async with FakeTenant(rows=500) as tenant:`` then point a client at ``tenant.base_url``
    with ``tenant.tenant``, ``tenant.client_id`` and ``tenant.client_secret``. asyncio only (it is
    aiohttp); see :func:`start_in_thread` for other callers.
    """

    def __init__(self, config: FakeTenantConfig | None = None, **overrides: Any) -> None:
        self.config = _config(config, overrides)
        self._app: TenantApp | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def _state(self) -> TenantApp:
        if self._app is None:
            raise RuntimeError(
                "the fake tenant is not running; use it as `async with FakeTenant(...) as tenant:`"
            )
        return self._app

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the fake tenant is already running")
        app = TenantApp(self.config)
        # Bodies that never end are cut by stop(); other answers get a moment to finish.
        runner = web.AppRunner(app.build(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"the fake tenant cannot listen on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}"
            ) from None
        server = site._server
        sockets: list[socket.socket] = list(getattr(server, "sockets", None) or [])
        self._port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        self._app, self._runner = app, runner

    async def stop(self) -> None:
        runner, app = self._runner, self._app
        self._runner = self._app = None
        if app is not None:
            app.wire.abort_all()
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        if self._port is None or self._app is None:
            raise RuntimeError(
                "the fake tenant is not running; use it as `async with FakeTenant(...) as tenant:`"
            )
        return self._port

    @property
    def root_url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL clients use, like ``https://app.amperity.com/api``."""
        return self.root_url + API_PREFIX

    @property
    def tenant(self) -> str:
        return self.config.tenant

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (also at ``GET {root_url}/_fake/stats``)."""
        return self._state.stats.snapshot()

    @property
    def dataset(self) -> Dataset:
        return self._state.dataset

    @property
    def profile_store(self) -> ProfileStore:
        """The Real-time API's profile collections, event streams and segments."""
        return self._state.profile_store

    @property
    def app(self) -> TenantApp:
        return self._state

    def facets(self) -> dict[str, dict[str, list[str]]]:
        return self._state.facets()

    def issue_token(self, lifetime: float | None = None) -> str:
        """A valid access token, as the OAuth endpoint would issue it (for static-token clients)."""
        token, _ = self._state.tokens.issue("issued-directly", lifetime)
        self._state.stats.tokens_issued += 1
        return token

    def revoke_tokens(self) -> None:
        self._state.revoke_tokens()


async def serve_forever(
    config: FakeTenantConfig | None = None, on_ready: Callable[[FakeTenant], None] | None = None
) -> None:
    """Run the fake tenant until cancelled; ``on_ready`` gets it once it listens (to print its URL)."""
    async with FakeTenant(config) as tenant:
        if on_ready is not None:
            on_ready(tenant)
        await asyncio.Event().wait()


def run(config: FakeTenantConfig | None = None, on_ready: Callable[[FakeTenant], None] | None = None) -> None:
    """Blocking: run the fake tenant until Ctrl-C (what ``amperity-async fake-tenant`` calls)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, on_ready))


class ThreadedFakeTenant:
    """A fake tenant on its own asyncio loop in a background thread; stop() or ``with`` ends it."""

    def __init__(self, config: FakeTenantConfig | None = None, **overrides: Any) -> None:
        self.tenant = FakeTenant(config, **overrides)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-amperity-tenant", daemon=True)
        self._started = threading.Event()
        self._failure: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.tenant.start())
        except BaseException as exc:
            self._failure = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.tenant.stop())
        self._loop.close()

    def start(self) -> ThreadedFakeTenant:
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the tenant's loop thread and return its result."""
        future: asyncio.Future[Any] = asyncio.run_coroutine_threadsafe(_call(function), self._loop)  # type: ignore[assignment]
        return future.result()

    base_url = property(lambda self: self.tenant.base_url)
    root_url = property(lambda self: self.tenant.root_url)
    client_id = property(lambda self: self.tenant.client_id)
    client_secret = property(lambda self: self.tenant.client_secret)
    config = property(lambda self: self.tenant.config)

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.call(lambda: self.tenant.stats))

    def issue_token(self, lifetime: float | None = None) -> str:
        return str(self.call(lambda: self.tenant.issue_token(lifetime)))

    def revoke_tokens(self) -> None:
        self.call(self.tenant.revoke_tokens)


async def _call(function: Callable[[], Any]) -> Any:
    return function()


def start_in_thread(config: FakeTenantConfig | None = None, **overrides: Any) -> ThreadedFakeTenant:
    """Start a fake tenant in a background thread; use as ``with start_in_thread(rows=10) as tenant:``."""
    return ThreadedFakeTenant(config, **overrides).start()
