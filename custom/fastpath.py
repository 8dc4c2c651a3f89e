"""The client's calls without httpx: requests built in one piece and sent over aiohttp.

A generated operation describes its request as keyword arguments for ``httpx.AsyncClient.request``
(method, a path already quoted, query parameters already serialized, a JSON body). httpx would
parse the URL, merge it with the base URL and the query, and build header objects; here the URL is
the operation's API base URL (``ApiBases.url_for``, where the transport would place the request),
the path and ``urlencode`` of the parameters (the query httpx would send), and the headers a plain
dict. The request then goes through the same objects as every httpx request: the
client's ``AmperityAuth`` (its tokens, the replay after a 401) and ``AmperityTransport`` (routes,
headers, limits, bounds, retries, statistics), over ``fastwire.AiohttpWire``.

The fast path runs on asyncio with the client's default connections; anything else (trio, a
transport given by the caller, a request with files or form data) takes the httpx path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import sniffio
import yarl

from .auth import AmperityAuth
from .bases import ApiBases
from .calls import CallContext
from .fastwire import AiohttpWire, Answer, WireRequest
from .operations import OperationInfo
from .transport import AmperityTransport

# What a generated function's request may hold for the fast path to send it.
_SENDABLE = frozenset({"method", "url", "params", "json", "headers"})
# The characters quote_plus leaves as they are.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*\Z")


def _query_value(value: Any) -> str:
    # What httpx sends for a query value.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _quoted(text: str) -> str:
    # What urlencode does to each key and value; most are plain (limits, ids, cursors) and stay.
    return text if _PLAIN.match(text) else quote_plus(text)


def query_string(params: Mapping[str, Any]) -> str:
    """The query httpx builds from ``params`` (``urlencode``): lists repeat their key, booleans
    are lower case."""
    parts: list[str] = []
    for key, value in params.items():
        name = _quoted(key)
        if isinstance(value, list | tuple):
            parts.extend(f"{name}={_quoted(_query_value(v))}" for v in value)
        else:
            parts.append(f"{name}={_quoted(_query_value(value))}")
    return "&".join(parts)


def json_body(value: Any) -> bytes:
    """A JSON request body, byte for byte as httpx encodes ``json=``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class FastPath:
    """Sends a generated operation's request over aiohttp through the client's auth and transport.

    ``session`` gives the client's aiohttp session; ``bases`` places each API's paths at its
    configured base URL; ``headers`` go on every request (the user agent).
    """

    def __init__(
        self,
        *,
        bases: ApiBases,
        transport: AmperityTransport,
        auth: AmperityAuth,
        session: Callable[[], aiohttp.ClientSession],
        headers: Mapping[str, str],
    ) -> None:
        self._bases = bases
        self._prefixes: dict[str, tuple[str, str]] = {}
        self._transport = transport
        self._auth = auth
        self._wire = AiohttpWire(session)
        self._headers = dict(headers)
        self._on_asyncio: bool | None = None

    def takes(self, request: Mapping[str, Any]) -> bool:
        """Whether this path can send ``request`` (a generated function's request arguments)."""
        if self._on_asyncio is None:
            # A client's connections belong to one event loop: the backend is asked once.
            self._on_asyncio = sniffio.current_async_library() == "asyncio"
        return self._on_asyncio and request.keys() <= _SENDABLE

    def _url(self, operation: OperationInfo, path: str) -> str:
        """``path`` at its API's configured base URL; an operation's own path (without its
        arguments) is placed once, the arguments' part appended as the generated code quoted it."""
        known = self._prefixes.get(operation.operation_id)
        if known is None:
            template = operation.path
            static = template[: template.index("{")] if "{" in template else template
            known = (static, self._bases.url_for(operation.api, static))
            self._prefixes[operation.operation_id] = known
        static, placed = known
        if path.startswith(static):
            return placed + path[len(static) :]
        return self._bases.url_for(operation.api, path)

    def build(self, operation: OperationInfo, request: Mapping[str, Any]) -> WireRequest:
        """The wire request of ``operation`` for a generated function's request arguments."""
        route = self._transport.route_of(operation)
        params = request.get("params")
        url = self._url(operation, request["url"])
        if params:
            url += "?" + query_string(params)
        headers = {**self._headers, **route.headers}
        extra = request.get("headers")
        if extra:
            headers.update(extra)
        body = None
        if "json" in request:
            body = json_body(request["json"])
            headers.setdefault("Content-Type", "application/json")
        wire_request = WireRequest(request["method"].upper(), yarl.URL(url, encoded=True), headers, body)
        self._transport.admit(route, wire_request, 0 if body is None else len(body))
        return wire_request

    async def send(
        self, operation: OperationInfo, request: Mapping[str, Any], deadline: float | None = None
    ) -> Answer:
        """The answer to ``request``, body read: tokens, limits, bounds, retries and the replay
        after a 401 as on the httpx path; ``deadline`` (seconds) replaces the client's for this
        call. A non-2xx answer is returned for the caller to raise."""
        wire_request = self.build(operation, request)
        transport = self._transport
        route = transport.route_of(operation)
        auth = self._auth
        context = None if deadline is None else CallContext.start(deadline, auth.refresher.clock)
        tokens = auth.tokens_for(wire_request, context)
        await tokens.start()
        answer = await transport.exchange(wire_request, route, tokens.context, self._wire)
        if answer.status_code == 401 and await tokens.replay_after_401():
            answer = await transport.exchange(wire_request, route, tokens.context, self._wire)
        return answer
