"""The extraction CLI against the fake tenant: resume after a kill, sharding, extract-all, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

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
        [sys.executable, "-m", "amperity_async", *args], env=env, capture_output=True, text=True, timeout=240, check=False
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
def test_resume_after_the_process_dies_mid_extraction(fake_tenant: Any, tmp_path: Path, how: signal.Signals) -> None:
    env = cli_env(fake_tenant)
    reference = tmp_path / "reference.jsonl"
    assert run_cli(["extract", "list_events", "--limit", "20", "--out", str(reference)], env).returncode == 0

    out = tmp_path / "events.jsonl"
    checkpoint = out.with_name(out.name + ".checkpoint")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amperity_async", "extract", "list_events", "--limit", "20", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
    assert run_cli(["extract", "list_segment", "--limit", "100", "--max-items", "200", "--out", str(out)], env).returncode == 0
    other = run_cli(["extract", "list_segment", "--limit", "50", "--out", str(out), "--resume"], env)
    assert other.returncode == 2
    assert "checkpoint" in other.stderr and "Traceback" not in other.stderr


def test_sharded_extraction_equals_unsharded(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    window = ["--param", "happened_from=2025-12-01T00:00:00Z", "--param", "happened_to=2026-05-01T00:00:00Z"]
    whole, sharded = tmp_path / "whole.jsonl", tmp_path / "sharded.jsonl"
    first = run_cli(["extract", "list_events", "--limit", "100", *window, "--out", str(whole)], env)
    assert first.returncode == 0, first.stderr
    second = run_cli(["extract", "list_events", "--limit", "100", *window, "--shards", "4", "--out", str(sharded)], env)
    assert second.returncode == 0, second.stderr
    assert len(lines(whole)) == 600
    assert sorted(lines(sharded)) == sorted(lines(whole))
    assert not list(tmp_path.glob("sharded.jsonl.shard*"))


def test_shards_need_a_time_window(fake_tenant: Any, tmp_path: Path) -> None:
    result = run_cli(["extract", "list_segment", "--shards", "3", "--out", str(tmp_path / "x.jsonl")], cli_env(fake_tenant))
    assert result.returncode == 2
    assert "time-window" in result.stderr


def test_extract_all_writes_every_list_and_each_index_profiles(fake_tenant: Any, tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = run_cli(["extract-all", "--out", str(out), "--limit", "100"], cli_env(fake_tenant))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.glob("*.jsonl"))
    stable_lists = {"list_campaign", "list_events", "list_indexes", "list_ingest_jobs", "list_segment", "list_workflows"}
    assert stable_lists <= {name.removesuffix(".jsonl") for name in files}
    profiles = [name for name in files if name.startswith("list_profiles-")]
    assert len(profiles) == 2
    assert all(len(lines(out / name)) == 120 for name in profiles)
    assert "total" in result.stdout and "429s" in result.stdout
    assert not any(name.startswith("list_campaign_draft") for name in files)  # unstable-only, stable client


def test_demo_runs_end_to_end_on_a_small_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--out", str(tmp_path / "out"), "--rows", "150", "--profiles", "50", "--indexes", "2"])
    assert code == 0
    report = capsys.readouterr().out
    assert "list_segment" in report and "total" in report
    assert len(lines(tmp_path / "out" / "list_segment.jsonl")) == 150
