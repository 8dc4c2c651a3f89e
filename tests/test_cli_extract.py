"""The extraction CLI against the fake tenant: resume after a kill, sharding, extract-all, demo.

Whatever point a run is killed at, ``--resume`` ends with output byte-identical to a clean run's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from extract_support import interrupted, one_line, start_cli, state, wait_until

from amperity_async.custom.cli import main
from amperity_async.testing import FakeTenantConfig


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=600, indexes=2, profiles_per_index=120, seed=3)


def cli_env(tenant: Any) -> dict[str, str]:
    return {
        **os.environ,
        "AMPERITY_TENANT": tenant.config.tenant,
        "AMPERITY_BASE_URL": tenant.base_url,
        "AMPERITY_CLIENT_ID": tenant.client_id,
        "AMPERITY_CLIENT_SECRET": tenant.client_secret,
    }


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amperity_async", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_extract_writes_json_lines_and_a_summary(fake_tenant: Any, tmp_path: Path) -> None:
    out = tmp_path / "segments.jsonl"
    result = run_cli(["extract", "list_segment", "--limit", "100", "--out", str(out)], cli_env(fake_tenant))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in lines(out)]
    assert len(rows) == 600
    assert len({row["id"] for row in rows}) == 600
    assert "list_segment" in result.stderr and "600" in result.stderr


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_the_process_dies_mid_extraction(
    fake_tenant: Any, tmp_path: Path, how: signal.Signals
) -> None:
    env = cli_env(fake_tenant)
    reference = tmp_path / "reference.jsonl"
    assert run_cli(["extract", "list_events", "--limit", "20", "--out", str(reference)], env).returncode == 0

    out = tmp_path / "events.jsonl"
    checkpoint = out.with_name(out.name + ".checkpoint")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amperity_async",
            "extract",
            "list_events",
            "--limit",
            "20",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # 30 pages at the tenant's 10 requests/s: stop it once a few pages are durably written.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if checkpoint.exists() and json.loads(checkpoint.read_text() or "{}").get("pages", 0) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in err
    state = json.loads(checkpoint.read_text())
    assert not state["done"] and 4 <= state["pages"] < 30

    resumed = run_cli(["extract", "list_events", "--limit", "20", "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert lines(out) == lines(reference)  # no duplicates, no gaps, same order
    assert json.loads(checkpoint.read_text())["done"] is True
    again = run_cli(["extract", "list_events", "--limit", "20", "--out", str(out), "--resume"], env)
    assert again.returncode == 0 and lines(out) == lines(reference)


def test_resume_refuses_a_checkpoint_of_other_parameters(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "segments.jsonl"
    assert (
        run_cli(
            ["extract", "list_segment", "--limit", "100", "--max-items", "200", "--out", str(out)], env
        ).returncode
        == 0
    )
    other = run_cli(["extract", "list_segment", "--limit", "50", "--out", str(out), "--resume"], env)
    assert other.returncode == 2
    assert "checkpoint" in other.stderr and "Traceback" not in other.stderr


def test_sharded_extraction_equals_unsharded(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    window = ["--param", "happened_from=2025-12-01T00:00:00Z", "--param", "happened_to=2026-05-01T00:00:00Z"]
    whole, sharded = tmp_path / "whole.jsonl", tmp_path / "sharded.jsonl"
    first = run_cli(["extract", "list_events", "--limit", "100", *window, "--out", str(whole)], env)
    assert first.returncode == 0, first.stderr
    second = run_cli(
        ["extract", "list_events", "--limit", "100", *window, "--shards", "4", "--out", str(sharded)], env
    )
    assert second.returncode == 0, second.stderr
    assert len(lines(whole)) == 600
    assert sorted(lines(sharded)) == sorted(lines(whole))
    assert not list(tmp_path.glob("sharded.jsonl.shard*"))


def test_shards_need_a_time_window(fake_tenant: Any, tmp_path: Path) -> None:
    result = run_cli(
        ["extract", "list_segment", "--shards", "3", "--out", str(tmp_path / "x.jsonl")], cli_env(fake_tenant)
    )
    assert result.returncode == 2
    assert "time-window" in result.stderr


def test_extract_all_writes_every_list_and_each_index_profiles(fake_tenant: Any, tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = run_cli(["extract-all", "--out", str(out), "--limit", "100"], cli_env(fake_tenant))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.glob("*.jsonl"))
    stable_lists = {
        "list_campaign",
        "list_events",
        "list_indexes",
        "list_ingest_jobs",
        "list_segment",
        "list_workflows",
    }
    assert stable_lists <= {name.removesuffix(".jsonl") for name in files}
    profiles = [name for name in files if name.startswith("list_profiles-")]
    assert len(profiles) == 2
    assert all(len(lines(out / name)) == 120 for name in profiles)
    assert "total" in result.stdout and "429s" in result.stdout
    assert not any(name.startswith("list_campaign_draft") for name in files)  # unstable-only, stable client


def test_demo_runs_end_to_end_on_a_small_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["demo", "--out", str(tmp_path / "out"), "--rows", "150", "--profiles", "50", "--indexes", "2"]
    )
    assert code == 0
    report = capsys.readouterr().out
    assert "list_segment" in report and "total" in report
    assert len(lines(tmp_path / "out" / "list_segment.jsonl")) == 150


def test_resume_after_sigkill_at_random_points_is_byte_identical(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    args = ["extract", "list_events", "--limit", "20"]
    reference, out = tmp_path / "reference.jsonl", tmp_path / "events.jsonl"
    assert run_cli([*args, "--out", str(reference)], env).returncode == 0
    dice = random.Random(20260401)
    kills = 0
    for attempt in range(8):
        proc = start_cli([*args, "--out", str(out), *(["--resume"] if attempt else [])], env)
        pages = state(out).get("pages", 0) if attempt else 0
        # Bound as defaults: wait_until calls the check only within this iteration.
        wait_until(
            lambda proc=proc, pages=pages: state(out).get("pages", 0) > pages or proc.poll() is not None,
            "a page",
        )
        time.sleep(dice.uniform(0, 0.12))  # anywhere in the next page: fetching, checkpointing, writing
        if proc.poll() is not None:
            proc.communicate()
            break
        proc.kill()
        proc.communicate(timeout=60)
        kills += 1
    assert kills >= 3
    finished = run_cli([*args, "--out", str(out), "--resume"], env)
    assert finished.returncode == 0, finished.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert state(out)["done"] is True and state(out)["rows"] == 600


def test_sharded_resume_after_sigkill_equals_a_clean_sharded_run(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    window = ["--param", "happened_from=2025-12-01T00:00:00Z", "--param", "happened_to=2026-05-01T00:00:00Z"]
    args = ["extract", "list_events", "--limit", "20", *window, "--shards", "3"]
    clean, out = tmp_path / "clean.jsonl", tmp_path / "events.jsonl"
    assert run_cli([*args, "--out", str(clean)], env).returncode == 0
    shard = out.with_name(out.name + ".shard1")
    interrupted([*args, "--out", str(out)], env, shard, pages=2)
    assert out.read_bytes() == b"" and shard.exists()
    again = run_cli([*args, "--out", str(out)], env)
    assert again.returncode == 2 and "shard" in one_line(again)  # unfinished shards are output too
    resumed = run_cli([*args, "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == clean.read_bytes()
    assert len(lines(out)) == 600 and not list(tmp_path.glob("events.jsonl.shard*"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".checkpoint")}


def test_extract_all_resumes_after_sigkill_without_from_or_to(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    clean, out = tmp_path / "clean", tmp_path / "all"
    assert run_cli(["extract-all", "--out", str(clean), "--limit", "20"], env).returncode == 0
    interrupted(["extract-all", "--out", str(out), "--limit", "20"], env, out / "list_events.jsonl", pages=3)
    manifest = json.loads((out / "extract-all.checkpoint").read_text())
    assert manifest["done"] is False and manifest["started"]

    refused = run_cli(["extract-all", "--out", str(out), "--limit", "20"], env)
    assert refused.returncode == 2 and "--resume" in one_line(refused)
    other_limit = run_cli(["extract-all", "--out", str(out), "--limit", "50", "--resume"], env)
    assert other_limit.returncode == 2 and "--limit 20" in one_line(other_limit)

    resumed = run_cli(["extract-all", "--out", str(out), "--limit", "20", "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert _files(out) == _files(clean)
    assert json.loads((out / "extract-all.checkpoint").read_text())["started"] == manifest["started"]


def test_extract_all_overwrite_replaces_only_what_the_earlier_run_wrote(
    fake_tenant: Any, tmp_path: Path
) -> None:
    env = cli_env(fake_tenant)
    out = tmp_path / "all"
    assert run_cli(["extract-all", "--out", str(out), "--limit", "100"], env).returncode == 0
    first = _files(out)
    (out / "notes.txt").write_text("mine")
    (out / "list_profiles-idx-gone.jsonl").write_bytes(b"")
    manifest = json.loads((out / "extract-all.checkpoint").read_text())
    manifest["files"].append("list_profiles-idx-gone.jsonl")  # an index that no longer exists
    (out / "extract-all.checkpoint").write_text(json.dumps(manifest))
    again = run_cli(["extract-all", "--out", str(out), "--limit", "100", "--overwrite"], env)
    assert again.returncode == 0, again.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "list_profiles-idx-gone.jsonl").exists()
    assert _files(out) == {**first, "notes.txt": b"mine"}


def test_demo_replaces_its_own_output_but_no_other_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--rows", "40", "--profiles", "10", "--indexes", "1"]
    assert main(argv) == 0
    assert main(argv) == 0
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("keep")
    assert main(["demo", "--out", str(tmp_path / "mine"), "--rows", "5"]) == 2
    assert "other files" in capsys.readouterr().err
    assert (tmp_path / "mine" / "data.csv").read_text() == "keep"
