"""The ``amperity-async fake-tenant`` flags, made from the config's fields, and its runner."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import attrs

from .config import FakeTenantConfig
from .server import FakeTenant, serve_forever


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting of :class:`FakeTenantConfig` (values are checked when the config is built)."""
    for field in attrs.fields(FakeTenantConfig):
        if field.metadata.get("cli") is False:
            continue
        help_text = str(field.metadata.get("help", ""))
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = None
        if isinstance(default, bool):
            parser.add_argument(
                _flag(field.name),
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} (default: {'on' if default else 'off'})",
            )
            continue
        syntax = field.metadata.get("syntax")
        shown = f" ({syntax})" if syntax else "" if default is None else f" (default: {default})"
        parser.add_argument(
            _flag(field.name),
            dest=field.name,
            default=None,
            metavar=field.name.upper(),
            help=help_text + shown,
        )


def config_from_args(args: argparse.Namespace) -> FakeTenantConfig:
    """The config of the flags given (unset flags keep the defaults); raises ConfigurationError."""
    values: dict[str, Any] = {}
    for field in attrs.fields(FakeTenantConfig):
        value = getattr(args, field.name, None)
        if value is not None and field.metadata.get("cli") is not False:
            values[field.name] = value if isinstance(value, bool) else str(value)
    return FakeTenantConfig.from_mapping(values)


def describe(tenant: FakeTenant) -> str:
    c = tenant.config
    limits = (
        f"{c.control_plane_rate}/s control plane, {c.profile_rate}/s Profile API, "
        f"{c.realtime_rate}/s Real-time API ({c.rate_window} window)"
        if c.rate_limits
        else "off"
    )
    return "\n".join(
        [
            f"fake Amperity tenant listening at {tenant.base_url}",
            f"  AMPERITY_BASE_URL={tenant.base_url}",
            f"  AMPERITY_TENANT={c.tenant}",
            f"  AMPERITY_CLIENT_ID={c.client_id}",
            f"  AMPERITY_CLIENT_SECRET={c.client_secret}",
            f"  rate limits: {limits}; token lifetime {c.token_lifetime:g} s; seed {c.seed}",
            f"  stats: GET {tenant.root_url}/_fake/stats   "
            f"revoke tokens: POST {tenant.root_url}/_fake/revoke",
            "Ctrl-C stops it.",
        ]
    )


async def run_from_args(args: argparse.Namespace) -> None:
    """Serve with the flags' settings until cancelled (Ctrl-C), after printing where and how to connect."""
    config = config_from_args(args)

    def ready(tenant: FakeTenant) -> None:
        print(describe(tenant), flush=True, file=sys.stdout)

    await serve_forever(config, ready)
