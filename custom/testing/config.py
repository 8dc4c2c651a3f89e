"""Every setting of the fake tenant, with the help text the command line shows for it.

The command line builds its flags from these fields (``attrs.fields(FakeTenantConfig)`` and each
field's ``metadata["help"]``), so a setting added here is a flag there with no second list to keep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from amperity_async.custom.errors import ConfigurationError

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; token expiry and rate windows read it (tests pass a manual one)."""


ALL_OPERATIONS = "*"
"""In a per-operation setting, every operation the setting applies to."""

_OPERATIONS_SYNTAX = "OPERATION[,OPERATION...] or *"


def _help(
    text: str, *, parse: Callable[[str], Any] | None = None, syntax: str | None = None
) -> dict[str, Any]:
    """A field's command-line help; ``parse`` reads its flag's text, ``syntax`` shows the flag's form."""
    return {"help": text, "parse": parse, "syntax": syntax}


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigurationError(f"fake tenant setting {name} must be a finite number, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _finite(attribute.name, value)
        if value < 0:
            raise ConfigurationError(f"fake tenant setting {attribute.name} must be >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _finite(attribute.name, value)
        if value <= 0:
            raise ConfigurationError(f"fake tenant setting {attribute.name} must be > 0, got {value!r}")


def _one_of(*choices: str) -> Callable[[object, attrs.Attribute[Any], str], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ConfigurationError(
                f"fake tenant setting {attribute.name} must be one of {', '.join(choices)}, got {value!r}"
            )

    return check


def _port(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigurationError(f"fake tenant setting port must be within 0..65535, got {value!r}")


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"fake tenant setting {attribute.name} must be within 0..1, got {value!r}")


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or not value.strip():
        raise ConfigurationError(f"fake tenant setting {attribute.name} must not be empty")


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"not an ISO-8601 date-time: {value!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _optional_utc(value: datetime | str | None) -> datetime | None:
    return None if value is None else _utc(value)


def _pairs(text: str, setting: str, unit: str) -> list[tuple[str, str]]:
    """``OPERATION=VALUE`` pairs of a flag's text, comma-separated."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"{setting}: expected OPERATION={unit}, got {part!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _items(value: Mapping[str, Any] | str, setting: str, unit: str) -> list[tuple[str, Any]]:
    if isinstance(value, str):
        return _pairs(value, setting, unit)
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{setting} must map operations to {unit}, got {value!r}")
    return list(value.items())


def _counts(value: Mapping[str, int] | str, setting: str, unit: str) -> dict[str, int]:
    items = _items(value, setting, unit)
    counts: dict[str, int] = {}
    for name, count in items:
        if isinstance(count, str):
            if not count.isdigit():
                raise ConfigurationError(f"{setting}[{name!r}] must be an integer >= 0, got {count!r}")
            count = int(count)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigurationError(f"{setting}[{name!r}] must be an integer >= 0, got {count!r}")
        counts[name] = count
    return counts


def _rows_by_operation(value: Mapping[str, int] | str) -> dict[str, int]:
    return _counts(value, "rows_by_operation", "COUNT")


def _bytes_by_operation(value: Mapping[str, int] | str) -> dict[str, int]:
    return _counts(value, "close_after_bytes", "BYTES")


def _rates_by_operation(value: Mapping[str, float] | str) -> dict[str, float]:
    items = _items(value, "drip_rate", "BYTES_PER_SECOND")
    rates: dict[str, float] = {}
    for name, rate in items:
        try:
            number = float(rate)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"drip_rate[{name!r}] must be a number of bytes per second, got {rate!r}"
            ) from None
        if isinstance(rate, bool) or not math.isfinite(number) or number <= 0:
            raise ConfigurationError(
                f"drip_rate[{name!r}] must be a number of bytes per second > 0, got {rate!r}"
            )
        rates[name] = number
    return rates


def _statuses_first(value: Mapping[str, Any] | str) -> dict[str, tuple[int, int]]:
    """``OPERATION=STATUSxCOUNT`` pairs: the first COUNT requests of the operation answer STATUS."""
    chosen: dict[str, tuple[int, int]] = {}
    for name, given in _items(value, "fail_first", "STATUSxCOUNT"):
        if isinstance(given, str):
            status_text, _, count_text = given.lower().partition("x")
            parsed = (
                (int(status_text), int(count_text or "1"))
                if status_text.isdigit() and (count_text or "1").isdigit()
                else None
            )
        elif isinstance(given, tuple | list) and len(given) == 2:
            parsed = (given[0], given[1])
        else:
            parsed = None
        if (
            parsed is None
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in parsed)
            or not 400 <= parsed[0] <= 599
            or parsed[1] < 1
        ):
            raise ConfigurationError(
                f"fail_first[{name!r}] must be an error status and a count, STATUSxCOUNT such as 503x2, "
                f"got {given!r}"
            )
        chosen[name] = (int(parsed[0]), int(parsed[1]))
    return chosen


def _names_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """Names from a comma-separated flag or any collection of names, in order, each once."""
    names = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))


def _non_empty_names(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ConfigurationError(f"fake tenant setting {attribute.name} needs at least one name")


def _streams(value: Mapping[str, str] | str) -> dict[str, str]:
    """``STREAM=COLLECTION`` pairs: the profile collection each event stream feeds."""
    return {name: str(collection) for name, collection in _items(value, "event_streams", "COLLECTION")}


def _segments(value: Mapping[str, str] | str) -> dict[str, tuple[str, str]]:
    """``SEGMENT=ATTRIBUTE=VALUE`` pairs: a real-time segment holds the profiles with that attribute value."""
    segments: dict[str, tuple[str, str]] = {}
    for name, rule in _items(value, "realtime_segments", "ATTRIBUTE=VALUE"):
        if isinstance(rule, tuple | list) and len(rule) == 2:
            attribute, member_value = str(rule[0]), str(rule[1])
        else:
            attribute, _, member_value = str(rule).partition("=")
        if not attribute.strip() or not member_value.strip():
            raise ConfigurationError(f"realtime_segments[{name!r}] must be ATTRIBUTE=VALUE, got {rule!r}")
        segments[name] = (attribute.strip(), member_value.strip())
    return segments


def _operation_names(value: str | Iterable[str]) -> frozenset[str]:
    """Operation names from a comma-separated flag or any collection of names (checked by ``_names``)."""
    if isinstance(value, str):
        return frozenset(name.strip() for name in value.split(",") if name.strip())
    return frozenset(value) if isinstance(value, Iterable) else value


def _names(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, frozenset) or not all(isinstance(name, str) and name for name in value):
        raise ConfigurationError(
            f"fake tenant setting {attribute.name} takes operation names (or *), got {value!r}"
        )


def _header_value(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        raise ConfigurationError(
            f"fake tenant setting {attribute.name} must be one line without control characters, got {value!r}"
        )


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True)
class FakeTenantConfig:
    """How the fake tenant listens, what data it serves, which limits it enforces and which faults it
    injects."""

    # Where it listens.
    host: str = attrs.field(
        default="127.0.0.1", validator=_non_empty, metadata=_help("interface to listen on")
    )
    port: int = attrs.field(default=0, validator=_port, metadata=_help("port; 0 picks a free one"))

    # Who it is.
    tenant: str = attrs.field(
        default="acme", validator=_non_empty, metadata=_help("tenant id expected in amperity-tenant")
    )
    client_id: str = attrs.field(
        default="fake-client", validator=_non_empty, metadata=_help("OAuth client id it accepts")
    )
    client_secret: str = attrs.field(
        default="fake-secret",
        validator=_non_empty,
        repr=False,
        metadata=_help("OAuth client secret it accepts"),
    )
    api_key_id: str = attrs.field(
        default="ak-fake", validator=_non_empty, metadata=_help("API key id of the token issuer endpoint")
    )
    issuer_token: str = attrs.field(
        default="fake-issuer-token",
        validator=_non_empty,
        repr=False,
        metadata=_help("bearer token the token issuer endpoint accepts"),
    )
    token_lifetime: float = attrs.field(
        default=3600.0, validator=_positive, metadata=_help("seconds an issued access token stays valid")
    )

    # What it serves.
    seed: int = attrs.field(default=0, metadata=_help("seed of the synthetic data and of the fault dice"))
    rows: int = attrs.field(
        default=1000, validator=_non_negative, metadata=_help("items in each top-level collection")
    )
    indexes: int = attrs.field(
        default=3,
        validator=_non_negative,
        metadata=_help("items in each collection that owns nested collections (profile indexes)"),
    )
    profiles_per_index: int = attrs.field(
        default=1000,
        validator=_non_negative,
        metadata=_help("items in each nested collection (profiles of each index)"),
    )
    rows_by_operation: Mapping[str, int] = attrs.field(
        factory=dict,
        converter=_rows_by_operation,
        metadata=_help(
            "per list operation item counts, e.g. list-segment=50 (overrides the above)",
            syntax="OPERATION=COUNT[,OPERATION=COUNT...]",
        ),
    )
    time_start: datetime = attrs.field(
        default=datetime(2026, 1, 1, tzinfo=UTC),
        converter=_utc,
        metadata=_help("start of the span the items' date-times are spread over"),
    )
    time_end: datetime = attrs.field(
        default=datetime(2026, 4, 1, tzinfo=UTC),
        converter=_utc,
        metadata=_help("end (exclusive) of the span the items' date-times are spread over"),
    )
    default_limit: int = attrs.field(
        default=25, validator=_positive, metadata=_help("page size when a request gives no limit")
    )
    max_limit: int = attrs.field(default=1000, validator=_positive, metadata=_help("largest limit accepted"))
    # The Real-time API's profile store.
    profile_collections: tuple[str, ...] = attrs.field(
        default=("pc-customers",),
        converter=_names_list,
        validator=_non_empty_names,
        metadata=_help("IDs of the profile collections", syntax="COLLECTION[,COLLECTION...]"),
    )
    profiles_per_collection: int = attrs.field(
        default=1000, validator=_non_negative, metadata=_help("synthetic profiles in each profile collection")
    )
    keychain: tuple[str, ...] = attrs.field(
        default=("email", "phone", "loyalty_id"),
        converter=_names_list,
        validator=_non_empty_names,
        metadata=_help(
            "keychain link types: the event fields that find a profile and the keys lookups take",
            syntax="TYPE[,TYPE...]",
        ),
    )
    event_streams: Mapping[str, str] = attrs.field(
        factory=lambda: {"es-web-events": "pc-customers"},
        converter=_streams,
        metadata=_help(
            "event streams and the profile collection each one feeds", syntax="STREAM=COLLECTION[,...]"
        ),
    )
    realtime_segments: Mapping[str, tuple[str, str]] = attrs.field(
        factory=lambda: {"rts-gold": ("loyalty_tier", "gold"), "rts-purchasers": ("event_type", "purchase")},
        converter=_segments,
        metadata=_help(
            "real-time segments: each holds the profiles whose attribute has the value",
            syntax="SEGMENT=ATTRIBUTE=VALUE[,...]",
        ),
    )
    dropping_streams: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        metadata=_help(
            "event streams set to drop events: posting answers 204 and publishes nothing",
            syntax="STREAM[,STREAM...]",
        ),
    )
    paused_streams: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        metadata=_help(
            "event streams not accepting events: posting answers 409", syntax="STREAM[,STREAM...]"
        ),
    )

    spec_path: Path | None = attrs.field(
        default=None,
        converter=_optional_path,
        metadata=_help(
            "normalized OpenAPI document to serve (default: the one shipped with the package)", parse=str
        ),
    )

    # Limits.
    rate_limits: bool = attrs.field(default=True, metadata=_help("enforce the per-API request rate limits"))
    control_plane_rate: int = attrs.field(
        default=10, validator=_positive, metadata=_help("control-plane API requests per second")
    )
    profile_rate: int = attrs.field(
        default=2000, validator=_positive, metadata=_help("Profile API requests per second")
    )
    realtime_rate: int = attrs.field(
        default=2000,
        validator=_positive,
        metadata=_help(
            "Real-time API requests per second (Amperity documents none; the Profile API's is assumed)"
        ),
    )
    rate_window: str = attrs.field(
        default="sliding",
        validator=_one_of("sliding", "fixed"),
        metadata=_help("sliding: no 1 s interval holds more than the limit; fixed: per calendar second"),
    )

    # Faults.
    error_rate: float = attrs.field(
        default=0.0, validator=_fraction, metadata=_help("fraction of API requests answered 500 or 503")
    )
    drop_rate: float = attrs.field(
        default=0.0,
        validator=_fraction,
        metadata=_help("fraction of API requests whose connection is closed unanswered"),
    )
    latency: float = attrs.field(
        default=0.0, validator=_non_negative, metadata=_help("seconds added to every API response")
    )
    latency_jitter: float = attrs.field(
        default=0.0, validator=_non_negative, metadata=_help("up to this many further seconds, at random")
    )
    revoke_after_requests: int | None = attrs.field(
        default=None,
        validator=_positive,
        metadata=_help("revoke every token once, after this many API requests", parse=int),
    )
    revoke_after_seconds: float | None = attrs.field(
        default=None,
        validator=_positive,
        metadata=_help("revoke every token once, this long after start", parse=float),
    )
    deprecation: datetime | None = attrs.field(
        default=None,
        converter=_optional_utc,
        metadata=_help("send a Deprecation header with this date", parse=str),
    )
    sunset: datetime | None = attrs.field(
        default=None,
        converter=_optional_utc,
        metadata=_help("send a Sunset header with this date", parse=str),
    )

    # Hostile lists. Per-operation settings take operation ids (list-segment) or generated names
    # (list_segment); * stands for every operation the setting can apply to.
    cursor_ignored: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "lists that ignore next_token: every request gets the first page again, with a new cursor",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    endless_empty_pages: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "lists that never end: after the last item come empty pages, each with a new cursor",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    repeated_items: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "lists that never end: their last page comes again and again, each time with a new cursor",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    null_next_token: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            'lists whose last page says "next_token": null instead of leaving it out',
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    null_optional_fields: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "operations whose items carry null for each optional field they lack "
            "(a running workflow's ended_at)",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    views: bool = attrs.field(
        default=False,
        metadata=_help(
            "honour documented view parameters: answer only the fields of the view asked for or of the "
            "documented default (get-workflow: overview unless view=verbose)"
        ),
    )
    closed_request_bodies: bool = attrs.field(
        default=False,
        metadata=_help(
            "refuse request bodies with fields their schema does not define (400 naming them), as the "
            "published documents declare with additionalProperties: false"
        ),
    )

    # Hostile answers on the wire.
    drip_rate: Mapping[str, float] = attrs.field(
        factory=dict,
        converter=_rates_by_operation,
        metadata=_help(
            "operations whose answers trickle out at this many bytes per second, e.g. list-segment=200",
            syntax="OPERATION=BYTES_PER_SECOND[,...]; * for every operation",
        ),
    )
    drip_headers: bool = attrs.field(
        default=False, metadata=_help("trickle the status line and headers too, not only the body")
    )
    endless_body: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "operations whose successful answers are a 200 with a JSON body that never ends",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    close_after_bytes: Mapping[str, int] = attrs.field(
        factory=dict,
        converter=_bytes_by_operation,
        metadata=_help(
            "operations whose connection is closed after this many bytes of the answer (headers included)",
            syntax="OPERATION=BYTES[,...]; * for every operation",
        ),
    )
    bad_gzip: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "operations whose answers say Content-Encoding: gzip over bytes that are not gzip",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    invalid_utf8_errors: frozenset[str] = attrs.field(
        factory=frozenset,
        converter=_operation_names,
        validator=_names,
        metadata=_help(
            "operations whose error bodies carry bytes that are not UTF-8 in their message",
            syntax=_OPERATIONS_SYNTAX,
        ),
    )
    echo_secrets: bool = attrs.field(
        default=False,
        metadata=_help(
            "error answers echo the request's Authorization header, and the OAuth token endpoint's "
            "errors echo its form body, URL-encoded (as some gateways do)"
        ),
    )
    fail_first: Mapping[str, tuple[int, int]] = attrs.field(
        factory=dict,
        converter=_statuses_first,
        metadata=_help(
            "operations whose first COUNT requests are answered STATUS without being carried out "
            "(send-event=503x2: the third attempt publishes)",
            syntax="OPERATION=STATUSxCOUNT[,...]; * for every operation",
        ),
    )
    retry_after: str | None = attrs.field(
        default=None,
        validator=_header_value,
        metadata=_help(
            "Retry-After header of every 429, verbatim (seconds, an HTTP date, or nonsense)", parse=str
        ),
    )

    # Not a flag: tests pass a manual clock so expiry and rate windows are deterministic.
    clock: Clock = attrs.field(default=time.time, eq=False, repr=False, metadata={"cli": False})

    def __attrs_post_init__(self) -> None:
        if self.time_end <= self.time_start:
            raise ConfigurationError(
                f"fake tenant time_end ({self.time_end.isoformat()}) must be after time_start "
                f"({self.time_start.isoformat()})"
            )
        if self.default_limit > self.max_limit:
            raise ConfigurationError(
                f"fake tenant default_limit ({self.default_limit}) "
                f"must not exceed max_limit ({self.max_limit})"
            )
        unknown = sorted(set(self.event_streams.values()) - set(self.profile_collections))
        if unknown:
            raise ConfigurationError(
                f"fake tenant event_streams feed {', '.join(unknown)}, not among profile_collections "
                f"({', '.join(self.profile_collections)})"
            )
        for setting in ("dropping_streams", "paused_streams"):
            strangers = sorted(getattr(self, setting) - set(self.event_streams))
            if strangers:
                raise ConfigurationError(
                    f"fake tenant {setting} names {', '.join(strangers)}, not among event_streams "
                    f"({', '.join(self.event_streams) or 'none'})"
                )
        both = sorted(self.dropping_streams & self.paused_streams)
        if both:
            raise ConfigurationError(
                f"fake tenant streams {', '.join(both)} cannot both drop events and be paused"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FakeTenantConfig:
        """A config from loosely typed values (command-line strings, environment), naming what is wrong."""
        fields = {f.name: f for f in attrs.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigurationError(f"unknown fake tenant setting(s): {', '.join(unknown)}")
        converted = {name: _coerce(fields[name], raw) for name, raw in values.items()}
        try:
            return cls(**converted)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"invalid fake tenant setting: {exc}") from None


def _coerce(field: attrs.Attribute[Any], raw: Any) -> Any:
    """The value of a setting given as text (a flag, the environment); other values pass as they are."""
    if not isinstance(raw, str):
        return raw
    parse: Callable[[str], Any] | None = field.metadata.get("parse")
    default = field.default
    if parse is None:
        if isinstance(default, bool):
            parse = _boolean
        elif isinstance(default, int):
            parse = int
        elif isinstance(default, float):
            parse = float
        else:
            return raw  # text, or read by the field's converter
    try:
        return parse(raw.strip())
    except ValueError as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"fake tenant setting {field.name}: cannot read {raw!r}") from None


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def http_date(value: datetime) -> str:
    """An IMF-fixdate, the form of the Deprecation and Sunset headers Amperity documents."""
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
