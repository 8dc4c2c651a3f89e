"""Every failure of every subcommand: one line on stderr, the right exit status, no traceback.

2 for bad input, 1 for a failed run, 130 for Ctrl-C; ``--debug`` adds the traceback. Task groups
(extract-all, shards) raise exception groups; they still come out as one line.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from extract_support import CLI, cli_env, interrupted, one_line, run_cli, state
from ports import refused_port
from windowed_server import WindowedServer

from amperity_async.custom.cli import main
from amperity_async.custom.cli.failures import describe, redactor_for
from amperity_async.custom.errors import AuthenticationError, ConfigurationError
from amperity_async.custom.extract import CheckpointError
from amperity_async.custom.extract import output as output_module
from amperity_async.custom.secrets import REDACTED
from amperity_async.testing import FakeTenantConfig


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=300, indexes=2, profiles_per_index=30, seed=5)


WRONG = {"AMPERITY_CLIENT_SECRET": "definitely-the-wrong-secret"}


@pytest.mark.parametrize(
    "argv",
    [
        ["extract-all", "--out", "{tmp}/all"],
        [
            "extract",
            "list_events",
            "--shards",
            "3",
            "--param",
            "happened_from=2026-01-01",
            "--param",
            "happened_to=2026-04-01",
            "--out",
            "{tmp}/events.jsonl",
        ],
        ["extract", "list_segment", "--out", "-"],
    ],
    ids=["extract-all", "shards", "stdout"],
)
def test_a_wrong_secret_is_one_line_and_exit_1(fake_tenant: Any, tmp_path: Path, argv: list[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = run_cli(args, cli_env(fake_tenant, **WRONG))
    assert result.returncode == 1
    line = one_line(result)
    assert "401" in line and "invalid client credentials" in line
    assert WRONG["AMPERITY_CLIENT_SECRET"] not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "command", [["extract-all", "--out", "{tmp}/all"], ["extract", "list_segment", "--out", "-"]]
)
def test_an_unreachable_tenant_is_one_line_and_exit_1(
    fake_tenant: Any, tmp_path: Path, command: list[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    with refused_port() as port:
        env = cli_env(fake_tenant, AMPERITY_BASE_URL=f"http://127.0.0.1:{port}/api")
        result = run_cli([*args, "--max-retries", "0"], env, timeout=120)
    assert result.returncode == 1
    assert "127.0.0.1" in one_line(result)


def test_secrets_echoed_by_the_server_never_reach_stderr(tmp_path: Path) -> None:
    secret = "s3cret with/slashes+plus=sign"
    with WindowedServer(echo_form=True) as server:
        env = {**server.env(), "AMPERITY_CLIENT_SECRET": secret}
        result = run_cli(
            [
                "extract",
                "list_ingest_jobs",
                "--param",
                "created_from=2026-03-01",
                "--param",
                "created_to=2026-03-02",
                "--out",
                str(tmp_path / "j.jsonl"),
                "--debug",
            ],
            {**env},
        )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and REDACTED in result.stderr  # --debug: the traceback, scrubbed
    for form in (secret, "s3cret+with%2Fslashes%2Bplus%3Dsign", "s3cret%20with%2Fslashes%2Bplus%3Dsign"):
        assert form not in result.stderr


def test_a_full_disk_fails_in_one_line_and_the_resume_completes(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "events.jsonl"
    assert run_cli(["extract", "list_events", "--limit", "50", "--out", str(reference)], env).returncode == 0

    def small_disk() -> None:  # writes past 120 kB fail as on a full disk (EFBIG; SIGXFSZ is ignored)
        resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))

    full = subprocess.run(
        [*CLI, "extract", "list_events", "--limit", "50", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=small_disk,
    )
    assert full.returncode == 1
    line = one_line(full)
    assert "cannot write" in line and str(out) in line and "--resume" in line
    assert 0 < state(out)["rows"] < 300
    resumed = run_cli(["extract", "list_events", "--limit", "50", "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()


def test_a_read_only_disk_fails_in_one_line_and_the_resume_completes(
    fake_tenant: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in cli_env(fake_tenant).items():
        monkeypatch.setenv(key, value)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "segments.jsonl"
    assert main(["extract", "list_segment", "--limit", "50", "--out", str(reference)]) == 0
    real_pwrite, writes = output_module.os.pwrite, []

    def read_only_after_two_pages(fd: int, data: Any, offset: int) -> int:
        writes.append(offset)
        if len(writes) > 2:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(output_module.os, "pwrite", read_only_after_two_pages)
    capsys.readouterr()
    assert main(["extract", "list_segment", "--limit", "50", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0] and "--resume" in err[0], err
    # Two writes went through (pages are written in groups); the checkpoint says exactly what they hold.
    rows = state(out)["rows"]
    assert rows >= 100 and rows % 50 == 0
    assert out.read_bytes() == b"".join(reference.read_bytes().splitlines(True)[:rows])
    monkeypatch.setattr(output_module.os, "pwrite", real_pwrite)
    assert main(["extract", "list_segment", "--limit", "50", "--out", str(out), "--resume"]) == 0
    assert out.read_bytes() == reference.read_bytes()


def test_ctrl_c_during_extract_all_is_one_line_and_130(fake_tenant: Any, tmp_path: Path) -> None:
    out = tmp_path / "all"
    status, err = interrupted(
        ["extract-all", "--out", str(out), "--limit", "20"],
        cli_env(fake_tenant),
        out / "list_events.jsonl",
        pages=2,
        how=signal.SIGINT,
    )
    assert status == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0], err


def test_stdout_closed_early_is_one_line_and_exit_1(fake_tenant: Any) -> None:
    proc = subprocess.Popen(
        [*CLI, "extract", "list_events", "--limit", "10", "--out", "-"],
        env=cli_env(fake_tenant),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "standard output was closed" in lines[0], err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["extract", "list_segment", "--shards", "0", "--out", "x.jsonl"], "--shards: must be 1 or more"),
        (["extract", "list_segment", "--limit", "0"], "--limit: must be 1 or more"),
        (["extract", "list_segment", "--max-items", "-3"], "--max-items: must be 1 or more"),
        (
            ["extract", "list_segment", "--resume", "--overwrite", "--out", "x.jsonl"],
            "not allowed with argument",
        ),
        (["extract", "list_segment", "--out", "{tmp}"], "is a folder"),
        (["extract-all", "--out", "{tmp}/file"], "is a file"),
        (["extract-all", "--from", "2026-13-45"], "not an ISO-8601 timestamp"),
        (["extract-all", "--from", "2026-03-01", "--to", "2026-02-01"], "must be before --to"),
        (
            ["extract", "list_segment", "--max-items", "5", "--shards", "2", "--out", "x.jsonl"],
            "cannot be combined",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    fake_tenant: Any,
    tmp_path: Path,
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "file").write_text("not a folder")
    for key, value in cli_env(fake_tenant).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_fake_tenant_on_an_impossible_port() -> None:
    result = subprocess.run(
        [*CLI, "fake-tenant", "--port", "99999"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "port" in one_line(result)


def test_debug_prints_the_traceback_before_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "list_nothing", "--tenant", "a", "--token", "t", "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.strip().splitlines()[-1].startswith("error: unknown operation")


# how exceptions become a line


def test_exception_groups_name_the_real_error_once() -> None:
    auth = AuthenticationError(
        "invalid token", status_code=401, method="GET", url="http://127.0.0.1/api/segments"
    )
    group = ExceptionGroup("tasks", [ExceptionGroup("inner", [auth]), ConfigurationError("bad window")])
    failure = describe(BaseExceptionGroup("outer", [asyncio.CancelledError(), group]), resumable=True)
    assert failure.status == 1
    assert failure.line.startswith("401 from GET") and "(and 1 other error)" in failure.line
    assert failure.line.endswith("rerun with --resume to continue")


def test_interrupts_and_input_errors_have_their_own_status() -> None:
    assert (
        describe(BaseExceptionGroup("g", [KeyboardInterrupt(), ValueError("x")]), resumable=True).status
        == 130
    )
    assert describe(CheckpointError("the checkpoint of x is for y")).status == 2
    unexpected = describe(ExceptionGroup("g", [ValueError("boom\nsecond line")]))
    assert unexpected.status == 1 and "\n" not in unexpected.line and "--debug" in unexpected.line


def test_redactor_scrubs_raw_url_encoded_and_base64_forms() -> None:
    redact = redactor_for(["p@ss word/+=", None, "abc"])
    text = "a p@ss word/+= b p%40ss%20word%2F%2B%3D c p%40ss+word%2F%2B%3D d cEBzcyB3b3JkLys9 abc"
    r = REDACTED
    assert redact.scrub(text) == f"a {r} b {r} c {r} d {r} abc"
