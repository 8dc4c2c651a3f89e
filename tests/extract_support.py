"""Running the real CLI against a fake tenant, and stopping it part-way, for the extraction tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "amperity_async"]


def cli_env(tenant: Any, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "AMPERITY_TENANT": tenant.config.tenant,
        "AMPERITY_BASE_URL": tenant.base_url,
        "AMPERITY_CLIENT_ID": tenant.client_id,
        "AMPERITY_CLIENT_SECRET": tenant.client_secret,
        **overrides,
    }


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The CLI running in the background; killed on the way out if it has not ended by then."""
    proc = start_cli(args, env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def checkpoint_of(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


def state(out: Path) -> dict[str, Any]:
    text = checkpoint_of(out).read_text() if checkpoint_of(out).exists() else ""
    return dict(json.loads(text)) if text.strip() else {}


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def interrupted(
    args: list[str], env: dict[str, str], out: Path, pages: int, how: int = signal.SIGKILL
) -> tuple[int, str]:
    """Run the CLI until ``out``'s checkpoint shows ``pages`` pages, then stop it with ``how``;
    return its exit status and stderr."""
    with running(args, env) as proc:
        wait_until(
            lambda: state(out).get("pages", 0) >= pages or proc.poll() is not None, f"{pages} pages in {out}"
        )
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        proc.send_signal(how)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]
