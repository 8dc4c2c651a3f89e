"""Lists answered one window at a time, and window boundaries that must not double an item.

The server stand-in ignores the ingest-jobs cursor (as documented upstream) while always sending a
fresh one, and refuses windows over 7 days; in its hostile mode it treats ``*_to`` as inclusive,
so items exactly on a boundary come back twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from windowed_server import WindowedServer

from amperity_async.custom.client import AmperityClient
from amperity_async.custom.extract import Manifest, Window, extract_all, extract_to_file
from amperity_async.custom.extract.boundaries import BoundaryGuard, timestamp_field
from amperity_async.custom.extract.windows import documented_window
from amperity_async.custom.operations import REGISTRY
from amperity_async.custom.tokens import ClientCredentials
from amperity_async.testing import FakeTenantConfig

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
INGEST = REGISTRY.get("list_ingest_jobs")
EVENTS = REGISTRY.get("list_events")
assert INGEST is not None and EVENTS is not None


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amperity_async", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ids(path: Path, key: str) -> list[str]:
    return [json.loads(line)[key] for line in path.read_text().splitlines()]


# windows


def test_chunks_cover_the_window_half_open_without_gap_or_overlap() -> None:
    window = Window(MARCH, MARCH + timedelta(days=30, hours=5))
    chunks = window.chunks(7)
    assert [c.end - c.start for c in chunks[:-1]] == [timedelta(days=7)] * 4
    assert chunks[0].start == window.start and chunks[-1].end == window.end
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert Window(MARCH, MARCH + timedelta(days=7)).chunks(7) == [Window(MARCH, MARCH + timedelta(days=7))]


def test_split_into_shards_is_contiguous_and_on_whole_seconds() -> None:
    window = Window(MARCH, MARCH + timedelta(days=10, seconds=7))
    shards = window.split(4)
    assert len(shards) == 4 and shards[0].start == window.start and shards[-1].end == window.end
    assert all(a.end == b.start and a.end.microsecond == 0 for a, b in zip(shards, shards[1:], strict=False))


def test_documented_windows_default_to_the_documented_maximum_back_from_now() -> None:
    assert INGEST is not None and INGEST.max_window_days == 7
    now = datetime(2026, 3, 15, 12, 0, 0, 250_000, tzinfo=UTC)
    window = documented_window(INGEST, now)
    assert window.end == datetime(2026, 3, 15, 12, 0, 1, tzinfo=UTC)  # "now" is still inside
    assert window.end - window.start == timedelta(days=7)


def test_guard_drops_what_the_previous_window_delivered_on_the_boundary() -> None:
    assert EVENTS is not None
    field = timestamp_field(EVENTS, "happened_from")
    assert field == "happened_at"
    boundary = MARCH + timedelta(days=1)
    guard = BoundaryGuard(EVENTS, field, remember_all=False)
    guard.enter(boundary, first=True)
    on_edge = {"event_id": "ae-1", "happened_at": "2026-03-02T00:00:00.000Z"}
    inside = {"event_id": "ae-2", "happened_at": "2026-03-01T10:00:00Z"}
    assert guard.admit([inside, on_edge]) == [inside, on_edge]
    assert guard.current == {"event_id:ae-1"}  # only the item on the boundary is remembered
    guard.enter(boundary + timedelta(days=1))
    later = {"event_id": "ae-3", "happened_at": "2026-03-02T00:00:00Z"}
    assert guard.admit([on_edge, later]) == [later]


# one request per window, through the real CLI


def job_times() -> list[datetime]:
    # Jobs on every internal boundary of a 30-day window split into 7-day chunks, and between them.
    boundaries = [MARCH + timedelta(days=7 * k) for k in range(1, 5)]
    between = [MARCH + timedelta(days=d, hours=5) for d in range(0, 30, 2)]
    return [MARCH, *boundaries, *between]


@pytest.mark.parametrize("inclusive_end", [False, True], ids=["half-open", "inclusive-to"])
def test_ingest_jobs_one_request_per_window_never_following_the_cursor(
    tmp_path: Path, inclusive_end: bool
) -> None:
    times = job_times()
    with WindowedServer(jobs=times, inclusive_end=inclusive_end) as server:
        out = tmp_path / "jobs.jsonl"
        window = ["--param", "created_from=2026-03-01", "--param", "created_to=2026-03-31"]
        result = run_cli(["extract", "list_ingest_jobs", *window, "--out", str(out)], server.env())
        assert result.returncode == 0, result.stderr
        asked = server.windows_asked("/ingest/jobs", "created_from", "created_to")
        sent_cursors = [q for _, q in server.requests if "next_token" in q]
    written = ids(out, "id")
    assert len(written) == len(set(written)) == len(times)  # every job once: none doubled, none lost
    assert sorted(written) == sorted(f"isj-{i:05d}" for i in range(len(times)))
    assert not sent_cursors
    assert len(asked) == 5 and asked[0][0] == MARCH and asked[-1][1] == MARCH + timedelta(days=30)
    assert all(end - start <= timedelta(days=7) for start, end in asked)
    assert all(a[1] == b[0] for a, b in zip(asked, asked[1:], strict=False))


def test_a_window_the_server_refuses_fails_in_one_line_keeping_earlier_windows(tmp_path: Path) -> None:
    with WindowedServer(jobs=job_times(), max_window_days=3) as server:  # stricter than documented
        out = tmp_path / "jobs.jsonl"
        window = ["--param", "created_from=2026-03-01", "--param", "created_to=2026-03-31"]
        result = run_cli(["extract", "list_ingest_jobs", *window, "--out", str(out)], server.env())
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "400" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_text() == ""  # the first window was refused: nothing written, nothing claimed
    state = json.loads(out.with_name(out.name + ".checkpoint").read_text())
    assert state["rows"] == 0 and state["done"] is False


def test_limit_is_refused_for_a_list_answered_in_one_response(tmp_path: Path) -> None:
    with WindowedServer(jobs=job_times()) as server:
        result = run_cli(
            [
                "extract",
                "list_ingest_jobs",
                "--limit",
                "10",
                "--param",
                "created_from=2026-03-01",
                "--param",
                "created_to=2026-03-05",
                "--out",
                str(tmp_path / "j.jsonl"),
            ],
            server.env(),
        )
    assert result.returncode == 2 and "takes no page size" in result.stderr


def test_ingest_jobs_need_their_window(tmp_path: Path) -> None:
    with WindowedServer() as server:
        result = run_cli(["extract", "list_ingest_jobs", "--out", str(tmp_path / "j.jsonl")], server.env())
    assert result.returncode == 2
    assert "--param created_from=..." in result.stderr and "at most 7 days" in result.stderr


def test_shards_on_an_inclusive_server_do_not_double_boundary_events(tmp_path: Path) -> None:
    start, end = MARCH, MARCH + timedelta(days=8)
    shard_edges = [start + timedelta(days=2 * k) for k in range(1, 4)]  # 4 shards of 2 days
    times = [*shard_edges, *shard_edges, *(start + timedelta(hours=7 * k) for k in range(27))]
    with WindowedServer(events=times, inclusive_end=True) as server:
        window = [
            "--param",
            f"happened_from={start.isoformat()}",
            "--param",
            f"happened_to={end.isoformat()}",
        ]
        whole, sharded = tmp_path / "whole.jsonl", tmp_path / "sharded.jsonl"
        first = run_cli(
            ["extract", "list_events", "--limit", "4", *window, "--out", str(whole)], server.env()
        )
        second = run_cli(
            ["extract", "list_events", "--limit", "4", *window, "--shards", "4", "--out", str(sharded)],
            server.env(),
        )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    events = ids(sharded, "event_id")
    assert len(events) == len(set(events)) == len(times)
    assert sorted(events) == sorted(ids(whole, "event_id"))
    assert not list(tmp_path.glob("sharded.jsonl.shard*"))


# extract-all: the documented window by default, kept in the manifest


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    # default_limit: a tenant whose windowed list pages by default would hide jobs past the first page.
    return FakeTenantConfig(
        rows=300, indexes=1, profiles_per_index=20, seed=4, rate_limits=False, default_limit=1000
    )


@pytest.mark.anyio
async def test_extract_all_reads_the_last_7_days_of_ingest_jobs(fake_tenant: Any, tmp_path: Path) -> None:
    auth = ClientCredentials(fake_tenant.client_id, fake_tenant.client_secret)
    now = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    async with AmperityClient(
        tenant=fake_tenant.config.tenant, auth=auth, base_url=fake_tenant.base_url
    ) as client:
        await extract_all(client, tmp_path / "all", now=now, limit=100)
        assert INGEST is not None
        reference = tmp_path / "reference.jsonl"
        week = {"created_from": now - timedelta(days=7), "created_to": now}
        await extract_to_file(client, INGEST, reference, params=week)
    jobs = ids(tmp_path / "all" / "list_ingest_jobs.jsonl", "id")
    assert jobs and jobs == ids(reference, "id")
    manifest = Manifest.load(tmp_path / "all")
    assert manifest is not None and manifest.done and manifest.started == now
    assert manifest.window_for(INGEST) == Window(now - timedelta(days=7), now)
