"""Room for two measurements of several worker processes, to be filled in with ``--workers``:

- CLI extraction scaling: ``amperity-async extract ... --workers N`` against the static pages (the
  same profile list as the large extraction), rows/s for 1 and 2 workers and their ratio (target:
  2 workers >= 1.7x one);
- distributed rate fidelity: several workers on one Redis budget against the fake tenant's strict
  limits, achieved rate / limit and 429s.

``workers_scaling`` receives the static server (None when nginx is missing) and returns what
``report.scaling_markdown`` prints. Until it measures, it says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cells import StaticTarget
from .processes import CpuPlan
from .settings import Settings

NOT_MEASURED = "not measured yet"
PLANNED = (
    "CLI extract --workers 1 / 2: rows/s and their ratio",
    "distributed rate fidelity: workers sharing one Redis budget vs the tenant's limits",
)


def workers_scaling(
    settings: Settings, cpus: CpuPlan, scratch: Path, static: StaticTarget | None
) -> dict[str, Any]:
    return {"status": NOT_MEASURED, "planned": list(PLANNED)}
