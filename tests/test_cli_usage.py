"""Bad command-line input: one clear line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from amperity_async.custom.cli import main

CASES = [
    (["extract", "list_segment"], {}, "no tenant"),
    (["extract", "list_segment", "--tenant", "acme"], {}, "no credentials"),
    (
        ["extract", "list_segment", "--tenant", "acme", "--client-id", "x"],
        {},
        "both --client-id and --client-secret",
    ),
    (["extract", "list_nothing", "--tenant", "acme", "--token", "t"], {}, "unknown operation 'list_nothing'"),
    (["extract", "get_workflow", "--tenant", "acme", "--token", "t"], {}, "not a list operation"),
    (["extract", "list_segment", "--tenant", "acme", "--token", "t", "--param", "oops"], {}, "key=value"),
    (["extract", "list_segment", "--tenant", "acme", "--token", "t", "--resume"], {}, "need --out FILE"),
    (["extract", "list_profiles", "--tenant", "acme", "--token", "t"], {}, "needs --param id="),
    (["extract", "list_segment", "--limit", "ten"], {}, "invalid int value"),
    (["frobnicate"], {}, "invalid choice"),
    (
        [
            "extract",
            "list_segment",
            "--tenant",
            "acme",
            "--token",
            "t",
            "--base-url",
            "http://example.com/api",
        ],
        {},
        "only loopback",
    ),
]


@pytest.mark.parametrize(("argv", "env", "expected"), CASES)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in (
        "AMPERITY_TENANT",
        "AMPERITY_TOKEN",
        "AMPERITY_CLIENT_ID",
        "AMPERITY_CLIENT_SECRET",
        "AMPERITY_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_unknown_parameter_names_the_accepted_ones(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "extract",
        "list_segment",
        "--tenant",
        "acme",
        "--token",
        "t",
        "--base-url",
        "http://127.0.0.1:9/api",
        "--param",
        "colour=blue",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no parameter 'colour'" in err and "limit" in err


def test_the_module_entry_point_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amperity_async", "extract", "list_nothing", "--tenant", "a", "--token", "t"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown operation")
    assert "Traceback" not in result.stderr
