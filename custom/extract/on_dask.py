"""Shards as tasks on a Dask distributed cluster (the ``dask`` extra): beyond one machine.

Kept thin on purpose. Dask schedules the tasks, moves them off workers that die and retries
failed ones; this library plans the shards (``ListJob``, ``FolderJob``), holds every worker to one
rate budget and checkpoints every output, so a task that runs again continues its own output.

- The budget must be shared by every worker process on every machine: a ``RedisBudget`` (or
  rates that are all ``UNLIMITED``). Its URL is read from ``AMPERITY_REDIS_URL`` on the workers
  when it carries a password.
- Credentials never travel with a task: each spec's ``Connection.credentials`` runs on the
  worker (by default it reads ``AMPERITY_CLIENT_ID``/``AMPERITY_CLIENT_SECRET`` or
  ``AMPERITY_TOKEN`` from the worker's environment). Dask pickles tasks through its scheduler
  and shows them on its dashboard, so a secret in a spec would be seen there.
- Outputs are written by the workers and merged or recorded by the driver: they must live on
  storage all of them see alike (one machine, or a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..ratelimit import UNLIMITED
from .budgets import APIS, Budget, OwnBudget, RedisBudget
from .specs import ShardSpec, WorkReport, combined, run_shard_sync

if TYPE_CHECKING:
    from distributed import Client


def run_on_dask(dask: Client, specs: Sequence[ShardSpec], budget: Budget, *, retries: int = 2) -> WorkReport:
    """Every spec as one task on ``dask``'s cluster; their reports once all are done.

    ``retries``: how often Dask runs a failed task again (each run continues the output)."""
    if not isinstance(budget, RedisBudget) and not (
        isinstance(budget, OwnBudget) and all(budget.rates.limit(api) is UNLIMITED for api in APIS)
    ):
        raise ConfigurationError(
            "tasks on a Dask cluster run in many processes: give them one shared budget, a RedisBudget "
            "(or rates that are all UNLIMITED)"
        )
    if not specs:
        return WorkReport((), combined(()))
    keys = [f"amperity-shard-{spec.run}-{spec.out.name}" for spec in specs]
    futures: list[Any] = dask.map(
        run_shard_sync, list(specs), budget=budget, key=keys, retries=retries, pure=False
    )
    reports: list[WorkReport] = dask.gather(futures)  # type: ignore[no-untyped-call]
    return WorkReport(tuple(s for r in reports for s in r.stats), combined(r.requests for r in reports))
