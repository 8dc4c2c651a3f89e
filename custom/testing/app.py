"""The aiohttp application: authentication, versions, rate limits and faults around the operations.

Order of checks for an API request, as a gateway in front of the real API would apply them:
route (404/405) -> bearer token (401) -> amperity-tenant (400 missing, 401 other tenant) ->
api-version (400) -> rate limit (429) -> injected faults -> the operation (400/404/409/2xx).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .checks import RequestError, body_problem, read_query
from .config import FakeTenantConfig, http_date
from .cursors import CursorCodec
from .data import Collection, CollectionModel, Dataset
from .faults import DROP, FaultInjector
from .limits import WindowLimiter
from .pages import build_page, facet_values
from .spec import ACTION, CREATE, GET, LIST, Operation, TenantSpec
from .tokens import TokenAuthority

API_PREFIX = "/api"
_JSON = "application/json"
_STOP_VERBS = ("stop", "cancel", "abort")


class Stats:
    """Counters of what the tenant answered, served at ``GET /_fake/stats``."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.rate_limited = 0
        self.unauthorized = 0
        self.injected_errors = 0
        self.dropped = 0
        self.token_requests = 0
        self.tokens_issued = 0
        self.revocations = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_operation": dict(self.by_operation),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "rate_limited": self.rate_limited,
            "unauthorized": self.unauthorized,
            "injected_errors": self.injected_errors,
            "dropped": self.dropped,
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "revocations": self.revocations,
        }


class PageCache:
    """Serialized pages by request, bounded in bytes; a page is rebuilt only after its collection changes."""

    def __init__(self, max_bytes: int) -> None:
        self._pages: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, key: tuple[str, int]) -> bytes | None:
        body = self._pages.get(key)
        if body is not None:
            self._pages.move_to_end(key)
        return body

    def put(self, key: tuple[str, int], body: bytes) -> None:
        self._pages[key] = body
        self._bytes += len(body)
        while self._bytes > self._max and self._pages:
            _, old = self._pages.popitem(last=False)
            self._bytes -= len(old)


