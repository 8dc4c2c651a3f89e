"""Bulk extraction to JSON Lines that cannot lose, double or lie.

- ``files``: one list into one checkpointed output (or a stream); ``walk`` reads the list,
  ``plan`` decides its requests and windows, ``journal`` pairs the output with its checkpoint.
- ``shards``: one list split by time window, read concurrently, merged in order (``ListJob``).
- ``everything``: every list of a tenant into one folder, with a manifest (``FolderJob``).
- ``specs``: picklable shard specs and ``run_shard``, to run anywhere; ``connection`` is what a
  worker needs to reach the tenant (no secrets), ``budgets`` the rate budget workers share.
- ``processes`` (with ``worker``, ``budget_server``): specs run by worker processes on one machine;
  ``on_dask``: specs run as tasks on a Dask cluster.
- ``output`` locks and writes files; ``checkpoint`` is the record; ``boundaries`` keeps items on a
  window boundary from being written twice; ``windows`` parses and splits time windows.
"""

from .budget_server import BudgetServer, LocalBudget
from .budgets import Budget, OwnBudget, Rates, RedisBudget, parse_rate
from .checkpoint import Checkpoint, Cursor, Position, Source, checkpoint_path
from .connection import Connection, credentials_from_env
from .errors import (
    CheckpointError,
    ExtractionError,
    ExtractionInputError,
    OutputError,
    OutputExistsError,
    OutputLockedError,
)
from .everything import MANIFEST_NAME, FolderJob, Manifest, extract_all
from .files import ExtractStats, extract_plan, extract_to_file, extract_to_stream
from .journal import Durability, Resumption
from .on_dask import run_on_dask
from .plan import Plan
from .shards import ListJob, extract_sharded
from .specs import ShardSpec, WorkReport, run_batch, run_shard, run_shard_sync
from .windows import Window, format_timestamp, parse_timestamp

__all__ = [
    "MANIFEST_NAME",
    "Budget",
    "BudgetServer",
    "Checkpoint",
    "Connection",
    "FolderJob",
    "ListJob",
    "LocalBudget",
    "OwnBudget",
    "Rates",
    "RedisBudget",
    "ShardSpec",
    "WorkReport",
    "credentials_from_env",
    "parse_rate",
    "run_batch",
    "run_on_dask",
    "run_shard",
    "run_shard_sync",
    "CheckpointError",
    "Cursor",
    "Durability",
    "ExtractStats",
    "ExtractionError",
    "ExtractionInputError",
    "Manifest",
    "OutputError",
    "OutputExistsError",
    "OutputLockedError",
    "Plan",
    "Position",
    "Resumption",
    "Source",
    "Window",
    "checkpoint_path",
    "extract_all",
    "extract_plan",
    "extract_sharded",
    "extract_to_file",
    "extract_to_stream",
    "format_timestamp",
    "parse_timestamp",
]
