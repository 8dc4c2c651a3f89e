"""The ``amperity-async`` command: bulk extraction, the demo, the fake tenant, the upstream spec watch.

Every failure prints one line on stderr (``error: ...``) and exits 2 for bad input, 1 for a failed
run, 130 when interrupted; ``--debug`` prints the traceback before that line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio

from ..extract import extract_all
from .commands import COMMANDS
from .connection import secrets_of
from .failures import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    leaves,
    quiet_library_output,
    redactor_for,
    report,
)
from .parser import build_parser

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "extract_all",
    "main",
]


def _resumable(args: argparse.Namespace | None) -> bool:
    """Whether the command keeps checkpoints, so a failed or interrupted run can go on with --resume."""
    return (
        args is not None and args.command in ("extract", "extract-all") and getattr(args, "out", "-") != "-"
    )


def _silence_stdout() -> None:
    """After a reader closed stdout, keep the interpreter's final flush from failing again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(arguments)
        with quiet_library_output(redactor_for(secrets_of(args)), debug=debug):
            return int(anyio.run(COMMANDS[args.command], args))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except BaseException as exc:  # every failure becomes one line and a status
        if any(isinstance(e, BrokenPipeError) for e in leaves(exc)):
            _silence_stdout()
        return report(exc, redact=redactor_for(secrets_of(args)), debug=debug, resumable=_resumable(args))


if __name__ == "__main__":
    sys.exit(main())
