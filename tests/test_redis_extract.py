"""Extraction through a Redis budget when Redis dies mid-run: the configured behaviour, no lost rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

from amperity_async.testing import FakeTenantConfig


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=400, seed=5)


def env_for(tenant: Any, redis: RedisServer) -> dict[str, str]:
    return {
        **os.environ,
        "AMPERITY_TENANT": tenant.config.tenant,
        "AMPERITY_BASE_URL": tenant.base_url,
        "AMPERITY_CLIENT_ID": tenant.client_id,
        "AMPERITY_CLIENT_SECRET": tenant.client_secret,
        "AMPERITY_REDIS_URL": redis.url,
    }


def extract(out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amperity_async",
            "extract",
            "list_segment",
            "--limit",
            "20",
            "--out",
            str(out),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_pages(out: Path, pages: int) -> None:
    checkpoint = out.with_name(out.name + ".checkpoint")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if checkpoint.exists() and json.loads(checkpoint.read_text() or "{}").get("pages", 0) >= pages:
            return
        time.sleep(0.05)
    raise AssertionError(f"{out} never reached {pages} pages")


@pytest.mark.parametrize("mode", ["raise", "local"])
def test_redis_dies_mid_extraction(fake_tenant: Any, tmp_path: Path, mode: str) -> None:
    redis = RedisServer()
    redis.start()
    try:
        env = env_for(fake_tenant, redis)
        reference = tmp_path / "reference.jsonl"
        ref = extract(reference, {k: v for k, v in env.items() if k != "AMPERITY_REDIS_URL"})
        assert ref.wait(timeout=120) == 0
        out = tmp_path / "segments.jsonl"
        proc = extract(out, env, "--redis-unavailable", mode)
        wait_for_pages(out, 3)
        redis.stop()
        _, err = proc.communicate(timeout=120)
        if mode == "raise":
            assert proc.returncode == 1, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "127.0.0.1" in lines[0] and "Traceback" not in err
            redis.start()
            resumed = extract(out, env, "--resume")
            _, err = resumed.communicate(timeout=120)
            assert resumed.returncode == 0, err
        else:
            assert proc.returncode == 0, err
            assert "fall" in err.lower() or "local" in err.lower()
        assert (
            out.read_text().splitlines() == reference.read_text().splitlines()
        )  # no lost, no duplicated rows
    finally:
        redis.stop()
