"""An extraction on a Dask LocalCluster (2 worker processes) with a Redis budget: the output of one
process, byte for byte; a shard started elsewhere and run again continues; credentials stay on the
workers; a budget only one process could keep is refused."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis_server import RedisServer

from amperity_async.custom.client import AmperityClient
from amperity_async.custom.errors import ConfigurationError
from amperity_async.custom.extract import (
    Connection,
    ExtractStats,
    FolderJob,
    ListJob,
    OwnBudget,
    Rates,
    RedisBudget,
    ShardSpec,
    extract_all,
    extract_sharded,
    run_on_dask,
    run_shard,
)
from amperity_async.custom.operations import REGISTRY
from amperity_async.custom.tokens import ClientCredentials
from amperity_async.testing import FakeTenantConfig

distributed = pytest.importorskip("distributed")

WINDOW = {"happened_from": datetime(2025, 12, 1, tzinfo=UTC), "happened_to": datetime(2026, 5, 1, tzinfo=UTC)}
EVENTS = REGISTRY.get("list_events")
assert EVENTS is not None


@pytest.fixture
def fake_tenant_config() -> FakeTenantConfig:
    return FakeTenantConfig(rows=240, indexes=2, profiles_per_index=120, seed=9)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(fake_tenant: Any, redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Two worker processes whose environment holds the credentials and the Redis URL."""
    monkeypatch.setenv("AMPERITY_CLIENT_ID", fake_tenant.client_id)
    monkeypatch.setenv("AMPERITY_CLIENT_SECRET", fake_tenant.client_secret)
    monkeypatch.setenv("AMPERITY_REDIS_URL", redis.url)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def client_for(tenant: Any) -> AmperityClient:
    auth = ClientCredentials(tenant.client_id, tenant.client_secret)
    return AmperityClient(tenant=tenant.config.tenant, auth=auth, base_url=tenant.base_url)


async def single_process(tenant: Any, folder: Path) -> None:
    async with client_for(tenant) as client:
        await extract_sharded(
            client, EVENTS, folder / "events.jsonl", shards=4, params={**WINDOW, "limit": 20}
        )
        await extract_all(client, folder / "all", limit=50)


def data_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".jsonl"}


def test_a_dask_cluster_writes_the_output_of_one_process(
    fake_tenant: Any, cluster: Any, redis: RedisServer, tmp_path: Path
) -> None:
    anyio.run(single_process, fake_tenant, tmp_path)
    connection = Connection(fake_tenant.config.tenant, fake_tenant.base_url)
    assert "secret" not in repr(connection) and fake_tenant.client_secret.encode() not in pickle.dumps(
        connection
    )
    budget = RedisBudget(Rates())  # the URL: AMPERITY_REDIS_URL on each worker

    out = tmp_path / "dask-events.jsonl"
    with ListJob.begin(connection, EVENTS, out, shards=4, params={**WINDOW, "limit": 20}) as job:
        assert len(job.specs) == 4
        report = run_on_dask(cluster, job.specs, budget)
        job.finish(sum(s.pages for s in report.stats))
    assert out.read_bytes() == (tmp_path / "events.jsonl").read_bytes()
    assert report.requests.rate_limited == 0 and sum(s.rows for s in report.stats) == 240

    async def plan_folder() -> FolderJob:
        async with client_for(fake_tenant) as client:  # reads the indexes whose profiles are outputs
            return await FolderJob.begin(client, tmp_path / "dask-all", limit=50, connection=connection)

    async def finish(job: FolderJob) -> None:
        async with job:
            await job.finish()

    folder_job = anyio.run(plan_folder)
    run_on_dask(cluster, folder_job.specs, budget)
    anyio.run(finish, folder_job)
    assert data_files(tmp_path / "dask-all") == data_files(tmp_path / "all")
    assert fake_tenant.stats["rate_limited"] == 0


def test_a_shard_run_again_on_the_cluster_continues_its_output(
    fake_tenant: Any, cluster: Any, redis: RedisServer, tmp_path: Path
) -> None:
    connection = Connection(fake_tenant.config.tenant, fake_tenant.base_url)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "events.jsonl"

    async def reference_run() -> None:
        async with client_for(fake_tenant) as client:
            await extract_sharded(client, EVENTS, reference, shards=2, params={**WINDOW, "limit": 10})

    anyio.run(reference_run)
    with ListJob.begin(connection, EVENTS, out, shards=2, params={**WINDOW, "limit": 10}) as job:

        async def part_of_the_first_shard() -> None:
            async with client_for(fake_tenant) as client:
                with anyio.CancelScope() as scope:  # a worker that died part-way

                    def stop_after_two_pages(stats: ExtractStats) -> None:
                        if stats.pages >= 2:
                            scope.cancel()

                    await run_shard(job.specs[0], client, on_page=stop_after_two_pages)

        anyio.run(part_of_the_first_shard)
        assert 0 < len(job.specs[0].out.read_bytes())
        report = run_on_dask(cluster, job.specs, RedisBudget(Rates()))
        job.finish(sum(s.pages for s in report.stats))
    assert out.read_bytes() == reference.read_bytes()
    assert any(s.resumed for s in report.stats)


def test_a_budget_of_one_process_is_refused_on_a_cluster(tmp_path: Path) -> None:
    spec = ShardSpec(
        Connection("acme", "https://app.amperity.com/api"), "list_segment", tmp_path / "x", "run"
    )
    with pytest.raises(ConfigurationError, match="RedisBudget"):
        run_on_dask(object(), [spec], OwnBudget())  # type: ignore[arg-type]
