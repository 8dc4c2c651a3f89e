"""The fake tenant's hostile cases, each seen on the wire: lists that never end or ignore their
cursor, nulls, views, closed request bodies, slow, endless, cut and mis-encoded answers, errors
that echo secrets or are not UTF-8, Retry-After, Allow; and lists without a usable cursor."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fake_tenant_support import (
    CONTROL_PLANE,
    PROFILE,
    ManualClock,
    exchange,
    headers,
    raw_request,
    running,
    walk,
)

from amperity_async.custom.cli import main
from amperity_async.custom.errors import ConfigurationError
from amperity_async.testing import FakeTenant, FakeTenantConfig
from amperity_async.testing.cli import add_arguments, config_from_args
from amperity_async.testing.data import is_terminal
from amperity_async.testing.spec import TenantSpec

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def follow(
    client: httpx.AsyncClient, path: str, hdrs: dict[str, str], params: dict[str, Any], requests: int
) -> list[dict[str, Any]]:
    """The first ``requests`` pages of a list, each cursor followed, however long the list claims to be."""
    pages = []
    query = dict(params)
    for _ in range(requests):
        response = await client.get(path, params=query, headers=hdrs)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        token = response.json().get("next_token")
        if not token:
            break
        query["next_token"] = token
    return pages


# -- lists without a usable cursor (spec facts, not options) -------------------------------------


async def test_a_list_without_a_usable_cursor_answers_each_window_whole_and_ignores_its_next_token() -> None:
    async with running(rows=200) as (tenant, client, token):
        hdrs = headers(tenant, token)
        every_job = set(tenant.dataset.ids("/api/ingest/jobs"))
        assert len(every_job) == 200
        seen: list[str] = []
        start = datetime(2026, 1, 1, tzinfo=UTC)
        while start < datetime(2026, 4, 1, tzinfo=UTC):
            window = {"created_from": iso(start), "created_to": iso(start + timedelta(days=7))}
            response = await client.get("/ingest/jobs", params={**window, "with_total": "true"}, headers=hdrs)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["total"] == len(page["data"]) and page["data"]
            assert isinstance(page["next_token"], str) and page["next_token"]
            again = await client.get(
                "/ingest/jobs",
                params={**window, "with_total": "true", "next_token": page["next_token"]},
                headers=hdrs,
            )
            assert again.status_code == 200 and again.content == response.content
            seen += [job["id"] for job in page["data"]]
            start += timedelta(days=7)
        assert sorted(seen) == sorted(every_job), "consecutive windows hold every job exactly once"

        refused = [
            (
                {"created_from": "2026-01-01T00:00:00Z", "created_to": "2026-01-08T00:00:01Z"},
                "at most 7 days",
            ),
            ({"created_from": "2026-01-01", "created_to": "2026-03-01"}, "spans 59 days"),
            ({"created_from": "2026-01-01"}, "'created_to' is required"),
            ({"created_to": "2026-01-08"}, "'created_from' is required"),
            (
                {"created_from": "2026-01-01", "created_to": "2026-01-08", "limit": "5"},
                "unknown query parameter 'limit'",
            ),
        ]
        for params, words in refused:
            response = await client.get("/ingest/jobs", params=params, headers=hdrs)
            assert response.status_code == 400, params
            assert words in response.json()["message"], response.json()
        exactly_seven = {"created_from": "2026-01-01", "created_to": "2026-01-08"}
        assert (await client.get("/ingest/jobs", params=exactly_seven, headers=hdrs)).status_code == 200


async def test_cursorless_lists_and_window_limits_come_from_the_spec_extensions(tmp_path: Path) -> None:
    spec = json.loads((ROOT / "openapi" / "amperity.json").read_text("utf-8"))
    events = spec["paths"]["/api/audit-events"]["get"]
    events["x-amperity-pagination"] = "none"
    events["x-amperity-max-window-days"] = 2
    path = tmp_path / "marked.json"
    path.write_text(json.dumps(spec), "utf-8")
    async with running(rows=900, spec_path=path) as (tenant, client, token):
        hdrs = headers(tenant, token)
        window = {"happened_from": "2026-02-01", "happened_to": "2026-02-03", "with_total": "true"}
        page = (await client.get("/audit-events", params=window, headers=hdrs)).json()
        assert page["total"] == len(page["data"]) > 2 * 900 / 90 * 0.5
        assert all("2026-02-01" <= e["happened_at"] < "2026-02-03" for e in page["data"])
        wide = await client.get("/audit-events", params={**window, "happened_to": "2026-02-04"}, headers=hdrs)
        assert wide.status_code == 400 and "at most 2 days" in wide.json()["message"]
        open_ended = await client.get("/audit-events", params={"happened_from": "2026-02-01"}, headers=hdrs)
        assert open_ended.status_code == 400 and "'happened_to' is required" in open_ended.json()["message"]


# -- hostile cursors -----------------------------------------------------------------------------


async def test_cursor_ignored_answers_the_first_page_whatever_next_token_says() -> None:
    async with running(rows=30, cursor_ignored={"list_segment"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        pages = await follow(client, "/segments", hdrs, {"limit": 10}, 6)
        assert len(pages) == 6, "the list never ends"
        assert all(page["data"] == pages[0]["data"] for page in pages)
        assert len({page["next_token"] for page in pages}) == 6, "each answer has a new cursor"
        for nonsense in ("garbage!", "", "null", pages[0]["next_token"][::-1]):
            response = await client.get(
                "/segments", params={"limit": 10, "next_token": nonsense}, headers=hdrs
            )
            assert response.status_code == 200 and response.json()["data"] == pages[0]["data"]
        # Other lists keep honest cursors.
        events, _ = await walk(client, "/audit-events", hdrs, {"limit": 10})
        assert len({e["event_id"] for e in events}) == 30
        small = (await client.get("/segments", params={"limit": 100}, headers=hdrs)).json()
        assert len(small["data"]) == 30 and "next_token" not in small, (
            "a list of one page has no cursor to ignore"
        )


async def test_endless_empty_pages_follow_the_last_item_with_ever_new_cursors() -> None:
    async with running(rows=12, endless_empty_pages={"list-events"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        pages = await follow(client, "/audit-events", hdrs, {"limit": 5}, 25)
        assert [len(page["data"]) for page in pages] == [5, 5, 2] + [0] * 22
        assert len({page["next_token"] for page in pages}) == 25
        items = [e["event_id"] for page in pages for e in page["data"]]
        assert len(items) == len(set(items)) == 12


async def test_repeated_items_serve_the_last_page_forever_under_new_cursors() -> None:
    async with running(rows=12, repeated_items={"list-campaign"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        pages = await follow(client, "/campaigns", hdrs, {"limit": 5}, 20)
        assert [len(page["data"]) for page in pages] == [5, 5] + [2] * 18
        assert all(page["data"] == pages[2]["data"] for page in pages[2:])
        assert len({page["next_token"] for page in pages}) == 20
        assert len({c["id"] for page in pages for c in page["data"]}) == 12


async def test_hostile_lists_are_the_same_bytes_for_the_same_seed() -> None:
    async def bodies(seed: int) -> list[bytes]:
        settings: dict[str, Any] = {"rows": 9, "seed": seed, "cursor_ignored": "*"}
        async with running(**settings) as (tenant, client, token):
            out = []
            query: dict[str, Any] = {"limit": 4}
            for _ in range(4):
                response = await client.get("/segments", params=query, headers=headers(tenant, token))
                out.append(response.content)
                query["next_token"] = response.json()["next_token"]
            return out

    first, second, other = await bodies(3), await bodies(3), await bodies(4)
    assert first == second and first != other


async def test_null_next_token_on_the_last_page_only_when_asked() -> None:
    async with running(rows=12, null_next_token={"list-segment"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        last = await client.get("/segments", params={"limit": 100}, headers=hdrs)
        assert b'"next_token":null' in last.content and last.json()["next_token"] is None
        middle = (await client.get("/segments", params={"limit": 5}, headers=hdrs)).json()
        assert isinstance(middle["next_token"], str)
        pages = await follow(client, "/segments", hdrs, {"limit": 5}, 10)
        assert len(pages) == 3 and pages[-1]["next_token"] is None
        untouched = await client.get("/audit-events", params={"limit": 100}, headers=hdrs)
        assert b"next_token" not in untouched.content


# -- nulls, views, request bodies ----------------------------------------------------------------


async def test_null_optional_fields_fill_every_absent_field_with_null() -> None:
    spec = TenantSpec.load()
    properties = set(spec.get("get-workflow").response_schema["properties"])  # type: ignore[index]
    settings = {"rows": 60, "null_optional_fields": {"list-workflows", "get_workflow"}}
    async with running(**settings) as (tenant, client, token):
        hdrs = headers(tenant, token)
        raw = await client.get("/workflow/runs", params={"limit": 100}, headers=hdrs)
        runs = raw.json()["data"]
        assert all(set(run) == properties for run in runs)
        running_runs = [run for run in runs if not is_terminal(run["state"])]
        assert running_runs and all(run["ended_at"] is None for run in running_runs)
        assert b'"ended_at":null' in raw.content
        one = (await client.get(f"/workflow/runs/{running_runs[0]['id']}", headers=hdrs)).json()
        assert one == running_runs[0]
    async with running(rows=60) as (tenant, client, token):
        runs = (
            await client.get("/workflow/runs", params={"limit": 100}, headers=headers(tenant, token))
        ).json()
        running_runs = [run for run in runs["data"] if not is_terminal(run["state"])]
        assert running_runs and all("ended_at" not in run for run in running_runs)
        assert all(value is not None for run in runs["data"] for value in run.values())


async def test_views_answer_the_documented_overview_unless_verbose_is_asked() -> None:
    (view,) = TenantSpec.load().get("get-workflow").views
    assert view.param == "view" and view.default == "overview"
    overview = {"created_at", "ended_at", "id", "name", "state", "tenant", "type"}
    assert view.fields["overview"] == overview and "verbose" not in view.fields
    async with running(rows=40, views=True) as (tenant, client, token):
        hdrs = headers(tenant, token)
        runs, _ = await walk(client, "/workflow/runs", hdrs, {"limit": 100})
        full = max(runs, key=len)
        assert set(full) > overview
        default = (await client.get(f"/workflow/runs/{full['id']}", headers=hdrs)).json()
        assert default == {k: v for k, v in full.items() if k in overview}
        named = await client.get(f"/workflow/runs/{full['id']}", params={"view": "overview"}, headers=hdrs)
        assert named.json() == default
        verbose = await client.get(f"/workflow/runs/{full['id']}", params={"view": "verbose"}, headers=hdrs)
        assert verbose.json() == full
        assert (
            await client.get(f"/workflow/runs/{full['id']}", params={"view": "all"}, headers=hdrs)
        ).status_code == 400
    async with running(rows=40) as (tenant, client, token):
        hdrs = headers(tenant, token)
        runs, _ = await walk(client, "/workflow/runs", hdrs, {"limit": 100})
        full = max(runs, key=len)
        assert (await client.get(f"/workflow/runs/{full['id']}", headers=hdrs)).json() == full


def test_every_request_body_of_the_published_documents_is_closed() -> None:
    """What closed_request_bodies stands on: the upstream documents forbid unknown request-body fields."""
    bodies = 0
    for path in sorted((ROOT / "openapi" / "upstream").glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        schemas = document.get("components", {}).get("schemas", {})
        for item in document["paths"].values():
            for operation in item.values():
                if not isinstance(operation, dict) or "requestBody" not in operation:
                    continue
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                name = schema["$ref"].rsplit("/", 1)[-1]
                assert schemas[name].get("additionalProperties") is False, (path.name, name)
                bodies += 1
    assert bodies >= 2


async def test_closed_request_bodies_refuse_unknown_fields_naming_them() -> None:
    body = {"config_id": "cg-123ABc4DE", "run_mode": "full"}
    async with running(rows=5, closed_request_bodies=True) as (tenant, client, token):
        hdrs = headers(tenant, token)
        refused = await client.post(
            "/workflow/runs", json={**body, "colour": "red", "priority": 1}, headers=hdrs
        )
        assert refused.status_code == 400
        message = refused.json()["message"]
        assert "body.colour" in message and "body.priority" in message and "config_id" in message
        one = await client.post("/workflow/runs", json={**body, "colour": "red"}, headers=hdrs)
        assert one.status_code == 400 and "body.colour is not a known property" in one.json()["message"]
        assert (await client.post("/workflow/runs", json=body, headers=hdrs)).status_code == 201
    async with running(rows=5) as (tenant, client, token):
        lenient = await client.post(
            "/workflow/runs", json={**body, "colour": "red"}, headers=headers(tenant, token)
        )
        assert lenient.status_code == 201


# -- answers on the wire -------------------------------------------------------------------------


async def test_slow_drip_trickles_the_body_at_the_configured_rate() -> None:
    rate = 2500.0
    request_path = "/api/segments?limit=40"
    async with running(rows=40) as (tenant, _, token):
        plain = await exchange(tenant, raw_request("GET", request_path, headers(tenant, token)))
    async with running(rows=40, drip_rate={"list-segment": rate}) as (tenant, _, token):
        dripped = await exchange(tenant, raw_request("GET", request_path, headers(tenant, token)))
        other = await exchange(
            tenant, raw_request("GET", "/api/audit-events?limit=20", headers(tenant, token))
        )
    assert dripped.status == 200 and dripped.body == plain.body and len(dripped.body) > 2000
    assert dripped.header("Content-Length") == str(len(plain.body))
    step = rate / 20  # the tenant trickles 20 pieces a second; the bound allows for a piece either side
    assert dripped.closed_at - dripped.sent_at >= (len(dripped.body) - 2 * step) / rate
    assert other.status == 200 and json.loads(other.body)["data"]


async def test_slow_drip_with_headers_trickles_the_status_line_too() -> None:
    rate = 400.0
    async with running(indexes=2, drip_rate={"get-index": rate}, drip_headers=True) as (tenant, _, token):
        index = tenant.dataset.ids("/api/indexes")[0]
        answer = await exchange(
            tenant, raw_request("GET", f"/api/indexes/{index}", headers(tenant, token, PROFILE))
        )
    assert answer.status == 200 and json.loads(answer.body)["id"] == index
    assert answer.head_done_at is not None
    step = rate / 20  # the tenant trickles 20 pieces a second; the bound allows for a piece either side
    assert answer.head_done_at - answer.sent_at >= (len(answer.head) - 2 * step) / rate
    assert answer.closed_at - answer.sent_at >= (len(answer.data) - 2 * step) / rate


async def test_endless_body_is_a_200_that_never_ends() -> None:
    async with running(rows=10, endless_body={"list-events", "oauth-token"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        received = 0
        async with client.stream("GET", "/audit-events", headers=hdrs) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["transfer-encoding"] == "chunked"
            start = b""
            async for chunk in response.aiter_raw():
                start += chunk[: 100 - len(start)]
                received += len(chunk)
                if received > 8 * 1024 * 1024:
                    break
        assert start.startswith(b'{"data":[{"data":[') and received > 8 * 1024 * 1024
        # Errors of that operation, and other operations, are answered normally.
        unauthorized = await client.get("/audit-events", headers={**hdrs, "Authorization": "Bearer nope"})
        assert unauthorized.status_code == 401 and unauthorized.json()["status"] == 401
        assert (await client.get("/segments", headers=hdrs)).status_code == 200
        form = {
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
        }
        endless_token = await exchange(
            tenant,
            raw_request(
                "POST",
                "/api/v0/oauth2/token",
                {"X-Amperity-Tenant": tenant.tenant, "Content-Type": "application/x-www-form-urlencoded"},
                httpx.QueryParams(form).__str__().encode(),
            ),
            limit=1024 * 1024,
        )
        assert endless_token.status == 200 and len(endless_token.body) >= 1024 * 1024 - len(
            endless_token.head
        )


async def test_stopping_the_tenant_ends_an_endless_body_nobody_reads() -> None:
    tenant = FakeTenant(rows=5, rate_limits=False, endless_body={"*"})
    await tenant.start()
    token = tenant.issue_token()
    reader, writer = await asyncio.open_connection("127.0.0.1", tenant.port)
    writer.write(raw_request("GET", "/api/segments", headers(tenant, token)))
    await writer.drain()
    assert (await reader.readexactly(12)) == b"HTTP/1.1 200"
    with anyio.fail_after(20):  # a bound against a hang, not a timing target
        await tenant.stop()
        rest = b""
        while chunk := await reader.read(1 << 20):
            rest += chunk
    writer.close()


async def test_close_after_bytes_cuts_the_answer_and_closes_the_connection() -> None:
    settings = {"rows": 10, "close_after_bytes": {"list-segment": 25, "list-events": 400, "oauth-token": 0}}
    async with running(rows=10) as (tenant, _, token):
        whole = await exchange(tenant, raw_request("GET", "/api/audit-events", headers(tenant, token)))
    async with running(**settings) as (tenant, client, token):
        hdrs = headers(tenant, token)
        cut = await exchange(tenant, raw_request("GET", "/api/segments", hdrs))
        assert cut.data == b"HTTP/1.1 200 OK\r\nContent-"[:25] and len(cut.data) == 25
        events = await exchange(tenant, raw_request("GET", "/api/audit-events", hdrs))
        assert len(events.data) == 400 and events.status == 200
        assert int(events.header("Content-Length") or 0) == len(whole.body) > len(events.body)
        assert events.body == whole.body[: len(events.body)]
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/audit-events", headers=hdrs)
        silent = await exchange(
            tenant, raw_request("POST", "/api/v0/oauth2/token", {"X-Amperity-Tenant": tenant.tenant})
        )
        assert silent.data == b""
        assert (await client.get("/campaigns", headers=hdrs)).status_code == 200


async def test_bad_gzip_claims_gzip_over_bytes_that_are_not() -> None:
    async with running(rows=10, bad_gzip={"list-segment"}) as (tenant, client, token):
        hdrs = headers(tenant, token)
        answer = await exchange(tenant, raw_request("GET", "/api/segments", hdrs))
        assert answer.status == 200 and answer.header("Content-Encoding") == "gzip"
        assert answer.body[:2] == b"\x1f\x8b" and int(answer.header("Content-Length") or 0) == len(
            answer.body
        )
        with pytest.raises((OSError, EOFError, zlib.error)):
            gzip.decompress(answer.body)
        with pytest.raises(httpx.DecodingError):
            await client.get("/segments", headers=hdrs)
        assert (await client.get("/audit-events", headers=hdrs)).json()["data"]


async def test_invalid_utf8_in_error_bodies() -> None:
    async with running(rows=10, invalid_utf8_errors={"list-segment", "oauth-token"}) as (
        tenant,
        client,
        token,
    ):
        hdrs = headers(tenant, token)
        bad = await client.get("/segments", params={"limit": 0}, headers=hdrs)
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/json"
        assert bad.content.startswith(b'{"status":400,"message":"\xff')
        with pytest.raises(UnicodeDecodeError):
            bad.content.decode("utf-8")
        ok = await client.get("/segments", headers=hdrs)
        assert ok.status_code == 200 and ok.content.decode("utf-8")
        other = await client.get("/audit-events", params={"limit": 0}, headers=hdrs)
        assert other.status_code == 400 and other.json()["status"] == 400
        token_error = await client.post(
            "/v0/oauth2/token", data={}, headers={"X-Amperity-Tenant": tenant.tenant}
        )
        assert token_error.status_code == 400
        with pytest.raises(UnicodeDecodeError):
            token_error.content.decode("utf-8")


async def test_echo_secrets_puts_the_authorization_header_and_the_token_form_in_errors() -> None:
    async with running(rows=5, echo_secrets=True) as (tenant, client, token):
        hdrs = headers(tenant, token)
        forged = await client.get("/segments", headers={**hdrs, "Authorization": "Bearer sEcReT-not-a-token"})
        assert forged.status_code == 401 and "Bearer sEcReT-not-a-token" in forged.json()["message"]
        bad_request = await client.get("/segments", params={"limit": 0}, headers=hdrs)
        assert token in bad_request.json()["message"]
        assert token not in (await client.get("/segments", headers=hdrs)).text
        form = {
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": "p@ss&word=1",
        }
        refused = await client.post(
            "/v0/oauth2/token", data=form, headers={"X-Amperity-Tenant": tenant.tenant}
        )
        assert refused.status_code == 401
        assert "client_secret=p%40ss%26word%3D1" in refused.json()["message"]
        issuer = await client.post(
            "/v0/admin/api-keys/ak-other/tokens",
            json={"expires-at": "2030-01-01T00:00:00Z"},
            headers={
                "Authorization": f"Bearer {tenant.config.issuer_token}",
                "X-Amperity-Tenant": tenant.tenant,
            },
        )
        assert issuer.status_code == 404 and tenant.config.issuer_token in issuer.json()["message"]
    async with running(rows=5) as (tenant, client, token):
        quiet = await client.get("/segments", params={"limit": 0}, headers=headers(tenant, token))
        assert token not in quiet.text


async def test_retry_after_on_429_is_sent_verbatim() -> None:
    for value in ("120", "Wed, 21 Oct 2026 07:28:00 GMT", "-3", "soon, maybe"):
        clock = ManualClock()
        settings: dict[str, Any] = {
            "rows": 5,
            "rate_limits": True,
            "control_plane_rate": 1,
            "retry_after": value,
        }
        async with running(clock=clock, **settings) as (tenant, client, token):
            hdrs = headers(tenant, token)
            assert (await client.get("/segments", headers=hdrs)).status_code == 200
            limited = await client.get("/segments", headers=hdrs)
            assert limited.status_code == 429 and limited.headers["retry-after"] == value
            clock.advance(1)
            refused = await client.get("/segments", params={"limit": 0}, headers=hdrs)
            assert refused.status_code == 400 and "retry-after" not in refused.headers


async def test_405_names_the_allowed_methods() -> None:
    async with running(rows=5) as (tenant, client, token):
        hdrs = headers(tenant, token)
        cases = [
            ("DELETE", "/segments", "GET"),
            ("PUT", "/workflow/runs", "GET, POST"),
            ("GET", "/workflow/runs/wf-1/stop", "POST"),
            ("GET", "/v0/oauth2/token", "POST"),
            ("DELETE", "/v0/admin/api-keys/ak-fake/tokens", "POST"),
        ]
        for method, path, allowed in cases:
            response = await client.request(method, path, headers=hdrs)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed and response.json()["status"] == 405


# -- settings ------------------------------------------------------------------------------------


async def test_per_operation_settings_take_either_spelling_or_star() -> None:
    async with running(rows=6, cursor_ignored="*", drip_rate={"*": 1e9, "list_segment": 5e8}) as (tenant, *_):
        plan = tenant.app.plan
        followable = {"list-campaign", "list-campaign-draft", "list-events", "list-indexes", "list-profiles"}
        assert followable | {"list-segment", "list-workflows"} == {
            op.operation_id
            for op in tenant.app.spec.list_operations()
            if plan.hands_out_new_cursors(op.operation_id)
        }
        assert not plan.hands_out_new_cursors("list-ingest-jobs")
        assert plan.delivery("list-segment").rate == 5e8 and plan.delivery("get-workflow").rate == 1e9
        assert plan.delivery("oauth-token").rate is None, (
            "* covers the spec's operations, not the token endpoints"
        )


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"cursor_ignored": {"list-nothing"}}, "'list-nothing' is no operation it can name"),
        ({"cursor_ignored": {"get-workflow"}}, "get-workflow is not a list whose cursor can be followed"),
        ({"endless_empty_pages": {"list-ingest-jobs"}}, "list-ingest-jobs is not a list whose cursor"),
        ({"null_next_token": {"oauth-token"}}, "'oauth-token' is no operation"),
        ({"cursor_ignored": {"list-segment"}, "repeated_items": {"list_segment"}}, "both cursor_ignored and"),
        ({"rows_by_operation": {"list-zzz": 3}}, "rows_by_operation: 'list-zzz'"),
        ({"null_optional_fields": {"stop_workflow", "nope"}}, "'nope' is no operation"),
    ],
)
async def test_settings_naming_the_wrong_operations_are_refused_at_start(
    settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words):
        async with FakeTenant(**settings):
            pass


def test_new_settings_from_strings_flags_and_their_errors() -> None:
    config = FakeTenantConfig.from_mapping(
        {
            "cursor_ignored": "list_segment, list-events",
            "drip_rate": "*=100,list-segment=2.5",
            "close_after_bytes": "oauth-token=0",
            "echo_secrets": "yes",
            "retry_after": "5",
        }
    )
    assert config.cursor_ignored == {"list_segment", "list-events"}
    assert config.drip_rate == {"*": 100.0, "list-segment": 2.5} and config.close_after_bytes == {
        "oauth-token": 0
    }
    assert config.echo_secrets is True and config.retry_after == "5"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--repeated-items",
            "list-campaign",
            "--bad-gzip",
            "*",
            "--drip-headers",
            "--views",
            "--null-next-token",
            "*",
        ]
    )
    flags = config_from_args(args)
    assert (
        flags.repeated_items == {"list-campaign"}
        and flags.bad_gzip == {"*"}
        and flags.null_next_token == {"*"}
    )
    assert flags.drip_headers and flags.views and not flags.closed_request_bodies
    defaults = FakeTenantConfig()
    assert not (
        defaults.cursor_ignored or defaults.drip_rate or defaults.endless_body or defaults.echo_secrets
    )
    for bad, words in [
        ({"drip_rate": "list-segment"}, "OPERATION=BYTES_PER_SECOND"),
        ({"drip_rate": "list-segment=0"}, "> 0"),
        ({"drip_rate": "list-segment=inf"}, "> 0"),
        ({"close_after_bytes": "list-segment=-1"}, ">= 0"),
        ({"retry_after": "1\r\nX-Injected: yes"}, "one line"),
        ({"port": "99999"}, "0..65535"),
        ({"latency": "nan"}, "finite"),
        ({"rate_window": "rolling"}, "one of sliding, fixed"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            FakeTenantConfig.from_mapping(bad)


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "99999"],
        ["--port", "http"],
        ["--seed", "x"],
        ["--latency", "-1"],
        ["--cursor-ignored", "list-nothing"],
        ["--drip-rate", "list-segment"],
        ["--spec-path", "/nonexistent/spec.json"],
        ["--time-start", "yesterday"],
        ["--rows-by-operation", "list-segment"],
    ],
)
def test_bad_fake_tenant_flags_fail_with_one_line(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fake-tenant", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err


# -- client disconnects --------------------------------------------------------------------------


async def disconnect_in_every_way(port: int, hdrs: dict[str, str]) -> None:
    """Leave mid-request, mid-body, mid-drip and mid-endless body, politely and by reset."""

    async def leave(request: bytes, *, read: int = 0, wait: float = 0.2, reset: bool = False) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        if read:
            await reader.readexactly(read)
        await asyncio.sleep(wait)
        if reset:
            writer.transport.abort()
        else:
            writer.close()

    body = b'{"config_id": "cg-1"'
    partial_post = raw_request("POST", "/api/workflow/runs", {**hdrs, "Content-Type": "application/json"})
    await leave(
        partial_post.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body) + 50}\r\n\r\n".encode()) + body
    )
    await leave(
        b"POST /api/v0/oauth2/token HTTP/1.1\r\nHost: x\r\nX-Amperity-Tenant: acme\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 90\r\n\r\ngrant_type=cl"
    )
    await leave(raw_request("GET", "/api/segments?limit=1000", hdrs), wait=0.05, reset=True)
    await leave(raw_request("GET", "/api/audit-events", hdrs), read=4096, reset=True)
    await leave(raw_request("GET", "/api/audit-events", hdrs), read=4096)
    await leave(raw_request("GET", "/api/campaigns", hdrs), read=5)
    await leave(b"GET /api/segments HTTP/1.1\r\nHost: x\r\n", wait=0.05)
    await asyncio.sleep(0.5)  # let the tenant notice every departure before it stops


async def test_client_disconnects_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings: dict[str, Any] = {
        "rows": 1000,
        "rate_limits": False,
        "latency": 0.1,
        "endless_body": {"list-events"},
        "drip_rate": {"list-campaign": 20},
    }
    async with FakeTenant(**settings) as tenant:
        await disconnect_in_every_way(tenant.port, headers(tenant, tenant.issue_token()))
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]


def test_the_fake_tenant_command_prints_no_traceback_when_clients_leave() -> None:
    command = [sys.executable, "-m", "amperity_async", "fake-tenant", "--rows", "1000", "--no-rate-limits"]
    command += ["--latency", "0.1", "--endless-body", "list-events", "--drip-rate", "list-campaign=20"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("fake Amperity tenant listening at http://127.0.0.1:"), first
        root = first.rsplit(" ", 1)[1].strip().removesuffix("/api")
        port = int(root.rsplit(":", 1)[1])
        secret = next(line for line in iter(process.stdout.readline, "") if "CLIENT_SECRET" in line)
        assert secret.strip().endswith("fake-secret")

        async def scenario() -> None:
            async with httpx.AsyncClient() as client:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": "fake-client",
                    "client_secret": "fake-secret",
                }
                issued = await client.post(
                    f"{root}/api/v0/oauth2/token", data=form, headers={"X-Amperity-Tenant": "acme"}
                )
            token = issued.json()["access_token"]
            hdrs = {
                "Authorization": f"Bearer {token}",
                "amperity-tenant": "acme",
                "api-version": CONTROL_PLANE,
            }
            await disconnect_in_every_way(port, hdrs)

        anyio.run(scenario)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr
