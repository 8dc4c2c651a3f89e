"""The command line: subcommands, their flags, and checks of the values flags can check alone."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from ..client import DEFAULT_BASE_URL
from ..extract import Durability
from ..operations import CONTROL_PLANE, PROFILE, REGISTRY
from .failures import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    parse.__name__ = "int"
    return parse


_positive = _at_least(1)
_non_negative = _at_least(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _add_durability_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Durability()
    group = parser.add_argument_group(
        "durability (a killed run loses nothing; a machine that stops, what was not synced)"
    )
    group.add_argument(
        "--sync-pages",
        type=_positive,
        default=defaults.pages,
        metavar="N",
        help="sync the output and its checkpoint to disk after N pages (default %(default)s)",
    )
    group.add_argument(
        "--sync-seconds",
        type=_seconds,
        default=defaults.seconds,
        metavar="S",
        help="... or after S seconds, whichever comes first (default %(default)s)",
    )


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="on failure, print the traceback too")


def _add_output_mode(parser: argparse.ArgumentParser, what: str) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help=f"continue the extraction in {what} from its checkpoints"
    )
    mode.add_argument(
        "--overwrite", action="store_true", help=f"start over, replacing the rows already in {what}"
    )


def _add_workers(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help=f"worker processes sharing {what}, on one rate budget (default %(default)s)",
    )


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tenant and credentials (flags win over the environment)")
    group.add_argument("--tenant", help="tenant ID (AMPERITY_TENANT)")
    group.add_argument("--base-url", help=f"API base URL (AMPERITY_BASE_URL; default {DEFAULT_BASE_URL})")
    group.add_argument("--client-id", help="OAuth client ID (AMPERITY_CLIENT_ID)")
    group.add_argument("--client-secret", help="OAuth client secret (AMPERITY_CLIENT_SECRET)")
    group.add_argument("--token", help="a fixed access token (AMPERITY_TOKEN)")
    group.add_argument(
        "--api-version", help=f"control-plane api-version (default {REGISTRY.default_version(CONTROL_PLANE)})"
    )
    group.add_argument(
        "--profile-api-version", help=f"Profile API api-version (default {REGISTRY.default_version(PROFILE)})"
    )
    group.add_argument(
        "--max-retries", type=_non_negative, default=5, help="retries per request (default %(default)s)"
    )
    group.add_argument(
        "--control-plane-rate",
        metavar="RATE",
        help="control-plane requests/s, or 'unlimited', for a tenant whose limit Amperity raised "
        "(AMPERITY_CONTROL_PLANE_RATE; default the documented 10)",
    )
    group.add_argument(
        "--profile-rate",
        metavar="RATE",
        help="Profile API requests/s, or 'unlimited' (AMPERITY_PROFILE_RATE; default the documented 2000)",
    )
    group.add_argument("--redis-url", help="share the rate budget through Redis (AMPERITY_REDIS_URL)")
    group.add_argument(
        "--parent-tenant",
        metavar="TENANT",
        help="for a sandbox: the production tenant whose Profile API budget it shares in Redis "
        "(AMPERITY_PARENT_TENANT)",
    )
    group.add_argument(
        "--expected-workers",
        type=_positive,
        default=1,
        help="workers sharing the Redis budget (for the local fallback's share)",
    )
    group.add_argument(
        "--redis-unavailable",
        choices=("raise", "local"),
        default="raise",
        help="when Redis is unreachable: fail, or fall back to a local share of the budget",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amperity-async", description="Async client for Amperity's APIs: bulk extraction and tools."
    )
    _add_debug(parser)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    extract = commands.add_parser("extract", help="stream every item of one list operation as JSON Lines")
    extract.add_argument("operation", help="e.g. list_segment, list-events, list_profiles, list_ingest_jobs")
    extract.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="operation parameter, e.g. happened_from=2026-01-01T00:00:00Z, id=idx-1, "
        "filter=first_name:Daniel,city:Oslo or filter[city]=Oslo (repeatable)",
    )
    extract.add_argument("--out", default="-", help="output file (JSON Lines), or - for stdout (default)")
    extract.add_argument("--limit", type=_positive, help="items per page (the API's limit parameter)")
    extract.add_argument("--max-items", type=_positive, help="stop after this many items")
    _add_output_mode(extract, "--out")
    extract.add_argument(
        "--shards",
        type=_positive,
        help="split the time window into N shards extracted concurrently (default: --workers)",
    )
    _add_workers(extract, "the time window's shards (a list without a window is read by one)")
    _add_durability_flags(extract)
    _add_connection_flags(extract)
    _add_debug(extract)

    everything = commands.add_parser("extract-all", help="every list operation (and every index's profiles)")
    everything.add_argument("--out", default="out", help="output folder (default %(default)s)")
    _add_output_mode(everything, "the folder")
    everything.add_argument("--limit", type=_positive, help="items per page")
    _add_workers(everything, "the files (each list, and each index's profiles, is one)")
    everything.add_argument(
        "--from",
        dest="window_from",
        help="start of required time windows (default: as documented, e.g. 7 days back, else all history)",
    )
    everything.add_argument(
        "--to",
        dest="window_to",
        help="end of required time windows (default: now; a day ahead for all-history windows)",
    )
    _add_connection_flags(everything)
    _add_debug(everything)

    demo = commands.add_parser(
        "demo", help="extract-all against an embedded fake tenant with the real limits"
    )
    demo.add_argument(
        "--out", default="out", help="output folder (default %(default)s; an earlier demo there is replaced)"
    )
    demo.add_argument(
        "--rows", type=_non_negative, default=1000, help="items per collection (default %(default)s)"
    )
    demo.add_argument(
        "--indexes", type=_non_negative, default=3, help="profile indexes (default %(default)s)"
    )
    demo.add_argument(
        "--profiles", type=_non_negative, default=1000, help="profiles per index (default %(default)s)"
    )
    demo.add_argument("--limit", type=_positive, default=100, help="items per page (default %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    _add_debug(demo)

    fake = commands.add_parser("fake-tenant", help="serve an embedded fake Amperity tenant on 127.0.0.1")
    try:
        from amperity_async.testing.cli import add_arguments
    except ImportError:  # the fake tenant's own dependencies are missing
        pass
    else:
        add_arguments(fake)
    _add_debug(fake)
    return parser