class TenantApp:
    def __init__(self, config: FakeTenantConfig, spec: TenantSpec | None = None) -> None:
        self.config = config
        self.spec = spec or TenantSpec.load(config.spec_path)
        secret = hashlib.sha256(f"fake-tenant:{config.seed}:{config.tenant}".encode()).digest()
        self.tokens = TokenAuthority(secret, config.tenant, config.token_lifetime, config.clock)
        self.cursors = CursorCodec(secret[::-1])
        self.dataset = Dataset(
            self.spec,
            seed=config.seed,
            tenant=config.tenant,
            start_ms=int(config.time_start.timestamp() * 1000),
            end_ms=int(config.time_end.timestamp() * 1000),
            size_for=self._size_for,
        )
        self._singletons: dict[str, Collection] = {}
        self.stats = Stats()
        self.faults = FaultInjector(config)
        self.limiters = {
            api: WindowLimiter(
                config.profile_rate if api == "profile" else config.control_plane_rate,
                config.rate_window,
                config.clock,
            )
            for api in self.spec.api_versions
        }
        self.pages = PageCache(256 * 1024 * 1024)
        self._routes: dict[tuple[str, str], tuple[Operation | None, tuple[str, ...], bool]] = {}
        self._request_ids = 0
        headers: dict[str, str] = {}
        if config.deprecation is not None:
            headers["Deprecation"] = http_date(config.deprecation)
        if config.sunset is not None:
            headers["Sunset"] = http_date(config.sunset)
        self._extra_headers = headers

    def _size_for(self, op: Operation, has_children: bool, nested: bool) -> int:
        c = self.config
        if op.operation_id in c.rows_by_operation:
            return c.rows_by_operation[op.operation_id]
        if has_children:
            return c.indexes
        return c.profiles_per_index if nested else c.rows

    def build(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(API_PREFIX + "/v0/oauth2/token", self.oauth_token)
        app.router.add_post(API_PREFIX + "/v0/admin/api-keys/{key}/tokens", self.issuer_token)
        app.router.add_get("/_fake/stats", self.fake_stats)
        app.router.add_post("/_fake/revoke", self.fake_revoke)
        app.router.add_get("/_fake/facets", self.fake_facets)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.api)
        return app

    # -- responses -------------------------------------------------------------------------------

    def _json(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
        self.stats.by_status[status] += 1
        merged = {**self._extra_headers, **headers} if headers else self._extra_headers
        return web.Response(status=status, body=body, content_type=_JSON, headers=merged)

    def error(self, status: int, message: str) -> web.Response:
        """The documented error body: {status, message, request_id}."""
        self._request_ids += 1
        body = {"status": status, "message": message, "request_id": f"req-{self._request_ids:010d}"}
        if status == 401:
            self.stats.unauthorized += 1
        return self._json(status, orjson.dumps(body))

    # -- token endpoints -------------------------------------------------------------------------

    def _tenant_problem(self, request: web.Request) -> web.Response | None:
        tenant = request.headers.get("X-Amperity-Tenant")
        if not tenant:
            return self.error(400, "the X-Amperity-Tenant header is required")
        if tenant != self.config.tenant:
            return self.error(401, f"unknown tenant {tenant!r}")
        return None

    def _token_body(self, subject: str, lifetime: float | None = None) -> web.Response:
        token, seconds = self.tokens.issue(subject, lifetime)
        self.stats.tokens_issued += 1
        body = {
            "access_token": token,
            "expires_in": int(seconds) if seconds == int(seconds) else seconds,
            "token_type": "Bearer",
        }
        return self._json(200, orjson.dumps(body))

    async def oauth_token(self, request: web.Request) -> web.Response:
        self.stats.token_requests += 1
        problem = self._tenant_problem(request)
        if problem is not None:
            return problem
        if request.content_type != "application/x-www-form-urlencoded":
            return self.error(
                400, "the token request must be form-encoded (application/x-www-form-urlencoded)"
            )
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "grant_type must be client_credentials")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if client_id != self.config.client_id or secret != self.config.client_secret:
            return self.error(401, "invalid client credentials")
        return self._token_body(str(client_id))

    async def issuer_token(self, request: web.Request) -> web.Response:
        self.stats.token_requests += 1
        problem = self._tenant_problem(request)
        if problem is not None:
            return problem
        if request.match_info["key"] != self.config.api_key_id:
            return self.error(404, f"no API key {request.match_info['key']!r} in this tenant")
        if request.headers.get("Authorization", "") != f"Bearer {self.config.issuer_token}":
            return self.error(401, "the token issuer requires its bearer token")
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return self.error(400, "the request body must be JSON with an expires-at date-time")
        expires_at = body.get("expires-at") if isinstance(body, dict) else None
        try:
            when = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
        except ValueError:
            return self.error(400, f"expires-at must be an ISO-8601 date-time, got {expires_at!r}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - self.config.clock()
        if seconds <= 0:
            return self.error(400, "expires-at must be in the future")
        return self._token_body(self.config.api_key_id, seconds)

    # -- test hooks ------------------------------------------------------------------------------

    async def fake_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats.snapshot()), content_type=_JSON)

    async def fake_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return web.Response(body=orjson.dumps({"revoked": True}), content_type=_JSON)

    async def fake_facets(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.facets()), content_type=_JSON)

    def facets(self) -> dict[str, dict[str, list[str]]]:
        """Per list operation, the values of filters that match no item field (hidden facets)."""
        out: dict[str, dict[str, list[str]]] = {}
        for model in self.dataset.models.values():
            props = model.item_schema.get("properties") or {}
            windows = {name for pair in model.op.time_windows for name in pair}
            for name, param in model.op.query.items():
                if name in ("limit", "next_token", "with_total") or name in windows or param.deep_object:
                    continue
                if name not in props:
                    out.setdefault(model.op.operation_id, {})[name] = facet_values(model, name)
        return out

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()
        self.stats.revocations += 1

    # -- the API ---------------------------------------------------------------------------------

    def _match(self, method: str, path: str) -> tuple[Operation | None, tuple[str, ...], bool]:
        key = (method, path)
        found = self._routes.get(key)
        if found is None:
            found = self.spec.match(method, path)
            if len(self._routes) > 20_000:
                self._routes.clear()
            self._routes[key] = found
        return found

    async def api(self, request: web.Request) -> web.StreamResponse:
        relative = request.path[len(API_PREFIX) :] or "/"
        op, values, path_known = self._match(request.method, relative)
        if op is None:
            if path_known:
                return self.error(405, f"{request.method} is not allowed on {relative}")
            return self.error(404, f"no operation at {request.method} {relative}")
        stats = self.stats
        stats.requests += 1
        stats.by_operation[op.operation_id] += 1
        if self.faults.should_revoke(stats.requests - 1):
            self.revoke_tokens()

        authorization = request.headers.get("Authorization")
        if not authorization or not authorization.startswith("Bearer "):
            return self.error(401, "an Authorization: Bearer <access token> header is required")
        problem = self.tokens.problem(authorization[7:])
        if problem is not None:
            return self.error(401, problem)
        tenant = request.headers.get("amperity-tenant")
        if not tenant:
            return self.error(400, "the amperity-tenant header is required")
        if tenant != self.config.tenant:
            return self.error(401, f"the access token is not valid for tenant {tenant!r}")
        version = request.headers.get("api-version")
        supported = self.spec.api_versions.get(op.api, ())
        if not version:
            return self.error(400, f"the api-version header is required (supported: {', '.join(supported)})")
        if version not in supported:
            return self.error(
                400,
                f"unsupported api-version {version!r} for the {op.api} API (supported: {', '.join(supported)})",
            )
        if op.stability != "stable" and version != op.stability:
            return self.error(
                400, f"{op.method} {op.path} exists only in api-version {op.stability!r}, not {version!r}"
            )
        if self.config.rate_limits and not self.limiters[op.api].allow():
            stats.rate_limited += 1
            return self.error(429, f"rate limit exceeded for the {op.api} API")
        if self.faults.active:
            delay = self.faults.delay()
            if delay:
                await asyncio.sleep(delay)
            outcome = self.faults.outcome()
            if outcome == DROP:
                stats.dropped += 1
                if request.transport is not None:
                    request.transport.abort()
                # Nothing reaches the client: the connection is gone before this is written.
                return web.Response(status=500)
            if outcome is not None:
                stats.injected_errors += 1
                return self.error(int(outcome), "injected fault: the service is temporarily unavailable")
        try:
            return await self._operate(request, op, values)
        except RequestError as exc:
            return self.error(exc.status, exc.message)

    async def _operate(self, request: web.Request, op: Operation, values: tuple[str, ...]) -> web.Response:
        if op.role == LIST:
            collection = self.dataset.collection(op.path, values)
            if collection is None:
                raise RequestError(_not_found(self.dataset.models[op.path].parent, values[-1:]), 404)
            key = (request.path_qs, collection.version)
            body = self.pages.get(key)
            if body is None:
                plain, deep = read_query(op, list(request.query.items()))
                body = build_page(
                    op,
                    collection,
                    plain,
                    deep,
                    default_limit=self.config.default_limit,
                    max_limit=self.config.max_limit,
                    codec=self.cursors,
                )
                self.pages.put(key, body)
            return self._json(op.success_status, body)
        read_query(op, list(request.query.items()))
        if op.role in (GET, ACTION):
            assert op.collection is not None
            collection = self.dataset.collection(op.collection, values[:-1])
            model = self.dataset.models[op.collection]
            if collection is None:
                raise RequestError(_not_found(model.parent, values[-2:-1]), 404)
            index = collection.index_of(values[-1])
            if index is None:
                raise RequestError(_not_found(model, values[-1:]), 404)
            stopping = op.role == ACTION and (op.verb or "").lower() in _STOP_VERBS
            if stopping and not collection.stop(index, self._now_ms()):
                state = collection.state_of(index)
                raise RequestError(
                    f"{values[-1]} has already finished (state {state!r}); it cannot be stopped", 409
                )
            return self._json(op.success_status, orjson.dumps(collection.item(index)))
        if op.role == CREATE:
            assert op.collection is not None
            await self._check_body(request, op)
            collection = self.dataset.collection(op.collection, values)
            if collection is None:
                raise RequestError(_not_found(self.dataset.models[op.collection].parent, values[-1:]), 404)
            index = collection.create(self._now_ms())
            return self._json(op.success_status, orjson.dumps(collection.item(index)))
        await self._check_body(request, op)
        return self._json(op.success_status, orjson.dumps(self._instance(op)))

    async def _check_body(self, request: web.Request, op: Operation) -> None:
        if op.request_schema is None:
            return
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            raise RequestError(f"the body of {op.method} {op.path} must be JSON") from None
        problem = body_problem(op.request_schema, body)
        if problem:
            raise RequestError(problem)

    def _instance(self, op: Operation) -> Any:
        """An instance of the response schema of an operation that reads or changes no collection."""
        if op.response_schema is None:
            return {}
        collection = self._singletons.get(op.operation_id)
        if collection is None:
            model = CollectionModel(
                op,
                op.response_schema,
                seed=self.config.seed,
                size=1,
                tenant=self.config.tenant,
                start_ms=int(self.config.time_start.timestamp() * 1000),
                end_ms=int(self.config.time_end.timestamp() * 1000),
                parent=None,
                references={
                    m.id_prefix: m for m in self.dataset.models.values() if m.id_prefix and m.parent is None
                },
                reference_prefixes=frozenset(),
                scopes=1,
            )
            collection = self._singletons[op.operation_id] = Collection(model, 0, None)
        return collection.item(0)

    def _now_ms(self) -> int:
        return int(self.config.clock() * 1000)


def _not_found(model: CollectionModel | None, ids: tuple[str, ...]) -> str:
    what = model.op.item_name if model is not None and model.op.item_name else "item"
    return f"no {what} with id {ids[0]!r}" if ids else f"no such {what}"
