"""Batched durability: pages written in groups after a checkpoint naming them, synced by pages and
seconds, and what a resume makes of whatever a stop left behind.

The journal is driven directly with a virtual clock (when writes and syncs happen is decided by
the clock, never by the machine's speed), then the CLI is killed at random moments that are not
lined up with its checkpoints, and a machine that loses what was not synced is simulated by putting
the last synced checkpoint back and cutting the output at random points after it.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from extract_support import checkpoint_of, cli_env, one_line, run_cli, start_cli, state

from amperity_async.custom.client import AmperityClient
from amperity_async.custom.clock import ManualClock
from amperity_async.custom.extract import (
    Checkpoint,
    CheckpointError,
    Connection,
    Cursor,
    Durability,
    ListJob,
    Resumption,
    Source,
    extract_sharded,
)
from amperity_async.custom.extract import output as output_module
from amperity_async.custom.extract.errors import ExtractionInputError
from amperity_async.custom.extract.journal import Journal
from amperity_async.custom.operations import REGISTRY
from amperity_async.custom.tokens import ClientCredentials
from amperity_async.testing import FakeTenantConfig

SHARD_WINDOW = {
    "happened_from": datetime(2025, 12, 1, tzinfo=UTC),
    "happened_to": datetime(2026, 5, 1, tzinfo=UTC),
}
SOURCE = Source("acme", "https://app.amperity.com/api", "2024-04-01", "list-events", (), {"limit": 20})


def page(number: int) -> bytes:
    return b"".join(b'{"event_id": "ae-%d-%d"}\n' % (number, row) for row in range(20))


def take(journal: Journal, number: int) -> None:
    journal.append(page(number), Cursor(0, f"cursor-{number}"), rows=20)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync the output module makes (output and checkpoints alike)."""
    calls: list[int] = []
    real = output_module.os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(output_module.os, "fsync", counting)
    return calls


def begin(out: Path, clock: ManualClock, durability: Durability, *, resume: bool = False) -> Journal:
    return Journal.begin(out, SOURCE, Resumption(resume=resume, durability=durability), clock=clock)


# 1. the journal on a virtual clock


def test_pages_are_synced_by_page_count_and_not_each(tmp_path: Path, fsyncs: list[int]) -> None:
    clock = ManualClock()
    with begin(tmp_path / "out.jsonl", clock, Durability(pages=5, seconds=3600)) as journal:
        started = len(fsyncs)
        for number in range(1, 5):
            take(journal, number)
            assert not journal.sync_due()
        assert len(fsyncs) == started, "nothing synced before the fifth page"
        take(journal, 5)
        assert journal.sync_due()
        journal.sync()
        assert len(fsyncs) == started + 2  # the output, then the checkpoint naming it committed
        assert journal.durable == journal.written == journal.position and journal.durable.pages == 5
    checkpoint = Checkpoint.load(checkpoint_of(tmp_path / "out.jsonl"))
    assert checkpoint is not None
    assert (checkpoint.rows, checkpoint.pages, checkpoint.pending) == (100, 5, None)


@pytest.mark.anyio
async def test_pages_are_synced_by_time(tmp_path: Path) -> None:
    clock = ManualClock()
    with begin(tmp_path / "out.jsonl", clock, Durability(pages=1000, seconds=0.5)) as journal:
        take(journal, 1)
        assert not journal.sync_due()
        await clock.advance(0.5)
        assert journal.sync_due()
        journal.sync()
        assert not journal.sync_due()


