"""Bulk extraction to JSON Lines that cannot lose, double or lie.

- ``files``: one list into one checkpointed output (or a stream); ``walk`` reads the list,
  ``plan`` decides its requests and windows, ``journal`` pairs the output with its checkpoint.
- ``shards``: one list split by time window, read concurrently, merged in order.
- ``everything``: every list of a tenant into one folder, with a manifest.
- ``output`` locks and writes files; ``checkpoint`` is the record; ``boundaries`` keeps items on a
  window boundary from being written twice; ``windows`` parses and splits time windows.
"""

from .checkpoint import Checkpoint, Cursor, Position, Source, checkpoint_path
from .errors import (
    CheckpointError,
    ExtractionError,
    ExtractionInputError,
    OutputError,
    OutputExistsError,
    OutputLockedError,
)
from .everything import MANIFEST_NAME, Manifest, extract_all
from .files import ExtractStats, extract_plan, extract_to_file, extract_to_stream
from .journal import Resumption
from .plan import Plan
from .shards import extract_sharded
from .windows import Window, format_timestamp, parse_timestamp

__all__ = [
    "MANIFEST_NAME",
    "Checkpoint",
    "CheckpointError",
    "Cursor",
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
