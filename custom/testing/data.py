"""Deterministic synthetic items, generated from the spec's schemas on demand.

Nothing is materialized: item ``i`` of a collection is a pure function of (seed, collection, i),
so a collection of 100,000 rows costs no memory until a page is asked for. Values follow the
schemas (types, enums, required properties) and their examples: ids keep the example's prefix
and shape (``seg-…``), date-times are spread over the configured span in index order (so time
windows cut contiguous slices), names and emails come from small word lists, categorical fields
(``state``, ``type``…) draw from the values the spec's descriptions list.
"""

from __future__ import annotations

import hashlib
import re
import string
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import vocab
from .spec import Operation, Schema, TenantSpec

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BASE62_INDEX = {c: i for i, c in enumerate(BASE62)}
_MAX_DURATION_MS = 6 * 3600 * 1000
_OPTIONAL_PRESENT = 230  # out of 256: optional properties appear in about nine items of ten
_CREATED_ROOM = 1 << 20  # ids reserved per scope for items created at run time
_FACET_VALUES = 5

MISSING: Any = object()


def mix(x: int) -> int:
    """splitmix64's finalizer: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + _GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def salt(*parts: object) -> int:
    """A stable 64-bit value for names (Python's own ``hash`` of a str changes between runs)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_DAYS: dict[int, str] = {}


def format_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, the form of the spec's examples."""
    day, rest = divmod(ms, 86_400_000)
    prefix = _DAYS.get(day)
    if prefix is None:
        t = time.gmtime(day * 86_400)
        prefix = _DAYS[day] = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
    seconds, millis = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def _ymd(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}"


class Shaper:
    """Random strings with an example's shape (digits for digits, letters of the same case, other
    characters and the ``literal`` positions kept), made in C: a few hashes, one mask, one translate."""

    _CLASSES = (string.digits, string.ascii_uppercase, string.ascii_lowercase)

    def __init__(self, example: str, literal: frozenset[int] = frozenset()) -> None:
        self.length = n = len(example)
        self._blocks = (n + 7) // 8
        self._trim = 8 * (8 * self._blocks - n)
        table = bytearray(256)
        for cls, chars in enumerate(self._CLASSES):
            for v in range(64):
                table[cls * 64 + v] = ord(chars[v % len(chars)])
        literals: list[str] = []
        mask = bytearray(n)
        pattern = bytearray(n)
        for i, ch in enumerate(example):
            if i not in literal and ch.isascii() and ch.isalnum():
                mask[i] = 0x3F
                pattern[i] = 0 if ch.isdigit() else 64 if ch.isupper() else 128
                continue
            if ch not in literals:
                literals.append(ch)
            index = literals.index(ch)
            if index >= 64 or ord(ch) > 255:
                raise ValueError(f"cannot shape {example!r}")
            pattern[i] = 192 + index
            table[192 + index] = ord(ch)
        self._table = bytes(table)
        self._mask = int.from_bytes(mask, "big")
        self._pattern = int.from_bytes(pattern, "big")

    def __call__(self, r: int) -> str:
        bits = 0
        for k in range(self._blocks):
            bits = (bits << 64) | mix((r + k * _GOLDEN) & MASK64)
        mixed = ((bits >> self._trim) & self._mask) | self._pattern
        return mixed.to_bytes(self.length, "big").translate(self._table).decode("latin-1")


_SHAPERS: dict[str, Shaper] = {}


def _shape_like(example: str, r: int) -> str:
    shaper = _SHAPERS.get(example)
    if shaper is None:
        shaper = _SHAPERS[example] = Shaper(example)
    return shaper(r & MASK64)


_DATE_MARK = "\x00" * 8


class Template:
    """An id-like example: lowercase words and separators kept, ``20240619``-style dates replaced by
    the item's date, every other segment shaped at random."""

    def __init__(self, example: str) -> None:
        text: list[str] = []
        literal: set[int] = set()
        position = 0
        for token in re.split(r"([-/_.|:])", example):
            is_date = len(token) == 8 and token.isdigit() and token.startswith("20")
            keep = is_date or not token.isalnum() or (token.isalpha() and token.islower())
            text.append(_DATE_MARK if is_date else token)
            if keep:
                literal.update(range(position, position + len(token)))
            position += len(token)
        self._has_date = any(t == _DATE_MARK for t in text)
        self._shaper = Shaper("".join(text), frozenset(literal))

    def __call__(self, anchor_ms: int, r: int) -> str:
        value = self._shaper(r)
        return value.replace(_DATE_MARK, _ymd(anchor_ms)) if self._has_date else value


def _case_like(value: str, example: str) -> str:
    if example.islower():
        return value.lower()
    if example.isupper():
        return value.upper()
    return value


class ItemContext:
    """What every value of one item may depend on; shared by its nested objects."""

    __slots__ = (
        "anchor_ms",
        "end_ms",
        "first",
        "h",
        "index",
        "item_id",
        "last",
        "model",
        "parent_id",
        "state",
    )

    def __init__(
        self,
        model: CollectionModel,
        index: int,
        h: int,
        anchor_ms: int,
        end_ms: int | None,
        item_id: str,
        parent_id: str | None,
        state: str | None,
    ) -> None:
        self.model = model
        self.index = index
        self.h = h
        self.anchor_ms = anchor_ms
        self.end_ms = end_ms
        self.item_id = item_id
        self.parent_id = parent_id
        self.state = state
        self.first = vocab.FIRST_NAMES[mix(h ^ 0x51) % len(vocab.FIRST_NAMES)]
        self.last = vocab.LAST_NAMES[mix(h ^ 0x52) % len(vocab.LAST_NAMES)]

    @property
    def email_local(self) -> str:
        return f"{self.first}.{self.last}".lower()


Gen = Callable[[ItemContext, int], Any]


class IdCodec:
    """Ids shaped like the schema example whose last segment encodes the item's number, invertibly.

    ``seg-35GMWpn6Y`` becomes ``seg-`` + a base62 block; a ``20240619`` date segment takes the
    item's date; other segments are random with the example's shape. Decoding reads the block
    back, and the caller regenerates the id to reject anything it did not issue.
    """

    def __init__(self, example: str, key: int, capacity: int) -> None:
        tokens = re.split(r"([-/_.|:])", example)
        last = max((i for i, t in enumerate(tokens) if t.isalnum()), default=-1)
        if last < 0:
            tokens, last = [*tokens, "-", "x0000000"], len(tokens) + 1
        self._tokens = tokens
        self._last = last
        width = max(len(tokens[last]), 6)
        while 62**width <= capacity:
            width += 1
        self._width = width
        self._modulus = 62**width
        multiplier = (mix(key) | 1) % self._modulus
        while multiplier % 31 == 0 or multiplier < 2:
            multiplier += 2
        self._multiplier = multiplier
        self._inverse = pow(multiplier, -1, self._modulus)
        self._offset = mix(key ^ 0xA5) % self._modulus

    def encode(self, number: int, ctx_h: int, anchor_ms: int) -> str:
        value = (number * self._multiplier + self._offset) % self._modulus
        block = []
        for _ in range(self._width):
            value, digit = divmod(value, 62)
            block.append(BASE62[digit])
        parts = []
        for i, token in enumerate(self._tokens):
            if i == self._last:
                parts.append("".join(reversed(block)))
            elif not token.isalnum() or (token.isalpha() and token.islower()) or i == 0 and token.isalpha():
                parts.append(token)
            elif len(token) == 8 and token.isdigit() and token.startswith("20"):
                parts.append(_ymd(anchor_ms))
            else:
                parts.append(_shape_like(token, mix(ctx_h ^ (i * 0x9E37))))
        return "".join(parts)

    def decode(self, text: str) -> int | None:
        tail = re.split(r"[-/_.|:]", text)
        tokens = [t for t in tail if t]
        if not tokens:
            return None
        block = tokens[-1] if self._last == len(self._tokens) - 1 else None
        if block is None:
            # The block is not the last segment: find it by position among alphanumeric segments.
            alnum_positions = [i for i, t in enumerate(self._tokens) if t.isalnum()]
            rank = alnum_positions.index(self._last)
            if rank >= len(tokens):
                return None
            block = tokens[rank]
        if len(block) != self._width or any(c not in _BASE62_INDEX for c in block):
            return None
        value = 0
        for c in block:
            value = value * 62 + _BASE62_INDEX[c]
        return int(((value - self._offset) * self._inverse) % self._modulus)


def _harvest(texts: Iterable[str], example: str) -> list[str]:
    """Values listed in descriptions (bullets, backticks, "For example: a, b, or c") shaped like the
    example."""
    found: list[str] = []
    for text in texts:
        found += re.findall(r"`([^`\n]{1,60})`", text)
        found += [m.strip() for m in re.findall(r"^\s*[-*]\s+([^\n]{1,40})$", text, flags=re.MULTILINE)]
        for listing in re.findall(r"[Ff]or example[,:]?\s*([^\n]+)", text):
            found += [p.strip(" .") for p in re.split(r",\s*(?:or\s+)?|\s+or\s+", listing)]
    spaced = " " in example
    marks = set(re.sub(r"[A-Za-z0-9 _-]", "", example))
    structural = marks & set("/|")
    values = []
    for value in found:
        value = value.strip().strip("*").strip()
        if not value or (" " in value) != spaced or len(value) > 60:
            continue
        value_marks = set(re.sub(r"[A-Za-z0-9 _-]", "", value))
        if not value_marks <= marks or not structural <= value_marks:
            continue
        values.append(_case_like(value, example))
    return values


_CATEGORICAL = ("state", "status", "type", "kind", "mode", "attribution", "category", "tier")
_END_WORDS = ("end", "updated", "changed", "finished", "completed", "stopped")


def is_end_time(name: str) -> bool:
    return any(word in name for word in _END_WORDS)


def is_categorical(name: str) -> bool:
    return name in _CATEGORICAL or name.rsplit("_", 1)[-1] in _CATEGORICAL


def _is_state_field(name: str) -> bool:
    return name in ("state", "status")


def is_terminal(state: str | None) -> bool:
    return state is not None and state.lower() in vocab.TERMINAL_STATES


def _failed(state: str | None) -> bool:
    return state is not None and ("fail" in state.lower() or "error" in state.lower())


def _id_prefix(example: Any) -> str | None:
    if isinstance(example, str):
        found = re.match(r"^([a-z]{1,6}-)[A-Za-z0-9]", example)
        if found:
            return found.group(1)
    return None


class ObjectPlan:
    """The generators of one object schema's properties, in order, with their presence rules."""

    def __init__(self, fields: list[tuple[str, Gen, bool, str]], state_field: str | None) -> None:
        self.fields = fields
        self.state_field = state_field
        self.by_name = {name: (gen, required, kind) for name, gen, required, kind in fields}

    def build(self, ctx: ItemContext, h: int, top: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        state: str | None = None
        if self.state_field is not None:
            if top and ctx.state is not None:
                state = ctx.state
            else:
                state = self.by_name[self.state_field][0](ctx, mix(h ^ salt_of_name(self.state_field)))
        for name, gen, required, kind in self.fields:
            if name == self.state_field:
                out[name] = state
                continue
            r = mix(h ^ salt_of_name(name))
            if not required:
                if kind == "error":
                    if not _failed(state):
                        continue
                elif kind == "end":
                    if self.state_field is not None and not is_terminal(state):
                        continue
                    if top and ctx.end_ms is None:
                        continue
                elif (r >> 56) >= _OPTIONAL_PRESENT:
                    continue
            out[name] = gen(ctx, r)
        return out


_NAME_SALTS: dict[str, int] = {}


def salt_of_name(name: str) -> int:
    value = _NAME_SALTS.get(name)
    if value is None:
        value = _NAME_SALTS[name] = salt("field", name)
    return value


class Compiler:
    """Turns a resolved schema into generators; ``hints`` are descriptions that may list values."""

    def __init__(self, model: CollectionModel, hints: Mapping[str, Sequence[str]]) -> None:
        self.model = model
        self.hints = hints

    def compile(self, schema: Schema, name: str, depth: int = 0) -> Gen:
        if depth > 12:
            return lambda ctx, r: None
        if schema.get("enum"):
            values = list(schema["enum"])
            return lambda ctx, r: values[r % len(values)]
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "object":
            return self._object(schema, name, depth)
        if kind == "array":
            item = self.compile(schema.get("items") or {}, name, depth + 1)
            return lambda ctx, r: [item(ctx, mix(r + j)) for j in range(1 + r % 3)]
        if kind == "integer":
            example = schema.get("example")
            top = abs(int(example)) * 2 if isinstance(example, int) and example else 1000
            return lambda ctx, r: r % (top + 1)
        if kind == "number":
            return lambda ctx, r: round((r % 1_000_000) / 100, 2)
        if kind == "boolean":
            return lambda ctx, r: bool(r & 1)
        if kind == "string" or kind is None and schema:
            return self._string(schema, name, depth)
        return lambda ctx, r: {}

    def _object(self, schema: Schema, name: str, depth: int) -> Gen:
        props: Mapping[str, Schema] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        if not props:
            extra = schema.get("additionalProperties")
            example = schema.get("example")
            if isinstance(extra, dict) and isinstance(example, dict) and example:
                gens = [
                    (key, self._string({"example": str(value)}, key, depth + 1))
                    for key, value in example.items()
                ]
                return lambda ctx, r: {key: gen(ctx, mix(r ^ salt_of_name(key))) for key, gen in gens}
            return lambda ctx, r: {}
        fields: list[tuple[str, Gen, bool, str]] = []
        state_field = None
        for prop, sub in props.items():
            if not sub and prop not in required:
                continue  # an untyped optional member (free-form data) adds nothing plausible
            kind = "plain"
            if sub.get("format") == "date-time" and is_end_time(prop):
                kind = "end"
            elif prop in ("error", "errors") and sub.get("type", "object") == "object":
                kind = "error"
            if _is_state_field(prop) and sub.get("type") == "string":
                state_field = prop
            fields.append((prop, self.compile(sub, prop, depth + 1), prop in required, kind))
        plan = ObjectPlan(fields, state_field)
        if depth == 0:
            self.model.plan = plan
        return lambda ctx, r: plan.build(ctx, r, top=False)

    def pool(self, schema: Schema, name: str, depth: int) -> list[str]:
        example = schema.get("example")
        example_text = str(example) if example is not None else ""
        candidates: list[str] = [example_text] if example_text else []
        # The operation's and its parameters' descriptions speak of the item's own fields only.
        hints = self.hints.get(name, ()) if depth == 1 else ()
        harvested = _harvest([str(schema.get("description") or ""), *hints], example_text or "x")
        candidates += [value for value in harvested if value.lower() != name.lower()]
        if depth == 1:
            candidates += self.model.param_examples.get(name, ())
        pool = list(dict.fromkeys(c for c in candidates if c))
        if len(pool) < 2 and name.endswith("state"):
            pool += [_case_like(v, example_text or "x") for v in vocab.STATE_DEFAULTS if v not in pool]
        elif len(pool) < 2 and name.endswith("status"):
            pool += [_case_like(v, example_text or "x") for v in vocab.STATUS_DEFAULTS if v not in pool]
        return pool or [name]

    def _string(self, schema: Schema, name: str, depth: int) -> Gen:
        fmt = schema.get("format")
        example = schema.get("example")
        text = str(example) if example is not None else ""
        lowered = name.lower()
        model = self.model
        if fmt == "date-time":
            if is_end_time(lowered):
                return lambda ctx, r: format_ms(ctx.end_ms if ctx.end_ms is not None else ctx.anchor_ms)
            return lambda ctx, r: format_ms(ctx.anchor_ms)
        if fmt == "date":
            return lambda ctx, r: format_ms(ctx.anchor_ms)[:10]
        if name == model.id_field and depth == 1:
            return lambda ctx, r: ctx.item_id
        if "email" in lowered or re.fullmatch(r"[^@\s|]+@[^@\s]+", text):
            return lambda ctx, r: f"{ctx.email_local}@{model.email_domain}"
        if "@" in text:
            pattern = re.compile(r"[A-Za-z0-9._<>-]+@[A-Za-z0-9.<>-]+")
            with_tenant = text.replace("<tenant-id>", model.tenant)
            return lambda ctx, r: pattern.sub(f"{ctx.email_local}@{model.email_domain}", with_tenant)
        if "<tenant-id>" in text or lowered == "tenant" or lowered.startswith("tenant_"):
            return lambda ctx, r: model.tenant
        prefix = _id_prefix(example)
        if prefix is not None:
            if prefix == model.id_prefix:
                return lambda ctx, r: ctx.item_id
            if model.parent is not None and prefix == model.parent.id_prefix:
                return lambda ctx, r: ctx.parent_id or ""
            if prefix in model.reference_prefixes:
                references, fallback = model.references, Template(text)

                def reference(ctx: ItemContext, r: int) -> str:
                    # Looked up when generating: the referenced collection may come later in the spec.
                    target = references.get(prefix)
                    if target is None or target.size == 0:
                        return fallback(ctx.anchor_ms, r)
                    return target.id_for_number(r % target.size)

                return reference
        if lowered.endswith("first_name"):
            return lambda ctx, r: ctx.first
        if lowered.endswith("last_name"):
            return lambda ctx, r: ctx.last
        if lowered.endswith("name") and any(
            w in lowered for w in ("principal", "user", "person", "owner", "full")
        ):
            return lambda ctx, r: f"{ctx.first} {ctx.last}"
        if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", text):
            return lambda ctx, r: f"{10 + r % 200}.{(r >> 8) % 256}.{(r >> 16) % 256}.{1 + (r >> 24) % 254}"
        if "agent" in lowered:
            return lambda ctx, r: vocab.USER_AGENTS[r % len(vocab.USER_AGENTS)]
        if is_categorical(lowered):
            values = self.pool(schema, name, depth)
            if depth == 1:
                model.pools[name] = values
            return lambda ctx, r: values[r % len(values)]
        if lowered.endswith(("name", "label")) and text and len(text.split()) <= 4:
            words = text.split()
            if len(words) > 1:
                tail = " ".join(words[1:])
                return lambda ctx, r: f"{vocab.NAME_WORDS[r % len(vocab.NAME_WORDS)]} {tail}"
            if "_" in text:
                tail = text.split("_", 1)[1]
                return lambda ctx, r: f"{vocab.SNAKE_WORDS[r % len(vocab.SNAKE_WORDS)]}_{tail}"
        if text and " " not in text:
            template = Template(text)
            return lambda ctx, r: template(ctx.anchor_ms, r)
        if text:
            return lambda ctx, r: text
        return lambda ctx, r: f"{name}-{r % 100000}"


class CollectionModel:
    """Everything about one list operation's items that does not depend on which page is asked."""

    def __init__(
        self,
        op: Operation,
        item_schema: Schema,
        *,
        seed: int,
        size: int,
        tenant: str,
        start_ms: int,
        end_ms: int,
        parent: CollectionModel | None,
        references: Mapping[str, CollectionModel],
        reference_prefixes: frozenset[str],
        scopes: int,
    ) -> None:
        self.op = op
        self.item_schema = item_schema
        self.size = size
        self.tenant = tenant
        self.email_domain = f"{tenant}.com"
        self.start_ms = start_ms
        self.span_ms = end_ms - start_ms
        self.parent = parent
        self.references = references
        self.reference_prefixes = reference_prefixes
        self.key = salt(seed, "collection", op.path)
        self.pools: dict[str, list[str]] = {}
        props: Mapping[str, Schema] = item_schema.get("properties") or {}
        self.id_field = _id_field(item_schema)
        id_example = (props.get(self.id_field) or {}).get("example") if self.id_field else None
        self.id_prefix = _id_prefix(id_example)
        self.stride = size + _CREATED_ROOM
        self.codec = IdCodec(
            str(id_example or f"{op.operation_id[:3]}-x0000000"), self.key, self.stride * max(scopes, 1)
        )
        self.param_examples: dict[str, list[str]] = {
            name: [str(p.schema["example"])] for name, p in op.query.items() if "example" in p.schema
        }
        hints: dict[str, list[str]] = {name: [p.description] for name, p in op.query.items()}
        for prop in props:
            hints.setdefault(prop, []).append(op.description)
        self.plan: ObjectPlan | None = None
        self.build_object = Compiler(self, hints).compile(item_schema, op.operation_id)

    def id_for_number(self, number: int, scope: int = 0) -> str:
        g = scope * self.stride + number
        h = mix(self.key ^ g)
        return self.codec.encode(g, h, self.anchor(number, h))

    def anchor(self, index: int, h: int) -> int:
        if self.size <= 0:
            return self.start_ms
        bucket = max(self.span_ms // self.size, 1)
        return self.start_ms + self.span_ms * index // self.size + h % bucket

    def first_at_or_after(self, ms: int, scope: int = 0) -> int:
        """The first generated index whose anchor is >= ms (anchors rise with the index)."""
        lo, hi, base = 0, self.size, scope * self.stride
        while lo < hi:
            mid = (lo + hi) // 2
            if self.anchor(mid, mix(self.key ^ (base + mid))) < ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def pool_for(self, name: str) -> list[str]:
        return self.pools.get(name) or []


def _item_schema(op: Operation) -> Schema:
    items = (((op.response_schema or {}).get("properties") or {}).get("data") or {}).get("items")
    return items if isinstance(items, dict) else {}


def _id_field(schema: Schema) -> str | None:
    props = schema.get("properties") or {}
    if "id" in props:
        return "id"
    required = list(schema.get("required") or ())
    for name in [*required, *props]:
        if name.endswith("_id") and (props.get(name) or {}).get("type", "string") == "string":
            return str(name)
    return None


class Override:
    """A run-time change to an item: created now, or stopped now."""

    __slots__ = ("anchor_ms", "end_ms", "state")

    def __init__(self, anchor_ms: int | None, end_ms: int | None, state: str | None) -> None:
        self.anchor_ms, self.end_ms, self.state = anchor_ms, end_ms, state


class Collection:
    """The items of one list operation within one scope (one parent item, or the tenant)."""

    def __init__(self, model: CollectionModel, scope: int, parent_id: str | None) -> None:
        self.model = model
        self.scope = scope
        self.parent_id = parent_id
        self.overrides: dict[int, Override] = {}
        self.created = 0
        self.version = 0
        self._matches: dict[tuple[Any, ...], Sequence[int]] = {}

    @property
    def count(self) -> int:
        return self.model.size + self.created

    def context(self, index: int) -> ItemContext:
        model = self.model
        g = self.scope * model.stride + index
        h = mix(model.key ^ g)
        override = self.overrides.get(index)
        anchor = model.anchor(index, h)
        end: int | None = anchor + 1000 + mix(h ^ 0xE2D) % _MAX_DURATION_MS
        state = None
        if override is not None:
            if override.anchor_ms is not None:
                anchor = override.anchor_ms
                end = None
            if override.end_ms is not None:
                end = override.end_ms
            state = override.state
        item_id = model.codec.encode(g, h, anchor)
        return ItemContext(model, index, h, anchor, end, item_id, self.parent_id, state)

    def item(self, index: int) -> dict[str, Any]:
        ctx = self.context(index)
        plan = self.model.plan
        if plan is None:
            value = self.model.build_object(ctx, ctx.h)
            return value if isinstance(value, dict) else {"value": value}
        return plan.build(ctx, ctx.h, top=True)

    def field(self, index: int, name: str) -> Any:
        """One top-level value of an item, without building the rest of it where that can be avoided."""
        plan = self.model.plan
        if plan is None:
            return self.item(index).get(name, MISSING)
        if name == plan.state_field:
            return self.state_of(index)
        return self._single(index, name)

    def state_of(self, index: int) -> str | None:
        plan = self.model.plan
        if plan is None or plan.state_field is None:
            return None
        ctx = self.context(index)
        if ctx.state is not None:
            return ctx.state
        value = plan.by_name[plan.state_field][0](ctx, mix(ctx.h ^ salt_of_name(plan.state_field)))
        return None if value is None else str(value)

    def end_ms_of(self, index: int) -> int | None:
        """When the item ended, or None while it runs (what its end date-time fields show)."""
        ctx = self.context(index)
        plan = self.model.plan
        if plan is not None and plan.state_field is not None and not is_terminal(self.state_of(index)):
            return None
        return ctx.end_ms

    def anchor_of(self, index: int) -> int:
        return self.context(index).anchor_ms

    def _single(self, index: int, name: str) -> Any:
        plan = self.model.plan
        assert plan is not None
        entry = plan.by_name.get(name)
        if entry is None:
            return MISSING
        if entry[2] != "plain" or not entry[1]:
            return self.item(index).get(name, MISSING)
        ctx = self.context(index)
        return entry[0](ctx, mix(ctx.h ^ salt_of_name(name)))

    def index_of(self, item_id: str) -> int | None:
        """The index of the item with this id, or None when this scope never issued it."""
        number = self.model.codec.decode(item_id)
        if number is None:
            return None
        scope, index = divmod(number, self.model.stride)
        if scope != self.scope or index >= self.count:
            return None
        return index if self.context(index).item_id == item_id else None

    def create(self, now_ms: int) -> int:
        index = self.count
        state_field = self.model.plan.state_field if self.model.plan else None
        start = _first_of(self.model.pool_for(state_field), vocab.START_STATES) if state_field else None
        self.overrides[index] = Override(now_ms, None, start)
        self.created += 1
        self.touch()
        return index

    def stop(self, index: int, now_ms: int) -> bool:
        """Stop a running item; False when it had already finished."""
        plan = self.model.plan
        state_field = plan.state_field if plan else None
        if state_field is None:
            return True
        current = self.item(index).get(state_field)
        if is_terminal(current):
            return False
        example = str(current or "x")
        stopped = _first_of(self.model.pool_for(state_field), vocab.STOPPED_STATES) or _case_like(
            "stopped", example
        )
        previous = self.overrides.get(index)
        self.overrides[index] = Override(previous.anchor_ms if previous else None, now_ms, stopped)
        self.touch()
        return True

    def touch(self) -> None:
        self.version += 1
        self._matches.clear()

    def matching(
        self,
        key: tuple[Any, ...],
        lo: int,
        hi: int,
        predicates: Sequence[Callable[[int], bool]],
        created_predicates: Sequence[Callable[[int], bool]],
    ) -> Sequence[int]:
        """Generated indexes in [lo, hi) passing ``predicates``, then created items passing
        ``created_predicates`` (which also check what [lo, hi) stands for); cached per filter."""
        found = self._matches.get(key)
        if found is not None:
            return found
        if not predicates:
            generated: Sequence[int] = range(lo, hi)
        else:
            generated = array("l", (i for i in range(lo, hi) if all(p(i) for p in predicates)))
        created = [i for i in range(self.model.size, self.count) if all(p(i) for p in created_predicates)]
        result: Sequence[int] = generated
        if created:
            result = array("l", generated)
            result.extend(created)
        if len(self._matches) > 256:
            self._matches.clear()
        self._matches[key] = result
        return result


def _first_of(pool: Sequence[str], preferred: Sequence[str]) -> str | None:
    lowered = {value.lower(): value for value in pool}
    for want in preferred:
        if want in lowered:
            return lowered[want]
    for value in pool:
        if not is_terminal(value):
            return value
    return None


class Dataset:
    """Every collection of the served spec, their nesting, and their cross references."""

    def __init__(
        self,
        spec: TenantSpec,
        *,
        seed: int,
        tenant: str,
        start_ms: int,
        end_ms: int,
        size_for: Callable[[Operation, bool, bool], int],
    ) -> None:
        self.spec = spec
        self.seed = seed
        lists = spec.list_operations()
        by_path = {op.path: op for op in lists}
        parents: dict[str, Operation] = {}
        for op in lists:
            for other in lists:
                if (
                    other is not op
                    and op.path.startswith(other.path + "/{")
                    and op.path.count("{") == other.path.count("{") + 1
                ):
                    parents[op.path] = other
        has_children = {parent.path for parent in parents.values()}
        self.models: dict[str, CollectionModel] = {}
        references: dict[str, CollectionModel] = {}
        # Parents first: a nested collection's ids and links need its parent's model.
        ordered = sorted(lists, key=lambda op: op.path.count("{"))
        prefixes = set()
        for op in ordered:
            if op.path not in parents:
                item_schema = _item_schema(op)
                id_field = _id_field(item_schema)
                example = (
                    ((item_schema.get("properties") or {}).get(id_field) or {}).get("example")
                    if id_field
                    else None
                )
                prefix = _id_prefix(example)
                if prefix:
                    prefixes.add(prefix)
        for op in ordered:
            item_schema = _item_schema(op)
            parent = self.models.get(parents[op.path].path) if op.path in parents else None
            size = size_for(op, op.path in has_children, parent is not None)
            model = CollectionModel(
                op,
                item_schema,
                seed=seed,
                size=size,
                tenant=tenant,
                start_ms=start_ms,
                end_ms=end_ms,
                parent=parent,
                references=references,
                reference_prefixes=frozenset(prefixes),
                scopes=(parent.size if parent else 1),
            )
            self.models[op.path] = model
            if model.id_prefix and parent is None and model.id_prefix not in references:
                references[model.id_prefix] = model
        self._by_path = by_path
        self._scopes: dict[tuple[str, int], Collection] = {}

    def collection(self, path: str, parent_ids: Sequence[str]) -> Collection | None:
        """The collection of a list path within the parent named by ``parent_ids`` (None: no such parent)."""
        model = self.models[path]
        if model.parent is None:
            return self._scope(path, 0, None)
        parent = self.collection(model.parent.op.path, parent_ids[:-1])
        if parent is None or not parent_ids:
            return None
        index = parent.index_of(parent_ids[-1])
        if index is None:
            return None
        return self._scope(path, index, parent_ids[-1])

    def _scope(self, path: str, scope: int, parent_id: str | None) -> Collection:
        key = (path, scope)
        found = self._scopes.get(key)
        if found is None:
            found = self._scopes[key] = Collection(self.models[path], scope, parent_id)
        return found

    def ids(self, path: str, parent_ids: Sequence[str] = (), count: int | None = None) -> list[str]:
        """The ids of a collection's first items (for tests and examples)."""
        collection = self.collection(path, parent_ids)
        if collection is None:
            return []
        n = collection.count if count is None else min(count, collection.count)
        return [collection.context(i).item_id for i in range(n)]
