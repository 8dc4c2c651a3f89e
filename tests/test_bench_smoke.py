"""The benchmark harness (benchmarks/run.py) keeps working: its shortest run on a tiny tenant
produces every section with numbers, and its bookkeeping helpers count what they should."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "benchmarks" / "run.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_smoke_run_writes_every_section_with_numbers(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 60
    results = json.loads((tmp_path / "latest.json").read_text())
    table = (tmp_path / "latest.md").read_text()
    assert table in proc.stdout  # the table is printed as well as written

    throughput = results["throughput"]
    cells = {(c["variant"], c["tasks"]) for c in throughput["cells"]}
    assert cells == {
        (v, n) for v in ("httpx", "httpx-aiohttp", "aiohttp", "paginate", "pages") for n in (1, 10, 50)
    }
    for cell in throughput["cells"]:
        assert cell["pages_per_s"] > 0 and cell["pages"] > 0
        assert _is_number(cell["client_cpu_us_per_page"]) and cell["peak_rss_mb"] > 10
    assert all(_is_number(v) and v > 0 for v in throughput["ratios"].values())

    rate = results["rate_fidelity"]
    assert _is_number(rate["fidelity"]) and rate["requests_ok"] > 0
    assert _is_number(rate["server_429s"]) and _is_number(rate["with_margin"]["fidelity"])

    tokens = results["token_refresh"]
    assert tokens["renewals"] >= 1 and _is_number(tokens["token_requests_per_renewal"])
    assert tokens["server_token_requests"] >= tokens["renewals"] + 1

    extraction = results["extraction"]
    assert extraction["comparison"]["files"] > 0 and extraction["comparison"]["lines"] > 0
    assert extraction["identical"] is True  # faults must never change what is extracted
    assert extraction["server_faults"]["revocations"] == 1
    assert _is_number(extraction["wall_time_ratio"])

    assert {t["target"].split(" ")[0] for t in results["targets"]} >= {
        "paginate",
        "rate",
        "exactly",
        "faults",
    }


def test_token_requests_are_grouped_by_renewal() -> None:
    bench = _harness()
    # An initial token, then two renewals 2 s apart; the second renewal raced (two requests).
    assert bench.group_renewals([0.0, 2.0, 4.0, 4.01], gap=0.5) == [1, 1, 2]
    assert bench.group_renewals([], gap=0.5) == []


def test_profile_samples_are_charged_to_the_innermost_known_layer() -> None:
    bench = _harness()
    send = (
        "main (benchmarks/run.py:1);AmperityClient._send (amperity_async/custom/client.py:250);"
        "BaseClient.build_request (httpx/_client.py:378);urlparse (urllib/parse.py:10) 3"
    )
    check = "main (benchmarks/run.py:1);ResponseValidator.decode (amperity_async/custom/validation.py:121) 1"
    collapsed = f"{send}\n{check}\ngarbage line\n"
    profile = bench.profile_breakdown(collapsed)
    assert profile["samples"] == 4
    assert profile["layers"]["httpx (request/response objects, URLs, headers, auth driver)"] == 0.75
    assert profile["layers"]["response checks (custom/validation.py, msgspec)"] == 0.25
    assert profile["functions_inclusive"]["AmperityClient._send"] == 0.75
    assert profile["functions_inclusive"]["ResponseValidator.decode"] == 0.25


def test_outputs_compare_by_sorted_lines_ignoring_checkpoints(tmp_path: Path) -> None:
    bench = _harness()
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for folder in (clean, faulty):
        folder.mkdir()
    (clean / "a.jsonl").write_bytes(b'{"id":1}\n{"id":2}\n')
    (faulty / "a.jsonl").write_bytes(b'{"id":2}\n{"id":1}\n')  # same lines, other order
    (clean / "a.jsonl.checkpoint").write_text("{}")
    assert bench.compare_outputs(clean, faulty)["identical"] is True
    (faulty / "b.jsonl").write_bytes(b"")
    (clean / "a.jsonl").write_bytes(b'{"id":1}\n{"id":3}\n')
    comparison = bench.compare_outputs(clean, faulty)
    assert comparison["identical"] is False
    assert comparison["extra_files"] == ["b.jsonl"] and comparison["differing_files"] == ["a.jsonl"]
