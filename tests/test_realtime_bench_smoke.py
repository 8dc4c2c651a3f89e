"""benchmarks/realtime.py keeps working: its shortest run measures every cell, for both variants,
and prints the table with a verdict per target (the figures themselves are never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "realtime.py"


@pytest.mark.timeout(240)
def test_smoke_run_measures_every_cell_for_every_variant(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "realtime.json").read_text(encoding="utf-8"))
    cells = results["cells"]
    assert [(c["loop"], c["kind"], c.get("tasks")) for c in cells] == [
        ("closed", "lookup", 1),
        ("closed", "lookup", 100),
        ("closed", "lookup", 1000),
        ("closed", "event", 100),
        ("open", "lookup", None),
    ]
    for cell in cells:
        for variant in ("aiohttp", "httpx", "client"):
            measured = cell[variant]
            assert measured["requests"] > 0, (cell["kind"], variant)
            numbers = [v for k, v in measured.items() if k != "requests"]
            assert numbers and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in numbers)
    table = (tmp_path / "realtime.md").read_text(encoding="utf-8")
    assert table in proc.stdout
    assert table.count("client CPU µs each") == 4 and table.count("open loop") == 2
    assert all(("met" in line or "missed" in line) for line in table.splitlines() if "≤" in line)
    assert len(results["load_average"]) == 3
