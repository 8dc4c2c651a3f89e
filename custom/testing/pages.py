"""List requests: filters, cursors, limits and the page body."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .checks import RequestError, parse_datetime_ms
from .cursors import CursorCodec, CursorError
from .data import Collection, CollectionModel, Template, is_end_time, mix, salt_of_name
from .spec import PAGINATION_PARAMS, Operation

Predicate = Callable[[int], bool]
FACET_VALUES = 5


def facet_values(model: CollectionModel, param: str) -> list[str]:
    """The hidden values a filter parameter with no matching item field selects on."""
    example = str(model.op.query[param].schema.get("example") or f"{param[:3]}-0000000")
    template = Template(example)
    return [
        template(model.start_ms, mix(model.key ^ salt_of_name(f"facet:{param}") ^ k))
        for k in range(FACET_VALUES)
    ]


def _free_form_member(model: CollectionModel) -> str | None:
    for name, schema in (model.item_schema.get("properties") or {}).items():
        if schema.get("type", "object") == "object" and isinstance(schema.get("additionalProperties"), dict):
            return str(name)
    return None


def _missing(value: Any) -> bool:
    return value is None or value.__class__ is object


def build_page(
    op: Operation,
    collection: Collection,
    plain: Mapping[str, str],
    deep: Mapping[str, Mapping[str, str]],
    *,
    default_limit: int,
    max_limit: int,
    codec: CursorCodec,
) -> bytes:
    model = collection.model
    props = model.item_schema.get("properties") or {}
    limit = default_limit
    if "limit" in plain:
        limit = int(plain["limit"])
        if not 1 <= limit <= max_limit:
            raise RequestError(f"limit must be between 1 and {max_limit}, got {limit}")
    with_total = plain.get("with_total") == "true"

    lo, hi = 0, model.size
    predicates: list[Predicate] = []
    created_predicates: list[Predicate] = []
    windowed: set[str] = set()
    for start_name, end_name in op.time_windows:
        windowed.update((start_name, end_name))
        start = parse_datetime_ms(start_name, plain[start_name]) if start_name in plain else None
        end = parse_datetime_ms(end_name, plain[end_name]) if end_name in plain else None
        if start is not None and end is not None and start > end:
            raise RequestError(
                f"{start_name} ({plain[start_name]}) must not be after {end_name} ({plain[end_name]})"
            )
        if start is None and end is None:
            continue
        low = start if start is not None else -(1 << 62)
        high = end if end is not None else 1 << 62
        field = start_name[: -len("_from")] + "_at"
        if field in props and is_end_time(field):

            def ended_within(i: int, low: int = low, high: int = high) -> bool:
                value = collection.end_ms_of(i)
                return value is not None and low <= value < high

            predicates.append(ended_within)
            created_predicates.append(ended_within)
        else:
            if start is not None:
                lo = max(lo, model.first_at_or_after(start, collection.scope))
            if end is not None:
                hi = min(hi, model.first_at_or_after(end, collection.scope))

            def anchored_within(i: int, low: int = low, high: int = high) -> bool:
                return low <= collection.anchor_of(i) < high

            created_predicates.append(anchored_within)

    for name, value in plain.items():
        if name in PAGINATION_PARAMS or name in windowed:
            continue
        if name in props:
            wanted = value.lower()

            def equal(i: int, name: str = name, wanted: str = wanted) -> bool:
                found = collection.field(i, name)
                return not _missing(found) and str(found).lower() == wanted

            predicates.append(equal)
        else:
            pool = facet_values(model, name)
            facet_salt = salt_of_name(f"facet:{name}")

            def facet(
                i: int, pool: list[str] = pool, facet_salt: int = facet_salt, wanted: str = value
            ) -> bool:
                return pool[mix(collection.context(i).h ^ facet_salt) % len(pool)] == wanted

            predicates.append(facet)
        created_predicates.append(predicates[-1])

    member = _free_form_member(model)
    for name, members in deep.items():
        if member is None:
            raise RequestError(f"{name}[...] filters are not supported by {op.method} {op.path}")
        wanted_members = dict(members)

        def attributes_match(i: int, wanted: dict[str, str] = wanted_members, member: str = member) -> bool:
            found = collection.field(i, member)
            return isinstance(found, dict) and all(found.get(k) == v for k, v in wanted.items())

        predicates.append(attributes_match)
        created_predicates.append(attributes_match)

    query_key = (
        op.operation_id,
        collection.scope,
        tuple(sorted((k, v) for k, v in plain.items() if k not in PAGINATION_PARAMS)),
        tuple(sorted((k, tuple(sorted(v.items()))) for k, v in deep.items())),
    )
    digest = codec.query_digest(query_key)
    offset = 0
    if "next_token" in plain:
        token = plain["next_token"]
        if not token or token in ("null", "None", "undefined"):
            raise RequestError("next_token must not be empty or null; omit it to get the first page")
        try:
            offset = codec.decode(token, digest)
        except CursorError as exc:
            raise RequestError(str(exc)) from None

    matches = collection.matching(
        (query_key, collection.version), lo, max(lo, hi), predicates, created_predicates
    )
    window = matches[offset : offset + limit]
    page: dict[str, Any] = {"data": [collection.item(i) for i in window]}
    if offset + limit < len(matches):
        page["next_token"] = codec.encode(digest, offset + limit)
    if with_total:
        page["total"] = len(matches)
    return orjson.dumps(page)
