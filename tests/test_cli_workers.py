"""``--workers N``: the same bytes as one process, resumable after a worker or the parent is killed,
one budget for all workers against the fake tenant's strict windows, failures as one line."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from extract_support import cli_env, one_line, run_cli, running, state, wait_until

from amperity_async.testing import FakeTenantConfig, start_in_thread

WINDOW = ["--param", "happened_from=2025-12-01T00:00:00Z", "--param", "happened_to=2026-05-01T00:00:00Z"]
EVENTS = ["extract", "list_events", "--limit", "20", *WINDOW]
TENANT_WINDOW = 1.1
"""Long enough for the tenant's sliding one-second window to forget an earlier run (its budget was
another)."""


# A mark, not an override of ``fake_tenant_config``: the tests' own marks then still apply.
pytestmark = pytest.mark.fake_tenant(rows=300, indexes=3, profiles_per_index=150, seed=11)


def data_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".jsonl"}


def children(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def unlocked(path: Path) -> bool:
    """Whether no process holds ``path``'s output lock any more."""
    with open(path, "rb") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
        return True


def test_workers_write_the_bytes_of_one_process(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    first = run_cli([*EVENTS, "--shards", "3", "--out", str(one)], env)
    assert first.returncode == 0, first.stderr
    time.sleep(TENANT_WINDOW)
    before = fake_tenant.stats["rate_limited"]
    second = run_cli([*EVENTS, "--workers", "3", "--out", str(two)], env)
    assert second.returncode == 0, second.stderr
    assert two.read_bytes() == one.read_bytes() and len(two.read_text().splitlines()) == 300
    assert not list(tmp_path.glob("two.jsonl.shard*"))
    assert state(two)["done"] is True and state(two)["source"]["shards"] == 3
    assert "list_events" in second.stderr and "total" in second.stderr
    assert fake_tenant.stats["rate_limited"] == before  # three workers, one strict 10/s window


def test_a_failing_worker_leaves_the_target_not_done_and_is_named_once(tmp_path: Path) -> None:
    config = FakeTenantConfig(rows=300, seed=11, fail_first={"list-events": (400, 1)})
    with start_in_thread(config) as tenant:
        env = cli_env(tenant)
        out = tmp_path / "events.jsonl"
        failed = run_cli([*EVENTS, "--workers", "2", "--out", str(out)], env)
        assert failed.returncode != 0
        line = one_line(failed)
        assert line.count("worker") == 1 and "400" in line
        assert state(out)["done"] is False and state(out)["rows"] == 0
        time.sleep(TENANT_WINDOW)
        resumed = run_cli([*EVENTS, "--workers", "2", "--out", str(out), "--resume"], env)
        assert resumed.returncode == 0, resumed.stderr
        time.sleep(TENANT_WINDOW)
        reference = tmp_path / "reference.jsonl"
        assert run_cli([*EVENTS, "--out", str(reference)], env).returncode == 0
    assert out.read_bytes() == reference.read_bytes() and state(out)["done"] is True


def test_extract_all_with_workers_writes_the_files_of_one_process(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli(["extract-all", "--out", str(one), "--limit", "50"], env).returncode == 0
    time.sleep(TENANT_WINDOW)
    before = fake_tenant.stats["rate_limited"]
    result = run_cli(["extract-all", "--out", str(two), "--limit", "50", "--workers", "2"], env)
    assert result.returncode == 0, result.stderr
    assert data_files(two) == data_files(one)
    assert len([name for name in data_files(two) if name.startswith("list_profiles-")]) == 3
    assert "total" in result.stdout
    assert fake_tenant.stats["rate_limited"] == before  # the workers' shared budget: no 429


def test_resume_after_a_worker_is_killed(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "events.jsonl"
    assert run_cli([*EVENTS, "--shards", "2", "--out", str(reference)], env).returncode == 0
    shard = out.with_name(out.name + ".shard1")
    with running([*EVENTS, "--workers", "2", "--out", str(out)], env) as proc:
        wait_until(
            lambda: state(shard).get("pages", 0) >= 2 or proc.poll() is not None, "two pages of a shard"
        )
        workers = children(proc.pid)
        assert proc.poll() is None and len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    line = one_line(subprocess.CompletedProcess(proc.args, 1, "", err))
    assert "worker" in line and "SIGKILL" in line and "--resume" in line
    assert state(out)["done"] is False and shard.exists()  # never marked done
    resumed = run_cli([*EVENTS, "--workers", "2", "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("command", ["extract", "extract-all"])
def test_resume_after_the_parent_is_killed(fake_tenant: Any, tmp_path: Path, command: str) -> None:
    env = cli_env(fake_tenant)
    if command == "extract":
        args, out = EVENTS, tmp_path / "events.jsonl"
        reference, watched = tmp_path / "reference.jsonl", out.with_name(out.name + ".shard0")
        assert run_cli([*args, "--shards", "2", "--out", str(reference)], env).returncode == 0
    else:
        args, out = ["extract-all", "--limit", "20"], tmp_path / "all"
        reference, watched = tmp_path / "reference", out / "list_events.jsonl"
        assert run_cli([*args, "--out", str(reference)], env).returncode == 0
    with running([*args, "--workers", "2", "--out", str(out)], env) as proc:
        wait_until(lambda: state(watched).get("pages", 0) >= 2 or proc.poll() is not None, "two pages")
        workers = children(proc.pid)
        assert proc.poll() is None and workers
        proc.kill()
        proc.communicate(timeout=60)
    # Orphaned, the workers see their input close and stop at a checkpoint.
    wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to stop", timeout=60)
    resumed = run_cli([*args, "--workers", "2", "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    if command == "extract":
        assert out.read_bytes() == reference.read_bytes()
    else:
        assert data_files(out) == data_files(reference)


def test_a_worker_refusing_its_shard_is_one_line_and_bad_input(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "events.jsonl"
    shard = out.with_name(out.name + ".shard0")
    with running([*EVENTS, "--workers", "2", "--out", str(out)], env) as proc:
        wait_until(lambda: state(shard).get("pages", 0) >= 2 or proc.poll() is not None, "two pages")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 130
    wait_until(lambda: unlocked(shard), "the shard's lock to go")
    shard.write_bytes(shard.read_bytes().replace(b'"', b"'", 1))  # someone edited a shard
    result = run_cli([*EVENTS, "--workers", "2", "--out", str(out), "--resume"], env)
    assert result.returncode == 2
    line = one_line(result)
    assert "worker" in line and "shard0" in line and "differ" in line


def test_a_list_without_a_window_is_read_by_one_worker(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "segments.jsonl"
    result = run_cli(["extract", "list_segment", "--limit", "100", "--workers", "4", "--out", str(out)], env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "one worker" in warnings[0] and "list_segment" in warnings[0]
    assert len(out.read_text().splitlines()) == 300
    events = run_cli(["extract", "list_events", "--workers", "2", "--out", str(tmp_path / "e.jsonl")], env)
    assert events.returncode == 0 and "happened_from" in events.stderr  # says what would split it


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["extract", "list_events", *WINDOW, "--workers", "2"], "--out FILE"),
        (
            ["extract", "list_events", *WINDOW, "--workers", "2", "--max-items", "5", "--out", "x.jsonl"],
            "combined",
        ),
        (["extract-all", "--workers", "0"], "--workers: must be 1 or more"),
        (
            ["extract", "list_segment", "--control-plane-rate", "fast", "--out", "x.jsonl"],
            "--control-plane-rate",
        ),
        (["extract", "list_segment", "--profile-rate", "-3", "--out", "x.jsonl"], "--profile-rate"),
    ],
)
def test_bad_worker_and_rate_flags_are_one_line(
    fake_tenant: Any, tmp_path: Path, args: list[str], needle: str
) -> None:
    result = run_cli(args, cli_env(fake_tenant))
    assert result.returncode == 2
    assert needle in one_line(result)


def test_a_bad_rate_variable_is_named(fake_tenant: Any, tmp_path: Path) -> None:
    env = {**cli_env(fake_tenant), "AMPERITY_PROFILE_RATE": "lots"}
    result = run_cli(["extract", "list_segment", "--out", str(tmp_path / "x.jsonl")], env)
    assert result.returncode == 2 and "AMPERITY_PROFILE_RATE" in one_line(result)


@pytest.mark.fake_tenant(rows=300, indexes=4, profiles_per_index=200, profile_rate=60, seed=4)
def test_a_lowered_profile_rate_holds_every_worker_to_it(fake_tenant: Any, tmp_path: Path) -> None:
    """A tenant at 60 Profile API requests/s, workers told so: one budget, no 429."""
    assert fake_tenant.config.profile_rate == 60  # the test's mark is in force
    env = cli_env(fake_tenant)
    out = tmp_path / "all"
    started = time.monotonic()
    result = run_cli(
        ["extract-all", "--out", str(out), "--limit", "5", "--workers", "2", "--profile-rate", "60"], env
    )
    assert result.returncode == 0, result.stderr
    assert fake_tenant.stats["rate_limited"] == 0
    profile_pages = 4 * 200 // 5
    assert time.monotonic() - started >= (profile_pages - 60) / 60  # they did wait for each other


@pytest.mark.fake_tenant(rows=300, rate_limits=False, seed=4)
def test_unlimited_rates_run_without_a_budget(fake_tenant: Any, tmp_path: Path) -> None:
    assert fake_tenant.config.rate_limits is False
    env = {**cli_env(fake_tenant), "AMPERITY_CONTROL_PLANE_RATE": "unlimited"}
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert run_cli([*EVENTS, "--shards", "2", "--out", str(one)], env).returncode == 0
    result = run_cli([*EVENTS, "--workers", "2", "--profile-rate", "unlimited", "--out", str(two)], env)
    assert result.returncode == 0, result.stderr
    assert two.read_bytes() == one.read_bytes()
