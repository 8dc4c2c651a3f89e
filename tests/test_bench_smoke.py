"""The benchmark harness (benchmarks/run.py, benchmarks/harness/) keeps measuring what it says.

Its shortest run produces every section with numbers (the static-page cells only where nginx is
installed; elsewhere they are skipped with how to install it); the static pages are what the client
reads, valid and complete; the helpers that turn rounds into figures count what they should; and a
child that fails, hangs or answers the wrong thing is named instead of being measured.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import cells, chains, cli, nginx, processes, profiling, tenant_sections, variants  # noqa: E402
from harness.settings import PAGE_SIZE  # noqa: E402

NGINX = nginx.find_nginx()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _run(
    *flags: str, out: Path, stem: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    """The harness's shortest run; its exit, and the results and table it wrote as ``stem``.json/.md."""
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert (out / f"{stem}.json").exists(), proc.stderr[-4000:]
    return proc, json.loads((out / f"{stem}.json").read_text()), (out / f"{stem}.md").read_text()


# the whole harness, shortest run


def test_smoke_run_measures_every_section(tmp_path: Path) -> None:
    proc, results, table = _run(out=tmp_path, stem="latest", timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert table and table in proc.stdout  # printed as well as written

    throughput = results["throughput"]
    if NGINX is None:
        assert "apt-get install nginx-light" in throughput["skipped"]
        assert "apt-get install nginx-light" in table
    else:
        lists = results["static"]["lists"]
        assert (lists["segment"]["rows"], lists["profile"]["rows"]) == (2000, 5000)
        assert {int(rows): head["rows"] for rows, head in lists["profile_heads"].items()} == {5000: 5000}
        expected_variants = set(variants.VARIANTS) | {"cli-file", "cli-stdout"}
        assert {c["variant"] for c in throughput["cells"]} == expected_variants
        for cell in throughput["cells"]:
            assert cell["rounds"] and all(r["pages"] > 0 for r in cell["rounds"])
            assert _is_number(cell["cpu_us_per_page"]) and _is_number(cell["cpu_vs_baseline"])
            assert 5 < cell["peak_rss_mb"] < 500  # its own memory, not the harness's
            if not cell["variant"].startswith("cli-"):
                assert cell["cpu_us_per_page"] > 0 and cell["pages_per_s"] > 0
        baseline = [c for c in throughput["cells"] if c["variant"] == variants.BASELINE]
        assert {c["kind"] for c in baseline} == {"segment", "profile"}
        assert all(c["cpu_vs_baseline"] == 1.0 for c in baseline)
        large = results["large_extraction"]
        for sink in cli.SINKS:
            run = large["runs"][sink]
            assert run["rows"] == 5000 and run["ids_checked"] is True
            assert run["rows_per_s"] > 0 and run["cpu_us_per_page"] > 0 and run["peak_rss_mb"] > 5
            # 50 pages may be over before the output is read twice: steady figures are optional here.
            assert run["steady_rows_per_s"] is None or run["steady_rows_per_s"] > 0
        assert "Large CLI extraction" in table and "all ids, once each" in table

    assert results["workers_scaling"]["status"] == "not measured in a smoke run"
    assert "not measured in a smoke run" in table

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
    for row in ("| rate fidelity: 50 tasks", "| token refresh: 200 tasks", "| `extract-all`, fault-free"):
        assert row in table

    loads = results["machine"]["load_by_section"]
    assert set(loads) == {
        "throughput",
        "large_extraction",
        "workers_scaling",
        "rate_fidelity",
        "token_refresh",
        "extraction",
    }
    assert {t["target"].split(":")[0].split(" ")[0] for t in results["targets"]} >= {
        "rate",
        "exactly",
        "faults",
        "--workers",
    }


def test_without_nginx_the_static_cells_are_skipped_with_how_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "nginx"
    flags = ("--only", "throughput", "--only", "large_extraction", "--nginx", str(missing))
    proc, results, table = _run(*flags, out=tmp_path, stem="only-large_extraction-throughput", timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for section in ("throughput", "large_extraction"):
        assert str(missing) in results[section]["skipped"]
        assert "apt-get install nginx-light" in results[section]["skipped"]
    assert "skipped" in table and "apt-get install nginx-light" in proc.stderr
    assert "lists" not in results["static"]  # nothing was generated for nothing to serve


# the static pages

Pages = tuple[Path, chains.StaticLists]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Pages:
    root = tmp_path_factory.mktemp("pages")
    return root, chains.generate_lists(root, segment_rows=300, profile_rows=500, heads=(200, 100))


def _every_chain(lists: chains.StaticLists) -> list[tuple[chains.PageKind, chains.Chain]]:
    return [(chains.SEGMENT, lists.segment), (chains.PROFILE, lists.profile)] + [
        (chains.PROFILE, head) for head in lists.profile_heads.values()
    ]


def _static_handler(root: Path) -> Any:
    """What nginx serves, from the same mapping (request path and cursor to file)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v0/oauth2/token"):
            return httpx.Response(200, json={"access_token": nginx.ACCESS_TOKEN, "expires_in": 86400})
        for kind in chains.KINDS:
            route = re.match(kind.route, request.url.path)
            if route:
                list_id = route.groupdict().get("bench_list")
                found = chains.page_file(root, kind, request.url.params.get("next_token"), list_id)
                if found is not None:
                    return httpx.Response(
                        200, content=found.read_bytes(), headers={"content-type": "application/json"}
                    )
        return httpx.Response(404, json={"status": 404, "message": "no such page"})

    return handle


def test_lists_link_every_page_and_end(pages: Pages) -> None:
    root, lists = pages
    assert (lists.segment.rows, lists.segment.pages, lists.segment.list_id) == (300, 3, None)
    assert (lists.profile.rows, lists.profile.pages) == (500, 5) and lists.profile.list_id
    assert {rows: head.pages for rows, head in lists.profile_heads.items()} == {200: 2, 100: 1}
    for kind, chain in _every_chain(lists):
        token: str | None = None
        seen = []
        while True:
            found = chains.page_file(root, kind, token, chain.list_id)
            assert found is not None
            body = json.loads(found.read_bytes())
            assert len(body["data"]) == PAGE_SIZE
            seen += [item["id"] for item in body["data"]]
            token = body.get("next_token")
            if token is None:
                break
        digest = chains.IdDigest.of(seen)
        assert (digest.count, digest.value) == (chain.rows, chain.ids_digest)
        assert len(set(seen)) == len(seen)
    # A head is the start of the whole list, ending where it ends.
    whole = json.loads(
        (chains.list_folder(root, chains.PROFILE, lists.profile.list_id) / "p000001.json").read_bytes()
    )
    head = json.loads(
        (
            chains.list_folder(root, chains.PROFILE, lists.profile_heads[200].list_id) / "p000001.json"
        ).read_bytes()
    )
    assert head["data"] == whole["data"] and "next_token" in whole and "next_token" not in head
    assert 5000 < lists.segment.mean_page_bytes < lists.profile.mean_page_bytes


@pytest.mark.parametrize(
    "token", ["p000099", "../segments/p000000", "p00001", "P000001", "p000001.json", "null"]
)
def test_a_cursor_that_names_no_page_finds_none(pages: Pages, token: str) -> None:
    root, lists = pages
    assert chains.page_file(root, chains.SEGMENT, token) is None
    assert chains.page_file(root, chains.PROFILE, token, lists.profile.list_id) is None
    assert (
        chains.page_file(root, chains.SEGMENT, None) == chains.page_file(root, chains.SEGMENT, "") is not None
    )


@pytest.mark.parametrize("list_id", [None, "", "..", "idx/../../segments", "idx-unknown"])
def test_a_profile_list_that_does_not_exist_finds_none(pages: Pages, list_id: str | None) -> None:
    assert chains.page_file(pages[0], chains.PROFILE, None, list_id) is None


@pytest.mark.anyio
async def test_the_client_reads_the_static_pages_as_valid_and_whole(pages: Pages) -> None:
    from amperity_async import AmperityClient, ClientCredentials
    from amperity_async.api.profiles import list_profiles
    from amperity_async.api.segments import list_segment

    root, lists = pages
    async with AmperityClient(
        tenant="acme",
        auth=ClientCredentials("id", "secret"),
        base_url="http://127.0.0.1:9/api",
        transport=httpx.MockTransport(_static_handler(root)),
    ) as client:
        segments = [s.id async for s in client.paginate(list_segment, limit=PAGE_SIZE)]
        profiles = []
        async for page in client.pages(list_profiles, lists.profile.list_id, limit=PAGE_SIZE):
            profiles += [item.id for item in page.data]  # every item checked against the spec and converted
    for chain, ids in ((lists.segment, segments), (lists.profile, profiles)):
        digest = chains.IdDigest.of(ids)
        assert (digest.count, digest.value) == (chain.rows, chain.ids_digest)


def test_id_digest_is_order_free_and_sees_a_lost_or_doubled_row() -> None:
    ids = [f"cl-{i}" for i in range(1000)]
    digest = chains.IdDigest.of(ids)
    assert chains.IdDigest.of(reversed(ids)).value == digest.value
    doubled_and_lost = ids[:-1] + ids[:1]
    assert chains.IdDigest.of(doubled_and_lost).count == digest.count
    assert chains.IdDigest.of(doubled_and_lost).value != digest.value


def test_static_lists_hold_whole_pages_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whole pages of 100"):
        chains.generate_lists(tmp_path, segment_rows=250, profile_rows=500)
    with pytest.raises(ValueError, match="the first 600 rows of a 500-row list"):
        chains.generate_lists(tmp_path, segment_rows=200, profile_rows=500, heads=(600,))
    with pytest.raises(ValueError, match="six-digit"):
        chains.cursor_of(1_000_000)


# nginx


@pytest.fixture
def static_server(pages: Pages, tmp_path: Path) -> Iterator[nginx.StaticServer]:
    assert NGINX is not None
    with nginx.StaticServer(NGINX, pages[0], tmp_path / "nginx", None) as server:
        yield server


@needs_nginx
def test_nginx_serves_the_pages_as_page_file_maps_them(
    static_server: nginx.StaticServer, pages: Pages
) -> None:
    root, lists = pages
    with httpx.Client(base_url=static_server.base_url) as http:
        for kind, chain in _every_chain(lists):
            path = kind.path(chain.list_id)
            for token in (None, "p000001")[: chain.pages]:
                response = http.get(path, params={"limit": "100"} | ({"next_token": token} if token else {}))
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/json"
                page = chains.page_file(root, kind, token, chain.list_id)
                assert page is not None and response.content == page.read_bytes()
            for bad in ("p000099", "../../etc/passwd", "x"):
                assert http.get(path, params={"next_token": bad}).status_code == 404
        assert http.get(chains.PROFILE.path("idx-unknown")).status_code == 404
        token = http.post("/v0/oauth2/token", data={"grant_type": "client_credentials"})
        assert token.status_code == 200 and token.json()["access_token"] == nginx.ACCESS_TOKEN
        assert http.get("/workflow/runs").status_code == 404


@needs_nginx
def test_nginx_stops_with_the_harness(pages: Pages, tmp_path: Path) -> None:
    assert NGINX is not None
    with nginx.StaticServer(NGINX, pages[0], tmp_path / "nginx", None) as server:
        pid = server.pid
        assert processes.process_rss_mb(pid) is not None
    with pytest.raises(OSError):
        os.kill(pid, 0)  # gone, not left running


def test_nginx_that_cannot_start_is_named(pages: Pages, tmp_path: Path) -> None:
    broken = tmp_path / "nginx"
    broken.write_text("#!/bin/sh\necho 'nginx: [emerg] something is wrong' >&2\nexit 1\n")
    broken.chmod(0o755)
    server = nginx.StaticServer(broken, pages[0], tmp_path / "scratch", None)
    with pytest.raises(
        processes.BenchmarkError, match="did not start: nginx: \\[emerg\\] something is wrong"
    ):
        server.__enter__()


@needs_nginx
def test_the_cli_reads_a_whole_list_and_its_rows_are_checked(
    pages: Pages, static_server: nginx.StaticServer, tmp_path: Path
) -> None:
    head = pages[1].profile_heads[200]
    extract = functools.partial(
        cli.run_extract, base_url=static_server.base_url, kind=chains.PROFILE, scratch=tmp_path, cpus=None
    )
    run = extract(chain=head, sink="stdout")
    assert (run.rows, run.pages) == (200, 2) and run.usage.cpu_seconds > 0
    # A list that says it holds other rows than it serves: the run is refused, not measured.
    with pytest.raises(processes.BenchmarkError, match="but not the list's"):
        extract(chain=dataclasses.replace(head, ids_digest=head.ids_digest ^ 1), sink="file")
    with pytest.raises(processes.BenchmarkError, match="wrote 200 rows where the list has 300"):
        extract(chain=dataclasses.replace(head, rows=300), sink="file")


# the figures


def test_a_cell_is_its_median_round_and_its_range() -> None:
    cell = cells.Cell("pages", "AmperityClient.pages", "segment", 50)
    for cpu in (0.9, 0.3, 0.5):  # seconds of CPU for 1000 pages in 1 s
        cell.rounds.append(
            {"pages": 1000, "seconds": 1.0, "cpu_seconds": cpu, "server_cpu_seconds": 0.1, "peak_rss_mb": 40}
        )
    summary = cell.summary()
    assert summary["cpu_us_per_page"] == pytest.approx(500)
    assert summary["cpu_us_per_page_range"] == pytest.approx([300, 900])
    assert summary["pages_per_s"] == 1000 and summary["server_cpu_share_max"] == pytest.approx(0.1)


def test_ratios_are_to_the_raw_aiohttp_json_baseline_of_the_same_page() -> None:
    summaries: list[dict[str, Any]] = [
        {"variant": "aiohttp", "kind": "segment", "tasks": 50, "cpu_us_per_page": 200.0},
        {"variant": "aiohttp", "kind": "profile", "tasks": 50, "cpu_us_per_page": 500.0},
        {"variant": "aiohttp", "kind": "profile", "tasks": 1, "cpu_us_per_page": 900.0},
        {"variant": "pages", "kind": "segment", "tasks": 50, "cpu_us_per_page": 300.0},
        {"variant": "pages", "kind": "profile", "tasks": 1, "cpu_us_per_page": 900.0},
        {"variant": "cli-file", "kind": "profile", "tasks": None, "cpu_us_per_page": 1000.0},
    ]
    cells.add_ratios(summaries)
    assert [s["cpu_vs_baseline"] for s in summaries] == [1.0, 1.0, 1.0, 1.5, 1.0, 2.0]


def test_a_cli_cell_is_the_work_between_its_first_and_last_output_marks(tmp_path: Path) -> None:
    output = tmp_path / "rows.jsonl"
    output.write_bytes(b"{}\n" * 5000)
    usage = processes.ChildUsage(
        0,
        3.0,
        2.0,
        40.0,
        output_marks=[
            processes.OutputMark(seconds=0.5, cpu_seconds=0.4, output_bytes=3 * 100),  # the first page
            processes.OutputMark(seconds=1.5, cpu_seconds=0.9, output_bytes=3 * 2500),
            processes.OutputMark(seconds=2.5, cpu_seconds=1.4, output_bytes=3 * 4900),
        ],
    )
    work = cli.steady_work(usage, output)
    assert work == {
        "pages": 48,
        "seconds": pytest.approx(2.0),
        "cpu_seconds": pytest.approx(1.0),
        "rows_before": 100,
    }
    assert cli.steady(cli.CliRun("file", 5000, usage, steady=work)) == work
    once = processes.ChildUsage(0, 3.0, 2.0, 40.0, output_marks=usage.output_marks[:1])
    assert cli.steady_work(once, output) is None
    with pytest.raises(processes.BenchmarkError, match="over before its output could be timed twice"):
        cli.steady(cli.CliRun("file", 5000, once, steady=None))


def test_memory_is_steady_when_it_stops_growing() -> None:
    flat = [(t / 10, 50.0 + (t % 2) * 0.1) for t in range(100)]
    assert cli.rss_profile(flat)["drift_mb"] == pytest.approx(0.0, abs=0.2)
    assert cli.rss_profile(flat)["steady_mb"] == pytest.approx(50.05, abs=0.06)
    leaking = [(t / 10, 40.0 + t) for t in range(100)]
    assert cli.rss_profile(leaking)["drift_mb"] == pytest.approx(50.0)
    assert cli.rss_profile(flat[:5])["drift_mb"] is None and cli.rss_profile([])["steady_mb"] is None


# children: measured, bounded, named


def test_a_child_is_reaped_with_its_own_cpu_and_memory_and_its_whole_output(tmp_path: Path) -> None:
    ballast = bytearray(120 * 1024 * 1024)  # a big parent: a child must not be charged with it
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    code = (
        "import sys, time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
        "sys.stdout.write('row\\n' * 200000)\n"
    )
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    sink = tmp_path / "out"
    assert proc.stdout is not None
    with sink.open("wb") as copy:
        usage = processes.watch_child(proc, started, timeout=30, drain=proc.stdout, sink=copy)
    assert usage.returncode == 0 and proc.returncode == 0
    assert sink.read_bytes() == b"row\n" * 200000
    assert 0.15 < usage.cpu_seconds < 5 and usage.wall_seconds >= 0.15
    assert 3 < usage.peak_rss_mb < 100
    first = usage.output_marks[0]
    assert 0.1 < first.cpu_seconds <= usage.cpu_seconds and 0 < first.output_bytes <= len(b"row\n" * 200000)
    del ballast


def test_output_to_a_file_is_marked_as_it_grows(tmp_path: Path) -> None:
    output = tmp_path / "rows"
    code = (
        "import time\n"
        f"out = open({str(output)!r}, 'w')\n"
        "time.sleep(0.3)\n"
        "for _ in range(3):\n"
        "    out.write('row\\n'); out.flush(); time.sleep(0.3)\n"
    )
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    usage = processes.watch_child(proc, started, timeout=30, output_file=output)
    sizes = [mark.output_bytes for mark in usage.output_marks]
    assert sizes == [4, 8, 12]  # marked when it first appeared, then each time it had grown
    assert 0.3 <= usage.output_marks[0].seconds < usage.output_marks[-1].seconds < usage.wall_seconds


def test_a_child_that_hangs_is_killed_and_named() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.perf_counter()
    with pytest.raises(processes.BenchmarkError, match="did not finish within 1 s"):
        processes.watch_child(proc, started, timeout=1)
    assert proc.returncode is not None and time.perf_counter() - started < 10


def test_a_silent_child_is_not_waited_on_forever() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    reader = processes.LineReader(proc.stdout, "the silent worker")
    try:
        with pytest.raises(processes.BenchmarkError, match="the silent worker said nothing"):
            reader.readline(0.3)
    finally:
        reader.close()
        processes.stop_process(proc)


def test_a_cell_that_fails_names_its_variant_and_page(tmp_path: Path) -> None:
    # Nothing listens there: the worker starts, then its round fails.
    spec = {"base_url": "http://127.0.0.1:9/api", "index_id": "idx-1", "naive": None}
    worker = cells.CellWorker("aiohttp", spec, None, tmp_path)
    try:
        worker.wait_ready()
        request = {"kind": "profile", "tasks": 2, "warmup": 0.1, "seconds": 0.1}
        with pytest.raises(processes.BenchmarkError, match="aiohttp on a profile page with 2 tasks failed"):
            worker.measure(request)
    finally:
        worker.stop()
    assert worker.proc.returncode == 0  # it took the end of its input as the end of the run


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiohttp
async def test_a_raw_baseline_refuses_an_answer_that_is_not_a_full_page(tmp_path: Path) -> None:
    from amperity_async.testing import FakeTenant

    # The fake tenant's cursors are not file names, and it does not know the static token: a 401.
    async with FakeTenant(rows=150, rate_limits=False) as tenant:
        variant = variants.RawAiohttp({"base_url": tenant.base_url, "index_id": "idx"})
        async with variant.cleanup:
            await variant.setup()
            with pytest.raises(variants.WrongPage, match="HTTP 401"):
                await variant.fetch(chains.SEGMENT, None)


# helpers kept from the fake-tenant sections


def test_token_requests_are_grouped_by_renewal() -> None:
    # An initial token, then two renewals 2 s apart; the second renewal raced (two requests).
    assert tenant_sections.group_renewals([0.0, 2.0, 4.0, 4.01], gap=0.5) == [1, 1, 2]
    assert tenant_sections.group_renewals([], gap=0.5) == []


def test_profile_samples_are_charged_to_the_innermost_known_layer() -> None:
    send = (
        "main (benchmarks/harness/variants.py:1);AmperityClient._send (amperity_async/custom/client.py:250);"
        "BaseClient.build_request (httpx/_client.py:378);urlparse (urllib/parse.py:10) 3"
    )
    check = "main (benchmarks/run.py:1);ResponseValidator.decode (amperity_async/custom/validation.py:121) 1"
    profile = profiling.profile_breakdown(f"{send}\n{check}\ngarbage line\n")
    assert profile["samples"] == 4
    assert profile["layers"]["httpx (request/response objects, URLs, headers, auth driver)"] == 0.75
    assert profile["layers"]["response checks (custom/validation.py, msgspec)"] == 0.25
    assert profile["functions_inclusive"]["AmperityClient._send"] == 0.75


def test_outputs_compare_by_sorted_lines_of_their_jsonl_files(tmp_path: Path) -> None:
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for folder in (clean, faulty):
        folder.mkdir()
    (clean / "a.jsonl").write_bytes(b'{"id":1}\n{"id":2}\n')
    (faulty / "a.jsonl").write_bytes(b'{"id":2}\n{"id":1}\n')  # same lines, other order
    (clean / "a.jsonl.checkpoint").write_text("{}")
    (faulty / "extract-all.checkpoint").write_text("{}")
    assert tenant_sections.compare_outputs(clean, faulty)["identical"] is True
    (faulty / "b.jsonl").write_bytes(b"")
    (clean / "a.jsonl").write_bytes(b'{"id":1}\n{"id":3}\n')
    comparison = tenant_sections.compare_outputs(clean, faulty)
    assert comparison["identical"] is False
    assert comparison["extra_files"] == ["b.jsonl"] and comparison["differing_files"] == ["a.jsonl"]
