"""The printed report (markdown) and the targets the later speed work is judged by."""

from __future__ import annotations

from typing import Any

from .chains import KINDS, PROFILE
from .cli import SINK_LABELS, SINKS
from .settings import PAGE_SIZE
from .variants import VARIANT_LABELS

# Targets of the speed work (measured here, never asserted by tests): CPU per page over raw aiohttp
# + one JSON decode, rows/s and memory of one CLI process.
TARGET_CPU_RATIO = {"pages": 1.5, "call": 1.5, "paginate": 2.0}
TARGET_CLI_ROWS_PER_S = 100_000
TARGET_CLI_PEAK_RSS_MB = 100
TARGET_CLI_RSS_DRIFT_MB = 5
TARGET_WORKERS_SPEEDUP = 1.7
TARGET_RATE_FIDELITY = 0.98


def _failed(section: dict[str, Any] | None) -> str | None:
    """Why a section has no figures (skipped or failed), or None when it has them."""
    if section is None:
        return "not run"
    if "skipped" in section:
        return f"skipped: {section['skipped']}"
    if "error" in section:
        return f"FAILED: {section['error']}"
    return None


def _cells_by(throughput: dict[str, Any]) -> dict[tuple[str, str, int | None], dict[str, Any]]:
    return {(c["variant"], c["kind"], c["tasks"]): c for c in throughput["cells"]}


def _kb(chain: dict[str, Any]) -> str:
    return f"{chain['mean_page_bytes'] / 1000:.1f} KB"


def _cpu(cell: dict[str, Any]) -> str:
    low, high = cell["cpu_us_per_page_range"]
    spread = f" ({low:,.0f}–{high:,.0f})" if len(cell["rounds"]) > 1 else ""
    return f"{cell['cpu_us_per_page']:,.0f}{spread}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(cell: dict[str, Any]) -> str:
    return _number(cell["pages_per_s"])


def _ratio(cell: dict[str, Any]) -> str:
    ratio = cell.get("cpu_vs_baseline")
    return "-" if ratio is None else f"{ratio:.2f}x"


def throughput_markdown(results: dict[str, Any]) -> list[str]:
    static = results.get("static", {})
    throughput = results.get("throughput")
    reason = _failed(static) or _failed(throughput)
    if reason is not None:
        return [f"**Client CPU per page against static pages (nginx)**: {reason}", ""]
    assert throughput is not None
    lists = static["lists"]
    cells = _cells_by(throughput)
    lines = [
        (
            f"**Client CPU per page against static pages** ({static['nginx']} on its own core, "
            f"{throughput['rounds']} interleaved rounds of {throughput['seconds_per_round']:g} s per cell; "
            "µs of the client process's CPU per 100-item page, median round (range); pages/s median; "
            "x = CPU per page over raw aiohttp + json.loads)"
        ),
        "",
    ]
    header = (
        "| client | tasks | "
        + " | ".join(f"{kind.label} ({_kb(lists[kind.name])}) pages/s | CPU µs/page | x" for kind in KINDS)
        + " | peak RSS |"
    )
    lines += [header, "|---|---:|" + "---:|---:|---:|" * len(KINDS) + "---:|"]
    for tasks in throughput["tasks"]:
        for variant in throughput["variants"]:
            row = [VARIANT_LABELS[variant], str(tasks)]
            rss = 0.0
            for kind in KINDS:
                cell = cells[(variant, kind.name, tasks)]
                row += [_rate(cell), _cpu(cell), _ratio(cell)]
                rss = max(rss, cell["peak_rss_mb"] or 0.0)
            lines.append("| " + " | ".join(row) + f" | {rss:.0f} MB |")
    for sink in SINKS:
        cell = cells[(f"cli-{sink}", PROFILE.name, None)]
        row = [f"{SINK_LABELS[sink]}, 1 process", "-"]
        for kind in KINDS:
            row += [_rate(cell), _cpu(cell), _ratio(cell)] if kind is PROFILE else ["-", "-", "-"]
        lines.append("| " + " | ".join(row) + f" | {cell['peak_rss_mb']:.0f} MB |")
    server = [
        c["server_cpu_share_max"] for c in throughput["cells"] if c.get("server_cpu_share_max") is not None
    ]
    if static.get("naive_error"):
        lines += ["", f"The naive generated client is left out: {static['naive_error']}"]
    lines += [
        "",
        (
            f"CLI cells: `amperity-async extract list_profiles --limit {PAGE_SIZE}` of a "
            f"{throughput['cli_rows_per_round']:,}-row list to its end; rows, time and its CPU (10 ms ticks) "
            "read together at its first output and every 5 ms as the output grows: the cell is the work "
            "between the first and the last reading (start-up, the token, the first page and exit left out). "
            "The Segment list is the control-plane API's, which the CLI limits to 10 requests/s: "
            "no CLI cell. "
            "The CLI's Profile API bucket allows 2,000 pages/s."
            + (f" nginx used at most {max(server):.0%} of its core in any cell." if server else "")
        ),
        "",
    ]
    return lines


