"""Merging shard files: the same bytes as admitting every line through the boundary guard.

The merge copies blocks of lines and looks at a block line by line only when it may matter. These
tests hold it to the plain definition (each line decoded and put through ``BoundaryGuard`` in
window order) on shards a hostile server could produce: items on the boundaries returned by both
windows, timestamps in every form ISO-8601 allows (offsets that move the date, no offset, date
only, week dates, basic format, fractions past microseconds), values of other types, lines
longer than a block, and blocks of a few lines.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from amperity_async.custom.extract import ExtractionError, OutputError
from amperity_async.custom.extract import merge as merge_module
from amperity_async.custom.extract.boundaries import BoundaryGuard, timestamp_field
from amperity_async.custom.extract.merge import merged_blocks
from amperity_async.custom.extract.windows import Window
from amperity_async.custom.operations import REGISTRY, OperationInfo

EVENTS = REGISTRY.get("list_events")
JOBS = REGISTRY.get("list_ingest_jobs")
WHOLE = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC))
_encode = msgspec.json.Encoder().encode


def guarded_lines(
    op: OperationInfo, low: str, windows: Sequence[Window], parts: Sequence[Path]
) -> Iterator[bytes]:
    """The definition: every line decoded and admitted (or not) by the guard, window by window."""
    guard = BoundaryGuard(op, timestamp_field(op, low), remember_all=not op.paginated)
    for index, (window, part) in enumerate(zip(windows, parts, strict=True)):
        guard.enter(window.end, first=index == 0)
        for line in part.read_bytes().splitlines(keepends=True):
            if not guard.active or guard.admit([msgspec.json.decode(line)]):
                yield line


def renderings(instant: datetime) -> list[Any]:
    """Ways a server may write ``instant`` (or something that is not a timestamp at all)."""
    east, west = timezone(timedelta(hours=13)), timezone(timedelta(hours=-11, minutes=-30))
    return [
        instant.isoformat().replace("+00:00", "Z"),
        instant.isoformat(),
        instant.astimezone(east).isoformat(),  # the next day, locally
        instant.astimezone(west).isoformat(),  # the day before, locally
        instant.replace(tzinfo=None).isoformat(),  # no offset: UTC
        instant.strftime("%Y%m%dT%H%M%SZ"),  # basic format
        instant.strftime("%G-W%V-%uT%H:%M:%S+00:00"),  # week date
        instant.date().isoformat(),  # date only: midnight
        instant.strftime("%Y-%m-%dT%H:%M:%S.0000004Z"),  # below a microsecond: cut off
        instant.strftime("%Y-%m-%dT%H:%M:%S.9999996Z"),
        " " + instant.isoformat(),
        instant.strftime("%Y-%m-%dT%H:%M:%S") + "z",
        int(instant.timestamp()),
        None,
        "not a time",
    ]


def write_shards(
    folder: Path,
    windows: Sequence[Window],
    rng: random.Random,
    *,
    inclusive: bool,
    key: str,
    field: str | None,
) -> list[Path]:
    """Each window's items, with those on its end repeated by the next window when ``inclusive``."""
    parts: list[Path] = []
    spill: list[dict[str, Any]] = []
    serial = 0
    for index, window in enumerate(windows):
        items = list(spill)
        spill = []
        span = (window.end - window.start).total_seconds()
        for _ in range(rng.randrange(20, 60)):
            serial += 1
            at = window.start + timedelta(seconds=rng.randrange(int(span)))
            if rng.random() < 0.15:
                at = window.end  # on the boundary
            elif rng.random() < 0.1:
                at = window.end - timedelta(microseconds=1)
            item: dict[str, Any] = {key: f"it-{serial}", "body": "x" * rng.choice([10, 100, 3000])}
            if field is not None:
                item[field] = rng.choice(renderings(at))
                if rng.random() < 0.05:
                    del item[field]
            items.append(item)
            if inclusive and at == window.end and index + 1 < len(windows):
                spill.append(item)
        rng.shuffle(items)
        if items and rng.random() < 0.2:
            items.append(dict(items[0]))  # the same item twice in one window
        part = folder / f"out.jsonl.shard{index}"
        part.write_bytes(b"".join(_encode(item) + b"\n" for item in items))
        parts.append(part)
    return parts


