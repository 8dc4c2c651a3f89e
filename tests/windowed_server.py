"""A small stand-in for Amperity's windowed lists, hostile where the tests need it.

- ``GET /api/ingest/jobs`` answers every job of a ``created_from``/``created_to`` window in one
  response, with a fresh ``next_token`` that it ignores when sent back (as the docs say upstream
  does), and 400 for a window longer than ``max_window_days`` or a missing bound.
- ``GET /api/audit-events`` is a paginated list (``limit``, ``next_token``) filtered by
  ``happened_from``/``happened_to``.
- ``echo_form=True`` makes a refused token request echo its form body (the secret URL-encoded).
- ``inclusive_end=True`` makes both treat ``*_to`` as inclusive, so an item exactly on a boundary
  comes back in two adjacent windows.

It runs on its own thread and loop, so subprocesses (the real CLI) and any test backend can use it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from aiohttp import web

TENANT = "acme"
CLIENT_ID = "windowed-client"
CLIENT_SECRET = "windowed-secret-value"


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job(index: int, started: datetime) -> dict[str, Any]:
    ended = started + timedelta(minutes=3)
    return {
        "id": f"isj-{index:05d}",
        "workflow_id": f"wf-{index:05d}",
        "tables": [
            {
                "feed_id": f"df-{index:05d}",
                "job_id": f"isj-{index:05d}",
                "table_name": "Orders",
                "state": "succeeded",
                "read": 10,
                "errors": 0,
                "rejected": 0,
                "inserted": 10,
                "updated": 0,
                "started_at": stamp(started),
                "ended_at": stamp(ended),
                "files": [{"file_id": f"cb-{index:05d}/part0.avro", "read": 10, "errors": 0}],
            }
        ],
    }


def event(index: int, happened: datetime) -> dict[str, Any]:
    return {
        "event_id": f"ae-{index:05d}",
        "event_type": ":amperity.segment/updated",
        "tenant": TENANT,
        "tenant_family": TENANT,
        "happened_at": stamp(happened),
        "principal_id": "p-1",
        "principal_name": "P",
        "principal_email": "p@example.com",
        "object_id": f"seg-{index}",
        "origin_ip": "10.0.0.1",
        "user_agent": "test",
        "session_id": "s-1",
    }


class WindowedServer:
    def __init__(
        self,
        jobs: Sequence[datetime] = (),
        events: Sequence[datetime] = (),
        *,
        inclusive_end: bool = False,
        max_window_days: int = 7,
        echo_form: bool = False,
    ) -> None:
        self.jobs = [(when, job(i, when)) for i, when in enumerate(jobs)]
        self.events = sorted(((when, event(i, when)) for i, when in enumerate(events)), key=lambda e: e[0])
        self.inclusive_end = inclusive_end
        self.echo_form = echo_form
        self.max_window = timedelta(days=max_window_days)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._cursors = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="windowed-server", daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self) -> dict[str, str]:
        return {
            "AMPERITY_TENANT": TENANT,
            "AMPERITY_BASE_URL": self.base_url,
            "AMPERITY_CLIENT_ID": CLIENT_ID,
            "AMPERITY_CLIENT_SECRET": CLIENT_SECRET,
        }

    def windows_asked(self, path: str, low: str, high: str) -> list[tuple[datetime, datetime]]:
        return [(_parse(q[low]), _parse(q[high])) for p, q in self.requests if p == path]

    # -- HTTP --

    def _within(self, when: datetime, start: datetime, end: datetime) -> bool:
        return start <= when <= end if self.inclusive_end else start <= when < end

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.text()
        form = await request.post()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            # Some gateways echo what they refused, secrets included.
            message = (
                f"invalid client credentials in {body}" if self.echo_form else "invalid client credentials"
            )
            return web.json_response({"status": 401, "message": message}, status=401)
        return web.json_response(
            {"access_token": "windowed-access-token", "expires_in": 3600, "token_type": "Bearer"}
        )

    def _window(
        self, request: web.Request, low: str, high: str, required: bool
    ) -> tuple[datetime, datetime] | web.Response:
        """The request's window (recorded, after its token is checked), or the error answer."""
        self.requests.append((request.path.removeprefix("/api"), dict(request.query)))
        if request.headers.get("Authorization") != "Bearer windowed-access-token":
            return web.json_response({"status": 401, "message": "no token"}, status=401)
        query = request.query
        if low not in query or high not in query:
            if required:
                return web.json_response(
                    {"status": 400, "message": f"{low} and {high} are required"}, status=400
                )
            return datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        start, end = _parse(query[low]), _parse(query[high])
        if required and end - start > self.max_window:
            return web.json_response(
                {"status": 400, "message": "the window is longer than 7 days"}, status=400
            )
        return start, end

    async def _ingest_jobs(self, request: web.Request) -> web.Response:
        window = self._window(request, "created_from", "created_to", required=True)
        if isinstance(window, web.Response):
            return window
        data = [item for when, item in self.jobs if self._within(when, *window)]
        # A cursor that looks usable and is not: following it would return the same jobs again.
        return web.json_response({"data": data, "next_token": f"unusable-{next(self._cursors)}"})

    async def _events(self, request: web.Request) -> web.Response:
        window = self._window(request, "happened_from", "happened_to", required=False)
        if isinstance(window, web.Response):
            return window
        matching = [item for when, item in self.events if self._within(when, *window)]
        offset = int(request.query.get("next_token", "0"))
        limit = int(request.query.get("limit", "25"))
        body: dict[str, Any] = {"data": matching[offset : offset + limit]}
        if offset + limit < len(matching):
            body["next_token"] = str(offset + limit)
        return web.json_response(body)

    # -- lifetime --

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/v0/oauth2/token", self._token)
        app.router.add_get("/api/ingest/jobs", self._ingest_jobs)
        app.router.add_get("/api/audit-events", self._events)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
