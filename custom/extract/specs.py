"""Shards: picklable units of an extraction, and running them wherever a worker is.

A ``ShardSpec`` names one list (operation, arguments, parameters, e.g. one time window of it), the
file it goes to and the run that file belongs to. It holds no credential (see ``Connection``).
``run_shard`` extracts it into its checkpointed output: it continues that output where it
stopped when its checkpoint belongs to the same run, or starts it when there is none, so running a
spec again after a crash, a kill or a scheduler's retry never loses or doubles a row. Whoever
planned the specs (``ListJob``, ``FolderJob``) has already refused or cleared outputs of other runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from ..client import AmperityClient
from ..errors import ConfigurationError
from ..operations import REGISTRY, OperationInfo
from ..transport import RequestCounts, TransportStats
from .budgets import Budget, OwnBudget
from .connection import Connection
from .files import ExtractStats, ProgressHook, extract_plan
from .journal import Durability, Resumption
from .plan import Plan


@attrs.frozen
class ShardSpec:
    """One list, or one window of a list, into one file, for one run."""

    connection: Connection
    operation: str
    """The operation's name (``list_events``); the worker finds it in its own operation index."""
    out: Path
    run: str
    args: tuple[Any, ...] = ()
    params: Mapping[str, Any] = attrs.field(factory=dict)
    max_items: int | None = None
    durability: Durability = Durability()
    """How often the worker syncs the shard and its checkpoint (``--sync-pages``/``--sync-seconds``)."""

    def operation_info(self) -> OperationInfo:
        op = REGISTRY.get(self.operation)
        if op is None:
            raise ConfigurationError(
                f"this worker's amperity-async does not know the operation {self.operation!r}"
            )
        return op

    def plan(self) -> Plan:
        return Plan.build(self.operation_info(), self.args, self.params, self.max_items)


@attrs.frozen
class WorkReport:
    """What running some shards with one client did: each output's stats and the client's requests."""

    stats: tuple[ExtractStats, ...]
    requests: TransportStats


async def run_shard(
    spec: ShardSpec,
    client: AmperityClient,
    *,
    on_page: ProgressHook | None = None,
    stats: ExtractStats | None = None,
) -> ExtractStats:
    """Extract ``spec`` into ``spec.out`` with ``client`` (which must be for the spec's tenant)."""
    difference = spec.connection.difference(client)
    if difference is not None:
        raise ConfigurationError(f"the shard {spec.out.name} is for another client: {difference}")
    how = Resumption(resume=True, run=spec.run, durability=spec.durability)
    return await extract_plan(client, spec.plan(), spec.out, how, stats=stats, on_page=on_page)


async def run_concurrently(
    specs: Sequence[ShardSpec], client: AmperityClient, *, on_page: ProgressHook | None = None
) -> list[ExtractStats]:
    """Every spec at once with one client (one process's share of an extraction)."""
    results = [ExtractStats(operation=spec.operation, target=str(spec.out)) for spec in specs]
    async with anyio.create_task_group() as tg:
        for spec, stats in zip(specs, results, strict=True):
            tg.start_soon(_run_into, spec, client, on_page, stats)
    return results


async def _run_into(
    spec: ShardSpec, client: AmperityClient, on_page: ProgressHook | None, stats: ExtractStats
) -> None:
    await run_shard(spec, client, on_page=on_page, stats=stats)


async def run_batch(
    specs: Sequence[ShardSpec], budget: Budget | None = None, *, on_page: ProgressHook | None = None
) -> WorkReport:
    """Specs of one connection with a client of this process, limited by ``budget`` (default: this
    process's own buckets at the documented limits)."""
    if not specs:
        return WorkReport((), TransportStats())
    connection = specs[0].connection
    if any(spec.connection != connection for spec in specs):
        raise ConfigurationError("a batch of shards must share one connection")
    async with (budget or OwnBudget()).limiters(connection.tenant) as limiters:
        async with connection.client(limiters) as client:
            stats = await run_concurrently(specs, client, on_page=on_page)
            return WorkReport(tuple(stats), client.stats)


def run_shard_sync(spec: ShardSpec, budget: Budget | None = None) -> WorkReport:
    """``run_batch`` of one spec on a fresh event loop: a task for a scheduler's worker thread."""
    report: WorkReport = anyio.run(run_batch, [spec], budget)
    return report


def combined(parts: Iterable[TransportStats]) -> TransportStats:
    """The request counters of several clients (workers) added up, per operation too."""
    total = TransportStats()
    for part in parts:
        _add(total, part)
        for name, counts in part.by_operation.items():
            _add(total.by_operation.setdefault(name, RequestCounts()), counts)
    return total


def _add(into: RequestCounts, counts: RequestCounts) -> None:
    for field in attrs.fields(RequestCounts):
        setattr(into, field.name, getattr(into, field.name) + getattr(counts, field.name))