@pytest.mark.parametrize("block_size", [64, 4096, 1 << 20])
@pytest.mark.parametrize("seed", range(12))
def test_merge_writes_what_the_guard_admits_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, block_size: int
) -> None:
    assert EVENTS is not None and JOBS is not None
    monkeypatch.setattr(merge_module, "BLOCK_SIZE", block_size)
    rng = random.Random(seed)
    windows = WHOLE.split(rng.randrange(1, 6))
    if seed % 3 == 2:  # no timestamp field in the items: the guard remembers whole windows
        op, low, key, field = JOBS, "created_from", "id", None
    else:
        op, low, key, field = EVENTS, "happened_from", "event_id", "happened_at"
    parts = write_shards(tmp_path, windows, rng, inclusive=seed % 2 == 0, key=key, field=field)

    merged = b"".join(merged_blocks(op, low, windows, parts))

    assert merged == b"".join(guarded_lines(op, low, windows, parts))
    assert merged.count(b"\n") == len(merged.splitlines())


def test_an_item_on_a_boundary_written_with_any_offset_is_written_once(tmp_path: Path) -> None:
    assert EVENTS is not None
    windows = WHOLE.split(2)
    boundary = windows[0].end
    for index, rendering in enumerate(r for r in renderings(boundary) if isinstance(r, str)):
        on_edge = {"event_id": f"edge-{index}", "happened_at": rendering}
        inside = {"event_id": f"in-{index}", "happened_at": "2026-01-02T00:00:00Z"}
        later = {"event_id": f"later-{index}", "happened_at": "2026-01-05T00:00:00Z"}
        first, second = tmp_path / f"a{index}", tmp_path / f"b{index}"
        first.write_bytes(_encode(inside) + b"\n" + _encode(on_edge) + b"\n")
        second.write_bytes(_encode(on_edge) + b"\n" + _encode(later) + b"\n")

        merged = b"".join(merged_blocks(EVENTS, "happened_from", windows, [first, second]))

        expected = b"".join(guarded_lines(EVENTS, "happened_from", windows, [first, second]))
        assert merged == expected, rendering
        assert merged.count(f'"edge-{index}"'.encode()) == (1 if expected.count(b"edge-") == 1 else 2)


def test_every_byte_of_a_long_line_and_a_last_line_without_newline_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert EVENTS is not None
    monkeypatch.setattr(merge_module, "BLOCK_SIZE", 16)
    windows = WHOLE.split(2)
    long = _encode({"event_id": "long", "happened_at": "2026-01-02T00:00:00Z", "body": "y" * 200})
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(long + b"\n" + long + b"\n")
    second.write_bytes(b'{"event_id":"tail","happened_at":"2026-01-06T00:00:00Z"}')

    merged = list(merged_blocks(EVENTS, "happened_from", windows, [first, second]))

    assert b"".join(merged) == first.read_bytes() + second.read_bytes()
    assert all(block.endswith(b"\n") for block in merged[:-1])


def test_a_shard_line_that_is_not_json_is_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    assert EVENTS is not None
    windows = WHOLE.split(2)
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b'{"event_id":"a","happened_at":"2026-01-04T00:00:00Z"}\n{"event_id": trunc\n')
    second.write_bytes(b"")

    with pytest.raises(ExtractionError, match="not JSON") as caught:
        b"".join(merged_blocks(EVENTS, "happened_from", windows, [first, second]))
    assert str(first) in str(caught.value)


def test_a_missing_shard_is_an_output_error_naming_it(tmp_path: Path) -> None:
    assert EVENTS is not None
    windows = WHOLE.split(2)
    first = tmp_path / "a"
    first.write_bytes(b"")

    with pytest.raises(OutputError, match="cannot read") as caught:
        b"".join(merged_blocks(EVENTS, "happened_from", windows, [first, tmp_path / "gone"]))
    assert "gone" in str(caught.value)
