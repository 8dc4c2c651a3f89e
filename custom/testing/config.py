"""Every setting of the fake tenant, with the help text the command line shows for it.

The command line builds its flags from these fields (``attrs.fields(FakeTenantConfig)`` and each
field's ``metadata["help"]``), so a setting added here is a flag there with no second list to keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from amperity_async.custom.errors import ConfigurationError

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; token expiry and rate windows read it (tests pass a manual one)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise ConfigurationError(f"fake tenant setting {attribute.name} must be >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigurationError(f"fake tenant setting {attribute.name} must be > 0, got {value!r}")


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


def _as_dict(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True)
class FakeTenantConfig:
    """How the fake tenant listens, what data it serves, which limits it enforces and which faults it injects."""

    # Where it listens.
    host: str = attrs.field(default="127.0.0.1", metadata=_help("interface to listen on"))
    port: int = attrs.field(default=0, validator=_non_negative, metadata=_help("port; 0 picks a free one"))

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
        converter=_as_dict,
        metadata=_help("per list operation item counts, e.g. list-segment=50 (overrides the above)"),
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
    spec_path: Path | None = attrs.field(
        default=None,
        converter=_optional_path,
        metadata=_help("normalized OpenAPI document to serve (default: the one shipped with the package)"),
    )

    # Limits.
    rate_limits: bool = attrs.field(default=True, metadata=_help("enforce the per-API request rate limits"))
    control_plane_rate: int = attrs.field(
        default=10, validator=_positive, metadata=_help("control-plane API requests per second")
    )
    profile_rate: int = attrs.field(
        default=2000, validator=_positive, metadata=_help("Profile API requests per second")
    )
    rate_window: str = attrs.field(
        default="sliding",
        validator=attrs.validators.in_(("sliding", "fixed")),
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
        metadata=_help("revoke every token once, after this many API requests"),
    )
    revoke_after_seconds: float | None = attrs.field(
        default=None, validator=_positive, metadata=_help("revoke every token once, this long after start")
    )
    deprecation: datetime | None = attrs.field(
        default=None, converter=_optional_utc, metadata=_help("send a Deprecation header with this date")
    )
    sunset: datetime | None = attrs.field(
        default=None, converter=_optional_utc, metadata=_help("send a Sunset header with this date")
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
                f"fake tenant default_limit ({self.default_limit}) must not exceed max_limit ({self.max_limit})"
            )
        for op, count in self.rows_by_operation.items():
            if not isinstance(count, int) or count < 0:
                raise ConfigurationError(f"rows_by_operation[{op!r}] must be an integer >= 0, got {count!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FakeTenantConfig:
        """A config from loosely typed values (command-line strings, environment), naming what is wrong."""
        fields = {f.name: f for f in attrs.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigurationError(f"unknown fake tenant setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, raw in values.items():
            converted[name] = _coerce(name, fields[name].default, raw)
        try:
            return cls(**converted)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"invalid fake tenant setting: {exc}") from None


def _coerce(name: str, default: Any, raw: Any) -> Any:
    if not isinstance(raw, str) or isinstance(default, str) or name in ("spec_path",):
        return raw
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int) or name in ("revoke_after_requests",):
            return int(text)
        if isinstance(default, float) or name in ("revoke_after_seconds",):
            return float(text)
    except ValueError:
        raise ConfigurationError(f"fake tenant setting {name}: cannot read {raw!r}") from None
    if name == "rows_by_operation":
        pairs: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            op, sep, count = part.partition("=")
            if not sep or not count.strip().isdigit():
                raise ConfigurationError(f"rows_by_operation: expected OPERATION=COUNT, got {part!r}")
            pairs[op.strip()] = int(count)
        return pairs
    return text


def http_date(value: datetime) -> str:
    """An IMF-fixdate, the form of the Deprecation and Sunset headers Amperity documents."""
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
