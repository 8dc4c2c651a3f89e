"""List requests: filters, cursors, limits and the page body.

A list whose spec marks its cursor unusable answers every item of the window at once, with a
``next_token`` it ignores when sent back; a list with a documented longest window refuses longer or
open-ended ones. Hostile cursor behaviours (:class:`ListFaults`) are chosen per operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson

from .checks import RequestError, parse_datetime_ms
from .cursors import CursorCodec, CursorError
from .data import Collection, CollectionModel, Template, is_end_time, mix, salt_of_name
from .shaping import Shape
from .spec import PAGINATION_PARAMS, Operation

Predicate = Callable[[int], bool]
FACET_VALUES = 5
_DAY_MS = 86_400_000

CURSOR_IGNORED = "ignored"
"""Every request gets the first page, whatever its next_token; each answer has a new cursor."""
ENDLESS_EMPTY_PAGES = "endless-empty-pages"
"""After the last item, empty pages follow forever, each with a new cursor."""
REPEATED_ITEMS = "repeated-items"
"""The last page comes again forever, each time with a new cursor."""


@attrs.frozen
class ListFaults:
    """How one list operation misbehaves (the defaults: not at all)."""

    cursor: str | None = None
    """None (cursors work), CURSOR_IGNORED, ENDLESS_EMPTY_PAGES or REPEATED_ITEMS."""
    null_next_token: bool = False
    """The last page says ``"next_token": null`` instead of leaving it out."""


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
    faults: ListFaults = ListFaults(),
    serial: int = 0,
    shape: Shape | None = None,
) -> bytes:
    """The page a list request asks for, serialized; ``serial`` numbers the new cursors of hostile lists."""
    model = collection.model
    props = model.item_schema.get("properties") or {}
    limit = default_limit
    if "limit" in plain:
        limit = int(plain["limit"])
        if not 1 <= limit <= max_limit:
            raise RequestError(f"limit must be between 1 and {max_limit}, got {limit}")
    with_total = plain.get("with_total") == "true"
    _check_window_lengths(op, plain)

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
    matches = collection.matching(
        (query_key, collection.version), lo, max(lo, hi), predicates, created_predicates
    )
    if not op.cursor_usable:
        # One answer holds the whole window; its next_token is there, as upstream sends one, but
        # stands for nothing, and one sent back is ignored.
        page = _page(collection, matches, shape)
        page["next_token"] = codec.encode(digest, len(matches))
    else:
        offset = 0 if faults.cursor == CURSOR_IGNORED else _offset(plain, codec, digest)
        page = _page(collection, matches[offset : offset + limit], shape)
        next_token = _next_token(faults, codec, digest, offset, limit, len(matches), serial)
        if next_token is not None or faults.null_next_token:
            page["next_token"] = next_token
    if with_total:
        page["total"] = len(matches)
    return orjson.dumps(page)


def _page(collection: Collection, indexes: Any, shape: Shape | None) -> dict[str, Any]:
    items = [collection.item(i) for i in indexes]
    return {"data": items if shape is None else [shape(item) for item in items]}


def _offset(plain: Mapping[str, str], codec: CursorCodec, digest: bytes) -> int:
    if "next_token" not in plain:
        return 0
    token = plain["next_token"]
    if not token or token in ("null", "None", "undefined"):
        raise RequestError("next_token must not be empty or null; omit it to get the first page")
    try:
        return codec.decode(token, digest)
    except CursorError as exc:
        raise RequestError(str(exc)) from None


def _next_token(
    faults: ListFaults, codec: CursorCodec, digest: bytes, offset: int, limit: int, count: int, serial: int
) -> str | None:
    """The cursor after the page at ``offset`` (None: the list has ended)."""
    if offset + limit < count:
        return codec.encode(digest, offset + limit, serial if faults.cursor else 0)
    if faults.cursor == ENDLESS_EMPTY_PAGES:
        return codec.encode(digest, max(offset, count), serial)
    if faults.cursor == REPEATED_ITEMS:
        return codec.encode(digest, offset, serial)
    return None


def _check_window_lengths(op: Operation, plain: Mapping[str, str]) -> None:
    """A list with a documented longest window needs both ends of each window, at most that far apart."""
    days = op.max_window_days
    if days is None:
        return
    for start_name, end_name in op.time_windows:
        missing = [name for name in (start_name, end_name) if name not in plain]
        if missing:
            named = " and ".join(repr(name) for name in missing)
            raise RequestError(
                f"query parameter {named} {'is' if len(missing) == 1 else 'are'} required: "
                f"{op.method} {op.path} "
                f"answers windows of at most {days} days ({start_name} to {end_name})"
            )
        start = parse_datetime_ms(start_name, plain[start_name])
        end = parse_datetime_ms(end_name, plain[end_name])
        if end - start > days * _DAY_MS:
            raise RequestError(
                f"the window from {start_name} ({plain[start_name]}) to {end_name} ({plain[end_name]}) spans "
                f"{(end - start) / _DAY_MS:g} days; {op.method} {op.path} answers at most {days} days"
            )
