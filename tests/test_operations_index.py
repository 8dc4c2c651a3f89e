"""The operation index carries the per-operation facts the client layer acts on."""

from __future__ import annotations

from amperity_async.custom.operations import REGISTRY


def test_list_ingest_jobs_is_a_list_without_a_cursor() -> None:
    op = REGISTRY.get("list_ingest_jobs")
    assert op is not None
    assert op.returns_list and not op.paginated
    assert op.max_window_days == 7
    assert "next_token" not in op.query and "limit" not in op.query
    assert op.item_key == "id"


def test_paginated_lists_name_their_item_key() -> None:
    keys = {op.name: op.item_key for op in REGISTRY if op.paginated}
    assert keys["list_events"] == "event_id"
    assert keys["list_segment"] == "id"
    assert all(op.returns_list for op in REGISTRY if op.paginated)