@pytest.mark.anyio
async def test_pages_are_written_in_groups_after_a_checkpoint_naming_the_group(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    clock = ManualClock()
    with begin(out, clock, Durability(pages=1000, seconds=3600)) as journal:
        take(journal, 1)  # the first page goes out at once
        assert out.read_bytes() == page(1)
        take(journal, 2)
        take(journal, 3)  # within the same 20 ms: they wait
        assert out.read_bytes() == page(1) and journal.written.pages == 1 and journal.position.pages == 3
        await clock.advance(0.02)
        take(journal, 4)
        assert out.read_bytes() == page(1) + page(2) + page(3) + page(4)
        on_disk = json.loads(checkpoint_of(out).read_text())
        assert on_disk["pending"]["pages"] == 4 and on_disk["committed"]["pages"] == 0  # named, not synced
        assert on_disk["rows"] == 0, "the summary claims only what is durable"


@pytest.mark.anyio
async def test_settling_writes_what_waits_and_a_failed_write_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    clock = ManualClock()
    with begin(out, clock, Durability(pages=1000, seconds=3600)) as journal:
        take(journal, 1)
        take(journal, 2)  # waiting to be written
        journal.settle()
        assert out.read_bytes() == page(1) + page(2) and journal.durable.pages == 2

        real = output_module.os.pwrite

        def half(fd: int, data: Any, offset: int) -> int:
            real(fd, bytes(data)[: len(data) // 2], offset)
            raise OSError(28, "No space left on device")

        await clock.advance(1)
        monkeypatch.setattr(output_module.os, "pwrite", half)
        with pytest.raises(output_module.OutputError, match="No space left"):
            take(journal, 3)
        journal.settle()  # the retry fails too: back to the last whole group
        monkeypatch.setattr(output_module.os, "pwrite", real)
        assert out.read_bytes() == page(1) + page(2)
        assert journal.durable.pages == journal.position.pages == 2
    with begin(out, ManualClock(), Durability(), resume=True) as resumed:
        assert resumed.position.pages == 2 and resumed.position.cursor.next_token == "cursor-2"


@pytest.mark.parametrize(
    ("kept", "cut", "resumed_pages"),
    [
        ("synced", "at-committed", 3),  # nothing after the sync reached the disk
        ("last", "inside-a-page", 3),  # the checkpoint naming the group did, part of the group too
        ("last", "at-pending", 6),  # all of it did
    ],
)
@pytest.mark.anyio
async def test_a_machine_that_lost_what_was_not_synced_resumes_from_the_last_sync(
    tmp_path: Path, kept: str, cut: str, resumed_pages: int
) -> None:
    out = tmp_path / "out.jsonl"
    clock = ManualClock()
    with begin(out, clock, Durability(pages=3, seconds=3600)) as journal:
        for number in range(1, 4):
            take(journal, number)
            await clock.advance(0.05)  # every page is written as it comes
        journal.sync()
        synced = checkpoint_of(out).read_bytes()
        committed = journal.durable.length
        for number in range(4, 7):
            take(journal, number)
            await clock.advance(0.05)
        pending = journal.written.length
    # What a disk that keeps renames in order keeps: the synced checkpoint and the rows it names,
    # or a later checkpoint and the rows it names as pending, some or all of them.
    length = {"at-committed": committed, "inside-a-page": committed + 31, "at-pending": pending}[cut]
    with open(out, "r+b") as handle:
        handle.truncate(length)
    if kept == "synced":
        checkpoint_of(out).write_bytes(synced)
    with begin(out, ManualClock(), Durability(), resume=True) as resumed:
        assert resumed.position.pages == resumed_pages and resumed.durable == resumed.position
        assert out.read_bytes() == b"".join(page(n) for n in range(1, resumed_pages + 1))


def test_rows_appended_after_the_last_page_written_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with begin(out, ManualClock(), Durability(pages=1000, seconds=3600)) as journal:
        take(journal, 1)  # written, not synced: the checkpoint names it pending
    with open(out, "ab") as handle:
        handle.write(b'{"event_id": "foreign"}\n')
    with pytest.raises(CheckpointError, match="longer"):
        begin(out, ManualClock(), Durability(), resume=True)


@pytest.mark.parametrize(
    ("pages", "seconds"), [(0, 1.0), (True, 1.0), (1, 0), (1, -2.5), (1, float("nan")), (1, float("inf"))]
)
def test_a_durability_that_cannot_be_kept_is_refused(pages: Any, seconds: Any) -> None:
    with pytest.raises(ExtractionInputError, match="sync"):
        Durability(pages=pages, seconds=seconds)


# 2. the CLI, stopped at any moment


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=600, seed=11, rate_limits=False)


EVENTS = ["extract", "list_events", "--limit", "20"]


def test_kills_at_random_moments_then_resume_give_the_bytes_of_one_clean_run(
    fake_tenant: Any, tmp_path: Path
) -> None:
    env = cli_env(fake_tenant)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "events.jsonl"
    assert run_cli([*EVENTS, "--out", str(reference)], env).returncode == 0
    dice = random.Random(20261129)
    kills = 0
    for attempt in range(12):
        proc = start_cli(
            [*EVENTS, "--out", str(out), "--sync-seconds", "0.05", *(["--resume"] if attempt else [])], env
        )
        deadline = time.monotonic() + 60
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(dice.uniform(0, 0.3))  # anywhere: between syncs, inside a group, in a sync
        if proc.poll() is not None:
            proc.communicate()
            break
        proc.kill()
        proc.communicate(timeout=60)
        kills += 1
        if checkpoint_of(out).exists():
            checkpoint = Checkpoint.load(checkpoint_of(out))
            assert checkpoint is not None and checkpoint.rows <= len(out.read_bytes().splitlines())
    assert kills >= 2
    finished = run_cli([*EVENTS, "--out", str(out), "--resume"], env)
    assert finished.returncode == 0, finished.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert state(out)["done"] is True and state(out)["rows"] == 600


def test_sync_flags_are_checked(fake_tenant: Any, tmp_path: Path) -> None:
    env = cli_env(fake_tenant)
    for flag, value in (("--sync-pages", "0"), ("--sync-seconds", "0"), ("--sync-seconds", "soon")):
        refused = run_cli([*EVENTS, "--out", str(tmp_path / "x.jsonl"), flag, value], env)
        assert refused.returncode == 2 and flag in one_line(refused)
    every_page = run_cli([*EVENTS, "--out", str(tmp_path / "y.jsonl"), "--sync-pages", "1"], env)
    assert every_page.returncode == 0 and len((tmp_path / "y.jsonl").read_bytes().splitlines()) == 600


@pytest.mark.fake_tenant(rows=120, rate_limits=False)
def test_shards_are_synced_as_asked(fake_tenant: Any, tmp_path: Path, fsyncs: list[int]) -> None:
    """``--sync-pages``/``--sync-seconds`` reach every shard: in this process (``extract_sharded``)
    and in worker processes (through each ``ShardSpec``)."""
    op = REGISTRY.get("list_events")
    assert op is not None
    params = {**SHARD_WINDOW, "limit": 10}  # 12 pages over 2 shards

    async def synced(out: Path, durability: Durability | None) -> int:
        auth = ClientCredentials(fake_tenant.client_id, fake_tenant.client_secret)
        async with AmperityClient(
            tenant=fake_tenant.config.tenant, auth=auth, base_url=fake_tenant.base_url
        ) as client:
            before = len(fsyncs)
            await extract_sharded(client, op, out, shards=2, params=params, durability=durability)
            return len(fsyncs) - before

    default = anyio.run(synced, tmp_path / "default.jsonl", None)
    every_page = anyio.run(synced, tmp_path / "every-page.jsonl", Durability(pages=1))
    assert (tmp_path / "every-page.jsonl").read_bytes() == (tmp_path / "default.jsonl").read_bytes()
    assert every_page >= default + 12  # at least one more sync for each of the 12 pages

    connection = Connection(fake_tenant.config.tenant, fake_tenant.base_url)
    asked = Durability(pages=7, seconds=2.0)
    with ListJob.begin(
        connection, op, tmp_path / "workers.jsonl", shards=2, params=params, durability=asked
    ) as job:
        assert [spec.durability for spec in job.specs] == [asked, asked]