def large_extraction_markdown(results: dict[str, Any]) -> list[str]:
    large = results.get("large_extraction")
    reason = _failed(results.get("static", {})) or _failed(large)
    if reason is not None:
        return [f"**Large CLI extraction**: {reason}", ""]
    assert large is not None
    lines = [
        (
            f"**Large CLI extraction**: `amperity-async extract list_profiles --limit {PAGE_SIZE}` of "
            f"{large['rows']:,} profiles ({large['pages']:,} pages) from nginx, one process: "
            "rows/s from process "
            "start to exit, and steady (between the first and last output readings); memory read every 0.1 s "
            "(steady: median of the second "
            "half; drift: last quarter less second quarter); every id of the output checked against the list"
        ),
        "",
        (
            "| output | seconds | rows/s | steady rows/s | steady CPU µs/page "
            "| peak RSS | steady RSS | RSS drift | output |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for sink in SINKS:
        run = large["runs"][sink]
        steady = "-" if run["steady_mb"] is None else f"{run['steady_mb']:.0f} MB"
        drift = "-" if run["drift_mb"] is None else f"{run['drift_mb']:+.1f} MB"
        lines.append(
            f"| {SINK_LABELS[sink]} | {run['wall_seconds']:.1f} | {run['rows_per_s']:,.0f} | "
            f"{_number(run['steady_rows_per_s'])} | {_number(run['steady_cpu_us_per_page'])} | "
            f"{run['peak_rss_mb']:.0f} MB | {steady} | {drift} | "
            f"{'all ids, once each' if run['ids_checked'] else 'not checked'} |"
        )
    return lines + [""]


def scaling_markdown(results: dict[str, Any]) -> list[str]:
    if "workers_scaling" not in results:
        return []
    scaling = results["workers_scaling"]
    lines = ["**Several workers: `--workers` scaling and distributed rate fidelity**", ""]
    reason = _failed(scaling)
    if reason is not None:
        return lines + [reason, ""]
    assert scaling is not None
    if "status" in scaling:
        return lines + [f"{scaling['status']}: " + "; ".join(scaling.get("planned", [])), ""]
    return lines + [f"| {k} | {v} |" for k, v in scaling.items()] + [""]


def profile_markdown(results: dict[str, Any]) -> list[str]:
    prof = (results.get("throughput") or {}).get("profile")
    if not prof:
        return []
    if "error" in prof:
        return [f"(no profile: {prof['error']})", ""]
    variants = [v for v in VARIANT_LABELS if "layers" in prof.get(v, {})]
    if not variants:
        errors = {v: p.get("error") for v, p in prof.items() if isinstance(p, dict)}
        return [f"(no profile: {errors})", ""]
    lines = [
        (
            f"**Where the client's CPU goes** (py-spy, {prof['kind']} pages, {prof['tasks']} tasks, "
            "one sampled "
            "round; µs of client CPU per page, charged to the innermost frame of each layer)"
        ),
        "",
        "| layer | " + " | ".join(VARIANT_LABELS[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    names: list[str] = []
    for v in variants:
        names += [n for n in prof[v]["layers"] if n not in names]
    for name in names:
        cells = [f"{prof[v]['layers'].get(name, 0.0) * prof[v]['cpu_us_per_page']:,.0f}" for v in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | " + " | ".join(f"**{prof[v]['cpu_us_per_page']:,.0f}**" for v in variants) + " |"
    )
    return lines + [""]


def _refusals(rate: dict[str, Any]) -> str:
    """When the 429s came, how tight the client's own spacing got, and what each 429 cost."""
    times = [f"{t:.1f}" for t, status in rate["refusals_at_s"] if status == 429]
    parts = [f"at {', '.join(times)} s"] if times else []
    tightest = rate["tightest_span_of_limit_plus_one_sends_s"]
    if tightest is not None:
        parts.append(f"tightest 11 consecutive sends by the client: {tightest} s")
    if rate["rate_in_10s_after_each_429"]:
        after = ", ".join(f"{r:.1f}/s" for r in rate["rate_in_10s_after_each_429"])
        parts.append(f"sent in the 10 s after each 429: {after}")
    return f" ({'; '.join(parts)})" if parts else ""


def _rate_rows(rate: dict[str, Any]) -> list[str]:
    margin = rate["with_margin"]
    return [
        (
            f"| rate fidelity: {rate['tasks']} tasks, the client's default 10/s bucket vs the tenant's 10/s "
            f"limit, {rate['seconds']:.0f} s | {rate['achieved_rate']:.2f}/s = **{rate['fidelity']:.3f}** of "
            f"the limit; {rate['server_429s']} x 429{_refusals(rate)} |"
        ),
        (
            f"| the same with `rate_limit=TokenBucket({margin['budget']:g})` (a 1% margin, for comparison) | "
            f"{margin['achieved_rate']:.2f}/s = {margin['fidelity']:.3f} of the limit; "
            f"{margin['server_429s']} x 429{_refusals(margin)} |"
        ),
    ]


def _token_rows(tok: dict[str, Any]) -> list[str]:
    per = tok["token_requests_per_renewal"]
    return [
        (
            f"| token refresh: {tok['tasks']} tasks, {tok['token_lifetime']:g} s tokens (leeway "
            f"{tok['token_leeway']:g} s), {tok['seconds']:.0f} s | {tok['renewals']} renewals, "
            f"{tok['server_token_requests']} token requests (initial one included): "
            f"**{'-' if per is None else f'{per:.2f}'}** per renewal, largest burst {tok['largest_burst']}; "
            f"{tok['server_401s']} x 401; {tok['pages_per_s']:,.0f} pages/s |"
        )
    ]


def _faults_rows(ex: dict[str, Any]) -> list[str]:
    cmp_, sf = ex["comparison"], ex["server_faults"]
    return [
        (
            f"| `extract-all`, fault-free vs 10% 5xx + 2% drops + 1 token revocation | "
            f"{cmp_['files']} files, {cmp_['lines']:,} lines: "
            f"**{'identical' if ex['identical'] else 'DIFFERENT'}** "
            f"({cmp_['byte_identical_files']} byte for byte); {ex['clean']['seconds']:.1f} s vs "
            f"{ex['faulty']['seconds']:.1f} s = **{ex['wall_time_ratio']:.2f}x** "
            f"({sf['injected_errors']} x 5xx, "
            f"{sf['dropped']} drops, {sf['revocations']} revocation, {sf['unauthorized']} x 401) |"
        )
    ]


TENANT_ROWS = (
    ("rate_fidelity", "rate fidelity", _rate_rows),
    ("token_refresh", "token refresh", _token_rows),
    ("extraction", "extract-all under faults", _faults_rows),
)


def tenant_markdown(results: dict[str, Any]) -> list[str]:
    rows = []
    for key, name, format_rows in TENANT_ROWS:
        section = results.get(key)
        if section is not None:
            reason = _failed(section)
            rows += [f"| {name} | {reason} |"] if reason is not None else format_rows(section)
    if not rows:
        return []
    return ["**Against the fake tenant**", "", "| benchmark | result |", "|---|---|", *rows, ""]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with what was measured and whether it is met (None: not measured)."""
    rows: list[dict[str, Any]] = []
    throughput = results.get("throughput")
    if throughput and _failed(throughput) is None:
        top = max(throughput["tasks"])
        cells = _cells_by(throughput)
        for variant, limit in TARGET_CPU_RATIO.items():
            ratios = [cells[(variant, kind.name, top)]["cpu_vs_baseline"] for kind in KINDS]
            rows.append(
                {
                    "target": f"{variant}: CPU per page <= {limit:g}x raw aiohttp + JSON ({top} tasks; "
                    + " / ".join(k.label for k in KINDS)
                    + ")",
                    "measured": " / ".join(f"{r:.2f}x" for r in ratios),
                    "met": all(r <= limit for r in ratios),
                }
            )
    large = results.get("large_extraction")
    if large and _failed(large) is None:
        runs = [large["runs"][sink] for sink in SINKS]
        rows.append(
            {
                "target": f"CLI >= {TARGET_CLI_ROWS_PER_S:,} rows/s in one process (file / stdout)",
                "measured": " / ".join(f"{r['rows_per_s']:,.0f}" for r in runs),
                "met": all(r["rows_per_s"] >= TARGET_CLI_ROWS_PER_S for r in runs),
            }
        )
        rows.append(
            {
                "target": (
                    f"CLI peak RSS <= {TARGET_CLI_PEAK_RSS_MB} MB and flat "
                    f"(drift <= {TARGET_CLI_RSS_DRIFT_MB} MB)"
                ),
                "measured": " / ".join(
                    f"{r['peak_rss_mb']:.0f} MB, "
                    + ("-" if r["drift_mb"] is None else f"{r['drift_mb']:+.1f} MB")
                    for r in runs
                ),
                "met": all(
                    r["peak_rss_mb"] <= TARGET_CLI_PEAK_RSS_MB
                    and r["drift_mb"] is not None
                    and abs(r["drift_mb"]) <= TARGET_CLI_RSS_DRIFT_MB
                    for r in runs
                ),
            }
        )
    scaling = results.get("workers_scaling")
    if scaling is not None:
        speedup = scaling.get("speedup_2_workers")
        rows.append(
            {
                "target": f"--workers 2 >= {TARGET_WORKERS_SPEEDUP}x one worker",
                "measured": scaling.get("status", "") if speedup is None else f"{speedup:.2f}x",
                "met": None if speedup is None else speedup >= TARGET_WORKERS_SPEEDUP,
            }
        )
    rate = results.get("rate_fidelity")
    if rate and _failed(rate) is None:
        rows.append(
            {
                "target": f"rate fidelity >= {TARGET_RATE_FIDELITY} with zero 429s",
                "measured": f"{rate['fidelity']:.3f}, {rate['server_429s']} x 429",
                "met": rate["fidelity"] >= TARGET_RATE_FIDELITY and rate["server_429s"] == 0,
            }
        )
    tok = results.get("token_refresh")
    if tok and _failed(tok) is None:
        per = tok["token_requests_per_renewal"]
        rows.append(
            {
                "target": "exactly 1 token request per expiry",
                "measured": "n/a" if per is None else f"{per:.2f} ({tok['renewals']} renewals)",
                "met": per == 1.0 and tok["largest_burst"] == 1,
            }
        )
    ex = results.get("extraction")
    if ex and _failed(ex) is None:
        rows.append(
            {
                "target": "faults change nothing in the output",
                "measured": ("identical" if ex["identical"] else "DIFFERENT")
                + f", {ex['wall_time_ratio']:.2f}x time",
                "met": ex["identical"],
            }
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    loads = ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in m["load_by_section"].items())
    lines = [
        (
            f"Measured {results['finished']} ({results['mode']} mode: `{results['command']}`) "
            f"on {m['cpus']} CPUs, Python {m['python']}; servers pinned to CPU {m['server_cpus']}, "
            f"clients to CPU {m['client_cpus']}; "
            f"load average (1 min) at the start/end of each section: {loads}."
        ),
        "",
    ]
    lines += throughput_markdown(results)
    lines += large_extraction_markdown(results)
    lines += profile_markdown(results)
    lines += scaling_markdown(results)
    lines += tenant_markdown(results)
    lines += ["| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        met = "not measured" if t["met"] is None else "yes" if t["met"] else "**no**"
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"
