"""The aiohttp application: authentication, versions, rate limits and faults around the operations.

Order of checks for an API request, as a gateway in front of the real API would apply them:
route (404/405) -> bearer token (401) -> amperity-tenant (400 missing, 401 other tenant) ->
api-version (400) -> rate limit (429) -> injected faults -> the operation (400/404/409/2xx).
The answer then goes out on the wire as the operation's wire faults say (:mod:`.wire`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .checks import RequestError, body_problem, read_query
from .config import FakeTenantConfig, http_date
from .cursors import CursorCodec
from .data import Collection, CollectionModel, Dataset
from .faults import DROP, ISSUER_TOKEN, OAUTH_TOKEN, FaultInjector, FaultPlan
from .limits import WindowLimiter
from .pages import build_page, facet_values
from .profile_store import ProfileStore
from .shaping import Shape, item_shape, view_fields
from .spec import ACTION, CREATE, GET, LIST, STORE, Operation, TenantSpec
from .store_routes import StoreRoutes
from .tokens import TokenAuthority
from .wire import AlreadySent, Wire

API_PREFIX = "/api"
"""The control-plane API's base path, under which the token endpoints (not in the spec) live."""
_JSON = "application/json"
_STOP_VERBS = ("stop", "cancel", "abort")
_NOT_UTF8 = b"\xff\xfe\xc3("
"""Bytes no UTF-8 decoder accepts: invalid lead bytes, then a lead byte without its continuation."""
_TOKEN_PATHS = {
    OAUTH_TOKEN: API_PREFIX + "/v0/oauth2/token",
    ISSUER_TOKEN: API_PREFIX + "/v0/admin/api-keys/{key}/tokens",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def quiet_disconnects(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A client that leaves mid-request is no error of the tenant's: nothing is logged, nothing answered."""
    try:
        return await handler(request)
    except ConnectionError:
        return AlreadySent()


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
        self.plan = FaultPlan(config, self.spec)
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
        rates = {"profile": config.profile_rate, "realtime": config.realtime_rate}
        self.limiters = {
            api: WindowLimiter(rates.get(api, config.control_plane_rate), config.rate_window, config.clock)
            for api in self.spec.api_versions
        }
        self.profile_store = ProfileStore(config)
        self.store_routes = StoreRoutes(self.spec, self.profile_store, config, self.cursors)
        self.pages = PageCache(256 * 1024 * 1024)
        self.wire = Wire()
        self._routes: dict[tuple[str, str], tuple[Operation | None, tuple[str, ...], tuple[str, ...]]] = {}
        self._request_ids = 0
        self._cursor_serials = itertools.count(1)
        headers: dict[str, str] = {}
        if config.deprecation is not None:
            headers["Deprecation"] = http_date(config.deprecation)
        if config.sunset is not None:
            headers["Sunset"] = http_date(config.sunset)
        self._extra_headers = headers

    def _size_for(self, op: Operation, has_children: bool, nested: bool) -> int:
        c = self.config
        if op.operation_id in self.plan.rows:
            return self.plan.rows[op.operation_id]
        if has_children:
            return c.indexes
        return c.profiles_per_index if nested else c.rows

    def build(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[quiet_disconnects])
        app.router.add_route("*", _TOKEN_PATHS[OAUTH_TOKEN], self.oauth_token)
        app.router.add_route("*", _TOKEN_PATHS[ISSUER_TOKEN], self.issuer_token)
        app.router.add_get("/_fake/stats", self.fake_stats)
        app.router.add_post("/_fake/revoke", self.fake_revoke)
        app.router.add_get("/_fake/facets", self.fake_facets)
        # Each API's paths under its own base path, as the spec writes them (/api/..., /prof/...).
        for base in sorted(set(self.spec.base_paths.values())):
            app.router.add_route("*", base + "/{tail:.*}", self.api)
        return app

    # -- responses -------------------------------------------------------------------------------

    def _json(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
        self.stats.by_status[status] += 1
        merged = {**self._extra_headers, **headers} if headers else self._extra_headers
        return web.Response(status=status, body=body, content_type=_JSON, headers=merged)

    def error(
        self,
        status: int,
        message: str,
        *,
        request: web.Request | None = None,
        operation: str | None = None,
        headers: Mapping[str, str] | None = None,
        echo: str | None = None,
    ) -> web.Response:
        """The documented error body: {status, message, request_id}.

        With ``echo_secrets`` the message repeats what the request sent (``echo``, else its
        Authorization header), as some gateways do; ``operation`` picks the per-operation faults.
        """
        self._request_ids += 1
        if self.config.echo_secrets:
            sent = echo if echo is not None else request.headers.get("Authorization") if request else None
            if sent:
                message = f"{message} (request: {'Authorization: ' if echo is None else ''}{sent})"
        body = orjson.dumps(
            {"status": status, "message": message, "request_id": f"req-{self._request_ids:010d}"}
        )
        if operation in self.plan.invalid_utf8_errors:
            body = body.replace(b'"message":"', b'"message":"' + _NOT_UTF8, 1)
        if status == 401:
            self.stats.unauthorized += 1
        if status == 429 and self.config.retry_after is not None:
            headers = {**(headers or {}), "Retry-After": self.config.retry_after}
        return self._json(status, body, headers)

    async def _deliver(
        self, request: web.Request, operation: str, response: web.StreamResponse
    ) -> web.StreamResponse:
        if not isinstance(response, web.Response):
            return response  # dropped, or already written
        return await self.wire.deliver(request, response, self.plan.delivery(operation))

    def _wrong_method(self, request: web.Request, path: str, allowed: tuple[str, ...]) -> web.Response:
        return self.error(
            405,
            f"{request.method} is not allowed on {path} (allowed: {', '.join(allowed)})",
            request=request,
            headers={"Allow": ", ".join(allowed)},
        )

    # -- token endpoints -------------------------------------------------------------------------

    def _tenant_problem(self, request: web.Request, endpoint: str, echo: str | None) -> web.Response | None:
        tenant = request.headers.get("X-Amperity-Tenant")
        if not tenant:
            return self.error(
                400,
                "the X-Amperity-Tenant header is required",
                request=request,
                operation=endpoint,
                echo=echo,
            )
        if tenant != self.config.tenant:
            return self.error(
                401, f"unknown tenant {tenant!r}", request=request, operation=endpoint, echo=echo
            )
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

    async def oauth_token(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return self._wrong_method(request, request.path[len(API_PREFIX) :], ("POST",))
        self.stats.token_requests += 1
        return await self._deliver(request, OAUTH_TOKEN, await self._oauth_answer(request))

    async def _oauth_answer(self, request: web.Request) -> web.Response:
        # What a careless gateway puts in its errors: the form as sent, client_secret and all.
        sent = (await request.read()).decode("latin-1") if self.config.echo_secrets else None

        def refuse(status: int, message: str) -> web.Response:
            return self.error(status, message, request=request, operation=OAUTH_TOKEN, echo=sent)

        problem = self._tenant_problem(request, OAUTH_TOKEN, sent)
        if problem is not None:
            return problem
        if request.content_type != "application/x-www-form-urlencoded":
            return refuse(400, "the token request must be form-encoded (application/x-www-form-urlencoded)")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return refuse(400, "grant_type must be client_credentials")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if client_id != self.config.client_id or secret != self.config.client_secret:
            return refuse(401, "invalid client credentials")
        return self._token_body(str(client_id))

    async def issuer_token(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return self._wrong_method(request, request.path[len(API_PREFIX) :], ("POST",))
        self.stats.token_requests += 1
        return await self._deliver(request, ISSUER_TOKEN, await self._issuer_answer(request))

    async def _issuer_answer(self, request: web.Request) -> web.Response:
        def refuse(status: int, message: str) -> web.Response:
            return self.error(status, message, request=request, operation=ISSUER_TOKEN)

        problem = self._tenant_problem(request, ISSUER_TOKEN, None)
        if problem is not None:
            return problem
        if request.match_info["key"] != self.config.api_key_id:
            return refuse(404, f"no API key {request.match_info['key']!r} in this tenant")
        if request.headers.get("Authorization", "") != f"Bearer {self.config.issuer_token}":
            return refuse(401, "the token issuer requires its bearer token")
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return refuse(400, "the request body must be JSON with an expires-at date-time")
        expires_at = body.get("expires-at") if isinstance(body, dict) else None
        try:
            when = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
        except ValueError:
            return refuse(400, f"expires-at must be an ISO-8601 date-time, got {expires_at!r}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - self.config.clock()
        if seconds <= 0:
            return refuse(400, "expires-at must be in the future")
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

    def _match(self, method: str, path: str) -> tuple[Operation | None, tuple[str, ...], tuple[str, ...]]:
        key = (method, path)
        found = self._routes.get(key)
        if found is None:
            found = self.spec.match(method, path)
            if len(self._routes) > 20_000:
                self._routes.clear()
            self._routes[key] = found
        return found

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        op, values, allowed = self._match(request.method, path)
        if op is None:
            if allowed:
                return self._wrong_method(request, path, allowed)
            return self.error(404, f"no operation at {request.method} {path}", request=request)
        answer = await self._answer(request, op, values)
        return await self._deliver(request, op.operation_id, answer)

    async def _answer(
        self, request: web.Request, op: Operation, values: tuple[str, ...]
    ) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.by_operation[op.operation_id] += 1
        if self.faults.should_revoke(stats.requests - 1):
            self.revoke_tokens()

        def refuse(status: int, message: str) -> web.Response:
            return self.error(status, message, request=request, operation=op.operation_id)

        authorization = request.headers.get("Authorization")
        if not authorization or not authorization.startswith("Bearer "):
            return refuse(401, "an Authorization: Bearer <access token> header is required")
        problem = self.tokens.problem(authorization[7:])
        if problem is not None:
            return refuse(401, problem)
        tenant = request.headers.get("amperity-tenant")
        if not tenant:
            return refuse(400, "the amperity-tenant header is required")
        if tenant != self.config.tenant:
            return refuse(401, f"the access token is not valid for tenant {tenant!r}")
        if op.version_header:
            problem = self._version_problem(op, request.headers.get("api-version"))
            if problem is not None:
                return refuse(400, problem)
        if self.config.rate_limits and not self.limiters[op.api].allow():
            stats.rate_limited += 1
            return refuse(429, f"rate limit exceeded for the {op.api} API")
        if self.faults.active:
            delay = self.faults.delay()
            if delay:
                await asyncio.sleep(delay)
            outcome = self.faults.outcome()
            if outcome == DROP:
                stats.dropped += 1
                if request.transport is not None:
                    request.transport.abort()
                return AlreadySent()
            if outcome is not None:
                stats.injected_errors += 1
                return refuse(int(outcome), "injected fault: the service is temporarily unavailable")
        scripted = self.plan.scripted_failure(op.operation_id)
        if scripted is not None:
            stats.injected_errors += 1
            return refuse(scripted, f"injected fault: {op.operation_id} answers {scripted} (fail_first)")
        try:
            return await self._operate(request, op, values)
        except RequestError as exc:
            return refuse(exc.status, exc.message)

    def _version_problem(self, op: Operation, version: str | None) -> str | None:
        supported = self.spec.api_versions.get(op.api, ())
        if not version:
            return f"the api-version header is required (supported: {', '.join(supported)})"
        if version not in supported:
            listed = ", ".join(supported)
            return f"unsupported api-version {version!r} for the {op.api} API (supported: {listed})"
        if op.stability != "stable" and version != op.stability:
            return f"{op.method} {op.path} exists only in api-version {op.stability!r}, not {version!r}"
        return None

    async def _operate(self, request: web.Request, op: Operation, values: tuple[str, ...]) -> web.Response:
        if op.role == LIST:
            return self._list(request, op, values)
        plain, objects = read_query(op, list(request.query.items()))
        if op.role == STORE:
            answer = await self.store_routes.answer(request, op, values, plain, objects)
            if answer.body is None:
                self.stats.by_status[answer.status] += 1
                return web.Response(status=answer.status, headers={**self._extra_headers, **answer.headers})
            return self._item(op, plain, answer.body, answer.headers)
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
            return self._item(op, plain, collection.item(index))
        if op.role == CREATE:
            assert op.collection is not None
            await self._check_body(request, op)
            collection = self.dataset.collection(op.collection, values)
            if collection is None:
                raise RequestError(_not_found(self.dataset.models[op.collection].parent, values[-1:]), 404)
            index = collection.create(self._now_ms())
            return self._item(op, plain, collection.item(index))
        await self._check_body(request, op)
        return self._item(op, plain, self._instance(op))

    def _list(self, request: web.Request, op: Operation, values: tuple[str, ...]) -> web.Response:
        collection = self.dataset.collection(op.path, values)
        if collection is None:
            raise RequestError(_not_found(self.dataset.models[op.path].parent, values[-1:]), 404)
        fresh_cursors = self.plan.hands_out_new_cursors(op.operation_id)
        key = (request.path_qs, collection.version)
        body = None if fresh_cursors else self.pages.get(key)
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
                faults=self.plan.list_faults(op.operation_id),
                serial=next(self._cursor_serials) if fresh_cursors else 0,
                shape=self._shape(op, collection.model.item_schema, plain),
            )
            if not fresh_cursors:
                self.pages.put(key, body)
        return self._json(op.success_status, body)

    def _shape(self, op: Operation, schema: dict[str, Any], plain: Mapping[str, str]) -> Shape | None:
        return item_shape(
            schema,
            nulls=op.operation_id in self.plan.null_optional_fields,
            fields=view_fields(op, plain) if self.config.views else None,
        )

    def _item(
        self, op: Operation, plain: Mapping[str, str], item: Any, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        shape = self._shape(op, op.response_schema or {}, plain) if isinstance(item, dict) else None
        return self._json(op.success_status, orjson.dumps(item if shape is None else shape(item)), headers)

    async def _check_body(self, request: web.Request, op: Operation) -> None:
        if op.request_schema is None:
            return
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            raise RequestError(f"the body of {op.method} {op.path} must be JSON") from None
        problem = body_problem(op.request_schema, body, closed=self.config.closed_request_bodies)
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
