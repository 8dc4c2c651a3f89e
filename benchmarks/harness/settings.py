"""How long and how big each section runs, per mode, and the names every section shares."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
RUN_SCRIPT = BENCH_DIR / "run.py"
RESULTS_DIR = BENCH_DIR / "results"

PAGE_SIZE = 100
TENANT, CLIENT_ID, CLIENT_SECRET = "acme", "fake-client", "fake-secret"
SEED = 7


@dataclass(frozen=True)
class Settings:
    """One mode's run lengths; ``--quick`` and ``--smoke`` shrink the full run."""

    mode: str
    rounds: int
    """Interleaved rounds per cell; the table shows the median round."""
    cell_seconds: float
    warmup_seconds: float
    tasks: tuple[int, ...]
    segment_rows: int
    """Rows of the static segment list (100 per page)."""
    profile_rows: int
    """Rows of the static profile list, which the large CLI extraction reads from end to end."""
    cli_cell_rows: int
    """Rows each CLI cell extracts (``--max-items``), per round."""
    rate_seconds: float
    rate_tasks: int
    token_seconds: float
    token_lifetime: float
    token_leeway: float
    token_tasks: int
    faults_rows: int
    faults_indexes: int
    faults_profiles: int

    @classmethod
    def for_mode(cls, mode: str, tasks: tuple[int, ...] | None = None) -> Settings:
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(_MODES)}")
        settings = _MODES[mode]
        return replace(settings, tasks=tasks) if tasks else settings


_MODES = {
    "full": Settings(
        mode="full",
        rounds=5,
        cell_seconds=1.5,
        warmup_seconds=0.3,
        tasks=(50,),
        segment_rows=20_000,
        profile_rows=1_000_000,
        cli_cell_rows=100_000,
        rate_seconds=30.0,
        rate_tasks=50,
        token_seconds=10.0,
        token_lifetime=3.0,
        token_leeway=1.0,
        token_tasks=200,
        faults_rows=1000,
        faults_indexes=3,
        faults_profiles=3000,
    ),
    "quick": Settings(
        mode="quick",
        rounds=3,
        cell_seconds=0.75,
        warmup_seconds=0.2,
        tasks=(50,),
        segment_rows=10_000,
        profile_rows=200_000,
        cli_cell_rows=50_000,
        rate_seconds=10.0,
        rate_tasks=50,
        token_seconds=6.0,
        token_lifetime=3.0,
        token_leeway=1.0,
        token_tasks=200,
        faults_rows=500,
        faults_indexes=3,
        faults_profiles=1000,
    ),
    "smoke": Settings(
        mode="smoke",
        rounds=1,
        cell_seconds=0.2,
        warmup_seconds=0.1,
        tasks=(10,),
        segment_rows=2_000,
        profile_rows=5_000,
        cli_cell_rows=5_000,
        rate_seconds=1.0,
        rate_tasks=50,
        token_seconds=2.0,
        token_lifetime=1.0,
        token_leeway=0.3,
        token_tasks=200,
        faults_rows=100,
        faults_indexes=1,
        faults_profiles=200,
    ),
}
