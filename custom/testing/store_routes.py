"""Requests to the operations the spec marks with ``x-amperity-profile-store``, answered from the store.

Each marker value is an action of :class:`~.profile_store.ProfileStore`; its path parameters come in
the order the marker documents (stream; collection; collection and profile; segment). What else an
action reads is found by shape: the keys of a lookup are the form-style object of the query or the
body property of that schema, its enrich flag the boolean parameter or body property, and the event
of ``publish`` the whole body, checked against the operation's documented limits first (411, 413,
415, 400) as the Real-time API's pages list them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import attrs
import orjson
from aiohttp import web

from .checks import RequestError, parse_datetime_ms
from .config import FakeTenantConfig
from .cursors import CursorCodec, CursorError
from .profile_store import DROPPED, ProfileStore
from .spec import Operation, Schema, TenantSpec

_JSON = "application/json"


@attrs.frozen
class StoreAnswer:
    status: int
    body: Any = None
    """The JSON body, or None for an answer without one."""
    headers: Mapping[str, str] = attrs.field(factory=dict)


def _form_property(schema: Schema | None) -> str | None:
    """The body property holding a form-style object (a lookup's keys), if the schema has one."""
    for name, member in ((schema or {}).get("properties") or {}).items():
        if (member or {}).get("x-amperity-query-style") == "form":
            return str(name)
    return None


def _flag(op: Operation, plain: Mapping[str, str], body: Mapping[str, Any] | None) -> bool:
    """The operation's boolean switch (enrich), from the query or the body."""
    for name, param in op.query.items():
        if param.schema.get("type") == "boolean" and name in plain:
            return plain[name] == "true"
    for name, member in ((op.request_schema or {}).get("properties") or {}).items():
        if (member or {}).get("type") == "boolean" and body is not None and isinstance(body.get(name), bool):
            return bool(body[name])
    return False


def _filled(template: str, values: Sequence[str]) -> str:
    """A path template with its parameters replaced by ``values``, in order, URL-encoded."""
    given = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: quote(next(given), safe=""), template)


class StoreRoutes:
    def __init__(
        self, spec: TenantSpec, store: ProfileStore, config: FakeTenantConfig, codec: CursorCodec
    ) -> None:
        self.store = store
        self.config = config
        self.codec = codec
        # Where a profile can be read again: the Location of a lookup's answer.
        self._profile_path = next((op.path for op in spec.operations if op.store_action == "profile"), None)

    async def answer(
        self,
        request: web.Request,
        op: Operation,
        values: tuple[str, ...],
        plain: Mapping[str, str],
        objects: Mapping[str, Mapping[str, str]],
    ) -> StoreAnswer:
        """The answer of the store's action; raises RequestError (StoreError) with the status to refuse."""
        store, action = self.store, op.store_action
        now_ms = int(self.config.clock() * 1000)
        if action == "publish":
            store.check_stream(values[0])
            event = await self._event(request, op)
            outcome = store.publish(values[0], event, now_ms)
            return StoreAnswer(204 if outcome == DROPPED else 202)
        if action == "lookup":
            body = await self._json_body(request, op) if op.request_schema is not None else None
            keys = self._keys(op, objects, body)
            profile = store.lookup(values[0], keys)
            headers = {}
            if self._profile_path is not None:
                path = _filled(self._profile_path, (values[0], profile.profile_id))
                headers["Location"] = str(request.url.origin().with_path(path, encoded=True))
            rendered = store.render(values[0], profile, enrich=_flag(op, plain, body))
            return StoreAnswer(200, rendered, headers)
        if action == "profile":
            profile = store.profile(values[0], values[1])
            return StoreAnswer(200, store.render(values[0], profile, enrich=_flag(op, plain, None)))
        if action == "segment-members":
            members = store.members(values[0])
            shown = members[: self.config.default_limit]
            page: dict[str, Any] = {"data": [{"profile_id": p} for p in shown], "total": len(members)}
            if len(members) > len(shown):
                # A cursor the endpoint does not accept back, as its page documents.
                page["next_token"] = self.codec.encode(
                    self.codec.query_digest(("members", values[0])), len(shown)
                )
            return StoreAnswer(200, page)
        if action == "profile-segments":
            return StoreAnswer(200, self._page(op, values, plain, store.memberships(values[0], values[1])))
        if action == "stats":
            return StoreAnswer(200, store.stats(values[0]))
        if action == "history":
            after = parse_datetime_ms("after", plain["after"]) if "after" in plain else None
            before = parse_datetime_ms("before", plain["before"]) if "before" in plain else None
            return StoreAnswer(
                200, store.history(values[0], plain.get("scale", "day"), after, before, now_ms)
            )
        raise RequestError(
            f"{op.operation_id}: the fake tenant's profile store has no action {action!r}", 500
        )

    def _page(
        self, op: Operation, values: tuple[str, ...], plain: Mapping[str, str], items: list[dict[str, str]]
    ) -> dict[str, Any]:
        limit = int(plain.get("limit", self.config.default_limit))
        if not 1 <= limit <= self.config.max_limit:
            raise RequestError(f"limit must be within 1..{self.config.max_limit}, got {limit}")
        digest = self.codec.query_digest((op.operation_id, values, limit))
        offset = 0
        if "next_token" in plain:
            try:
                offset = self.codec.decode(plain["next_token"], digest)
            except CursorError as exc:
                raise RequestError(str(exc)) from None
        page: dict[str, Any] = {"data": items[offset : offset + limit], "total": len(items)}
        if offset + limit < len(items):
            page["next_token"] = self.codec.encode(digest, offset + limit)
        return page

    def _keys(
        self, op: Operation, objects: Mapping[str, Mapping[str, str]], body: Mapping[str, Any] | None
    ) -> dict[str, str]:
        spread = op.form_object
        if spread is not None:
            return dict(objects.get(spread, {}))
        name = _form_property(op.request_schema)
        given = body.get(name) if body is not None and name is not None else None
        if not isinstance(given, dict):
            return {}
        for key, value in given.items():
            if not isinstance(value, str):
                raise RequestError(f"body.{name}.{key} must be a string, got {value!r}")
        return dict(given)

    async def _json_body(self, request: web.Request, op: Operation) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise RequestError(f"the body of {op.method} {op.path} must be JSON") from None
        if not isinstance(body, dict):
            raise RequestError(f"the body of {op.method} {op.path} must be a JSON object")
        return body

    async def _event(self, request: web.Request, op: Operation) -> dict[str, Any]:
        """The event of a publish, after the checks its page lists, in the order a gateway makes them."""
        if request.content_length is None:
            raise RequestError("a Content-Length header is required (the body must not be chunked)", 411)
        limit = op.max_body_bytes
        if limit is not None and request.content_length > limit:
            raise RequestError(
                f"the event is {request.content_length} bytes; at most {limit} are accepted", 413
            )
        if request.content_type != _JSON:
            raise RequestError(f"Content-Type must be {_JSON}, got {request.content_type!r}", 415)
        return await self._json_body(request, op)
