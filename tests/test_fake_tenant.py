"""The fake tenant's behaviour: pagination, filters, auth, versions, rate limits, state and faults."""

from __future__ import annotations

import argparse
import base64
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_tenant_support import CONTROL_PLANE, PROFILE, ManualClock, headers, running, walk

from amperity_async.custom.errors import ConfigurationError
from amperity_async.testing import FakeTenant, FakeTenantConfig, start_in_thread
from amperity_async.testing.cli import add_arguments, config_from_args
from amperity_async.testing.faults import DROP, FaultInjector
from amperity_async.testing.limits import WindowLimiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- pagination ----------------------------------------------------------------------------------


async def test_walk_returns_every_item_once_and_total_only_when_asked() -> None:
    async with running(rows=53) as (tenant, client, token):
        hdrs = headers(tenant, token)
        items, pages = await walk(client, "/segments", hdrs, {"limit": 7})
        assert len(items) == 53 and pages == 8
        assert len({item["id"] for item in items}) == 53
        assert all(item["id"].startswith("seg-") for item in items)
        first = (await client.get("/segments", params={"limit": 7}, headers=hdrs)).json()
        assert "total" not in first and len(first["data"]) == 7
        counted = (
            await client.get("/segments", params={"limit": 7, "with_total": "true"}, headers=hdrs)
        ).json()
        assert counted["total"] == 53
        last = (await client.get("/segments", params={"limit": 100}, headers=hdrs)).json()
        assert len(last["data"]) == 53 and "next_token" not in last
        default = (await client.get("/segments", headers=hdrs)).json()
        assert len(default["data"]) == tenant.config.default_limit


async def test_time_windows_cut_the_items_into_disjoint_shards() -> None:
    async with running(rows=300) as (tenant, client, token):
        hdrs = headers(tenant, token)
        everything, _ = await walk(client, "/audit-events", hdrs, {"limit": 1000})
        assert len(everything) == 300
        edges = [
            "2026-01-01T00:00:00Z",
            "2026-01-20T00:00:00Z",
            "2026-02-15T12:00:00Z",
            "2026-04-01T00:00:00Z",
        ]
        sharded: list[dict[str, Any]] = []
        for start, end in zip(edges, edges[1:], strict=False):
            shard, _ = await walk(
                client, "/audit-events", hdrs, {"happened_from": start, "happened_to": end, "limit": 40}
            )
            assert shard, "every shard of the span holds some events"
            assert all(ms(start) <= ms(e["happened_at"]) < ms(end) for e in shard)
            sharded += shard
        assert [e["event_id"] for e in sharded] == [e["event_id"] for e in everything]
        # The end of a window is exclusive: an event's own time as the end leaves it out.
        pivot = everything[100]["happened_at"]
        before = (
            await client.get(
                "/audit-events", params={"happened_to": pivot, "with_total": "true"}, headers=hdrs
            )
        ).json()
        since = (
            await client.get(
                "/audit-events", params={"happened_from": pivot, "with_total": "true"}, headers=hdrs
            )
        ).json()
        assert before["total"] == 100 and since["total"] == 200


async def test_state_type_and_ended_filters_on_workflows() -> None:
    async with running(rows=400) as (tenant, client, token):
        hdrs = headers(tenant, token)
        everything, _ = await walk(client, "/workflow/runs", hdrs, {"limit": 1000})
        states = Counter(w["state"] for w in everything)
        assert len(states) >= 3
        state = states.most_common(1)[0][0]
        matched, _ = await walk(client, "/workflow/runs", hdrs, {"state": state.upper(), "limit": 50})
        assert len(matched) == states[state] and all(w["state"] == state for w in matched)
        kind = everything[0]["type"]
        typed, _ = await walk(client, "/workflow/runs", hdrs, {"type": kind, "limit": 50})
        assert typed and all(w["type"] == kind for w in typed)
        window = {"ended_from": "2026-02-01T00:00:00Z", "ended_to": "2026-03-01T00:00:00Z"}
        ended, _ = await walk(client, "/workflow/runs", hdrs, {**window, "limit": 50})
        expected = [
            w
            for w in everything
            if "ended_at" in w and ms(window["ended_from"]) <= ms(w["ended_at"]) < ms(window["ended_to"])
        ]
        assert ended == expected and ended


async def test_profile_attribute_filter_matches_attributes() -> None:
    async with running(indexes=2, profiles_per_index=300) as (tenant, client, token):
        hdrs = headers(tenant, token, PROFILE)
        indexes = (await client.get("/indexes", headers=hdrs)).json()["data"]
        assert len(indexes) == 2
        index = indexes[1]["id"]
        profiles, _ = await walk(client, f"/indexes/{index}/profiles", hdrs, {"limit": 1000})
        assert len(profiles) == 300 and all(p["index_id"] == index for p in profiles)
        name = profiles[0]["attributes"]["first_name"]
        last = profiles[0]["attributes"]["last_name"]
        matched, _ = await walk(client, f"/indexes/{index}/profiles", hdrs, {"filter[first_name]": name})
        assert matched == [p for p in profiles if p.get("attributes", {}).get("first_name") == name]
        both, _ = await walk(
            client,
            f"/indexes/{index}/profiles",
            hdrs,
            {"filter[first_name]": name, "filter[last_name]": last},
        )
        assert profiles[0] in both and all(p["attributes"]["last_name"] == last for p in both)
        one = await client.get(f"/indexes/{index}/profiles/{profiles[5]['id']}", headers=hdrs)
        assert one.json() == profiles[5]
        other_index = indexes[0]["id"]
        foreign = await client.get(f"/indexes/{other_index}/profiles/{profiles[5]['id']}", headers=hdrs)
        assert foreign.status_code == 404
        unknown_index = await client.get("/indexes/idx-000000/profiles", headers=hdrs)
        assert unknown_index.status_code == 404 and unknown_index.json()["status"] == 404


async def test_filters_without_an_item_field_partition_the_items() -> None:
    async with running(rows=120) as (tenant, client, token):
        hdrs = headers(tenant, token)
        values = tenant.facets()["list-campaign"]["destination_data_template_id"]
        totals = []
        for value in values:
            page = (
                await client.get(
                    "/campaigns",
                    params={"destination_data_template_id": value, "with_total": "true"},
                    headers=hdrs,
                )
            ).json()
            totals.append(page["total"])
        assert sum(totals) == 120 and all(totals)
        stats = (await client.get(tenant.root_url + "/_fake/facets")).json()
        assert stats["list-campaign"]["destination_data_template_id"] == values


# -- 400s ----------------------------------------------------------------------------------------


async def test_bad_requests_are_answered_400_with_the_documented_body() -> None:
    async with running(rows=40) as (tenant, client, token):
        hdrs = headers(tenant, token)
        first = (await client.get("/segments", params={"limit": 5}, headers=hdrs)).json()
        cursor = first["next_token"]
        raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        raw[12] ^= 1
        forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        events = (await client.get("/audit-events", params={"limit": 5}, headers=hdrs)).json()["next_token"]
        cases = [
            ("/segments", {"next_token": forged}, "not a cursor"),
            ("/segments", {"next_token": "garbage!"}, "not a cursor"),
            ("/segments", {"next_token": ""}, "must not be empty"),
            ("/segments", {"next_token": "null"}, "must not be empty"),
            ("/segments", {"next_token": events}, "different query"),
            ("/audit-events", {"next_token": events, "happened_from": "2026-02-01"}, "different query"),
            ("/segments", {"limit": "0"}, "limit"),
            ("/segments", {"limit": "1001"}, "limit"),
            ("/segments", {"limit": "ten"}, "integer"),
            ("/segments", {"with_total": "yes"}, "true or false"),
            ("/segments", {"colour": "red"}, "unknown query parameter 'colour'"),
            ("/ingest/jobs", {"created_from": "2026-01-01"}, "'created_to' is required"),
            ("/audit-events", {"happened_from": "yesterday"}, "ISO-8601"),
            (
                "/audit-events",
                {"happened_from": "2026-03-01", "happened_to": "2026-02-01"},
                "must not be after",
            ),
            (
                "/workflow/runs/" + (await walk(client, "/workflow/runs", hdrs, {"limit": 1000}))[0][0]["id"],
                {"view": "huge"},
                "one of",
            ),
        ]
        for path, params, words in cases:
            response = await client.get(path, params=params, headers=hdrs)
            assert response.status_code == 400, (path, params, response.text)
            body = response.json()
            assert body["status"] == 400 and words in body["message"], (params, body)
            assert body["request_id"]
        # The original cursor still works.
        assert (
            await client.get("/segments", params={"limit": 5, "next_token": cursor}, headers=hdrs)
        ).status_code == 200


async def test_api_versions_are_checked_per_api() -> None:
    async with running(rows=5) as (tenant, client, token):

        def with_version(version: str | None) -> dict[str, str]:
            hdrs = headers(tenant, token)
            if version is None:
                del hdrs["api-version"]
            else:
                hdrs["api-version"] = version
            return hdrs

        assert (await client.get("/segments", headers=with_version(None))).status_code == 400
        unsupported = await client.get("/segments", headers=with_version("2023-01-01"))
        assert unsupported.status_code == 400 and "unsupported api-version" in unsupported.json()["message"]
        assert (await client.get("/segments", headers=with_version("unstable"))).status_code == 200
        stable_draft = await client.get("/campaign-drafts", headers=with_version(CONTROL_PLANE))
        assert stable_draft.status_code == 400 and "unstable" in stable_draft.json()["message"]
        assert (await client.get("/campaign-drafts", headers=with_version("unstable"))).status_code == 200
        assert (await client.get("/indexes", headers=with_version(CONTROL_PLANE))).status_code == 400
        assert (await client.get("/indexes", headers=with_version(PROFILE))).status_code == 200


async def test_unknown_paths_and_methods() -> None:
    async with running(rows=5) as (tenant, client, token):
        missing = await client.get("/nothing-here", headers=headers(tenant, token))
        assert missing.status_code == 404 and missing.json()["status"] == 404
        wrong = await client.delete("/segments", headers=headers(tenant, token))
        assert wrong.status_code == 405 and wrong.json()["status"] == 405


# -- auth ----------------------------------------------------------------------------------------


async def test_oauth_client_credentials_and_token_expiry() -> None:
    clock = ManualClock()
    async with running(rows=5, token_lifetime=600, clock=clock) as (tenant, client, _):
        form = {
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
        }
        tenant_header = {"X-Amperity-Tenant": tenant.tenant}
        issued = await client.post("/v0/oauth2/token", data=form, headers=tenant_header)
        assert issued.status_code == 200
        body = issued.json()
        assert body["expires_in"] == 600 and body["token_type"] == "Bearer"
        token = body["access_token"]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["exp"] == clock.now + 600 and claims["tenant"] == tenant.tenant
        hdrs = headers(tenant, token)
        assert (await client.get("/segments", headers=hdrs)).status_code == 200
        clock.advance(599)
        assert (await client.get("/segments", headers=hdrs)).status_code == 200
        clock.advance(1)
        expired = await client.get("/segments", headers=hdrs)
        assert expired.status_code == 401 and "expired" in expired.json()["message"]

        bad_secret = await client.post(
            "/v0/oauth2/token", data={**form, "client_secret": "x"}, headers=tenant_header
        )
        assert bad_secret.status_code == 401 and "x" not in bad_secret.json()["message"]
        bad_grant = await client.post(
            "/v0/oauth2/token", data={**form, "grant_type": "password"}, headers=tenant_header
        )
        assert bad_grant.status_code == 400
        no_tenant = await client.post("/v0/oauth2/token", data=form)
        assert no_tenant.status_code == 400
        other_tenant = await client.post(
            "/v0/oauth2/token", data=form, headers={"X-Amperity-Tenant": "someone-else"}
        )
        assert other_tenant.status_code == 401
        assert tenant.stats["token_requests"] == 5 and tenant.stats["tokens_issued"] == 2


async def test_issuer_endpoint_honours_expires_at_up_to_the_lifetime() -> None:
    clock = ManualClock()
    async with running(rows=5, token_lifetime=900, clock=clock) as (tenant, client, _):
        url = f"/v0/admin/api-keys/{tenant.config.api_key_id}/tokens"
        auth = {"Authorization": f"Bearer {tenant.config.issuer_token}", "X-Amperity-Tenant": tenant.tenant}

        def at(seconds: float) -> str:
            return datetime.fromtimestamp(clock.now + seconds, UTC).isoformat().replace("+00:00", "Z")

        short = await client.post(url, json={"expires-at": at(300)}, headers=auth)
        assert short.status_code == 200 and short.json()["expires_in"] == 300
        long = await client.post(url, json={"expires-at": at(7200)}, headers=auth)
        assert long.json()["expires_in"] == 900
        token = short.json()["access_token"]
        assert (await client.get("/segments", headers=headers(tenant, token))).status_code == 200
        clock.advance(300)
        assert (await client.get("/segments", headers=headers(tenant, token))).status_code == 401
        wrong = await client.post(
            url, json={"expires-at": at(60)}, headers={**auth, "Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        past = await client.post(url, json={"expires-at": at(-60)}, headers=auth)
        assert past.status_code == 400
        garbled = await client.post(url, json={"expires-at": "soon"}, headers=auth)
        assert garbled.status_code == 400
        other_key = await client.post(
            "/v0/admin/api-keys/ak-other/tokens", json={"expires-at": at(60)}, headers=auth
        )
        assert other_key.status_code == 404


async def test_unknown_missing_forged_and_revoked_tokens_get_401() -> None:
    async with running(rows=5) as (tenant, client, token):
        hdrs = headers(tenant, token)
        assert (await client.get("/segments", headers=hdrs)).status_code == 200
        no_auth = {k: v for k, v in hdrs.items() if k != "Authorization"}
        assert (await client.get("/segments", headers=no_auth)).status_code == 401
        assert (
            await client.get("/segments", headers={**hdrs, "Authorization": "Bearer a.b.c"})
        ).status_code == 401
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["exp"] += 10**6
        tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        forged = await client.get(
            "/segments", headers={**hdrs, "Authorization": f"Bearer {header}.{tampered}.{signature}"}
        )
        assert forged.status_code == 401
        other_tenant = await client.get("/segments", headers={**hdrs, "amperity-tenant": "someone-else"})
        assert other_tenant.status_code == 401
        assert (
            await client.get("/segments", headers={k: v for k, v in hdrs.items() if k != "amperity-tenant"})
        ).status_code == 400
        revoked = await client.post(tenant.root_url + "/_fake/revoke")
        assert revoked.status_code == 200
        after = await client.get("/segments", headers=hdrs)
        assert after.status_code == 401 and "revoked" in after.json()["message"]
        fresh = tenant.issue_token()
        assert (await client.get("/segments", headers=headers(tenant, fresh))).status_code == 200
        stats = (await client.get(tenant.root_url + "/_fake/stats")).json()
        assert stats["unauthorized"] == 5 and stats["revocations"] == 1


async def test_scheduled_revocations() -> None:
    clock = ManualClock()
    async with running(rows=5, revoke_after_requests=3, revoke_after_seconds=60, clock=clock) as (
        tenant,
        client,
        token,
    ):
        hdrs = headers(tenant, token)
        codes = [(await client.get("/segments", headers=hdrs)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 401]
        fresh = headers(tenant, tenant.issue_token())
        assert (await client.get("/segments", headers=fresh)).status_code == 200
        clock.advance(60)
        assert (await client.get("/segments", headers=fresh)).status_code == 401
        newer = headers(tenant, tenant.issue_token())
        clock.advance(60)
        assert (await client.get("/segments", headers=newer)).status_code == 200
        assert tenant.stats["revocations"] == 2


# -- rate limits ---------------------------------------------------------------------------------


async def test_sliding_window_rate_limit_with_a_manual_clock() -> None:
    clock = ManualClock()
    async with running(rows=5, rate_limits=True, clock=clock, profile_rate=3) as (tenant, client, token):
        hdrs = headers(tenant, token)
        codes = [(await client.get("/segments", headers=hdrs)).status_code for _ in range(11)]
        assert codes == [200] * 10 + [429]
        limited = await client.get("/segments", headers=hdrs)
        assert limited.json() == {
            "status": 429,
            "message": "rate limit exceeded for the control-plane API",
            "request_id": limited.json()["request_id"],
        }
        # The Profile API has its own budget.
        profile = headers(tenant, token, PROFILE)
        assert [(await client.get("/indexes", headers=profile)).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
        clock.advance(0.999)
        assert (await client.get("/segments", headers=hdrs)).status_code == 429
        clock.advance(0.001)
        assert [(await client.get("/segments", headers=hdrs)).status_code for _ in range(11)] == [
            200
        ] * 10 + [429]
        assert tenant.stats["rate_limited"] == 5


def test_window_limiters_sliding_versus_fixed() -> None:
    clock = ManualClock(100.5)
    sliding = WindowLimiter(2, "sliding", clock)
    fixed = WindowLimiter(2, "fixed", clock)
    assert [sliding.allow(), sliding.allow(), sliding.allow()] == [True, True, False]
    assert [fixed.allow(), fixed.allow(), fixed.allow()] == [True, True, False]
    clock.advance(0.6)  # a new calendar second, but less than a second after the last accepted ones
    assert sliding.allow() is False
    assert [fixed.allow(), fixed.allow(), fixed.allow()] == [True, True, False]
    clock.advance(0.4)
    assert [sliding.allow(), sliding.allow(), sliding.allow()] == [True, True, False]


async def test_rate_limits_can_be_turned_off() -> None:
    async with running(rows=5, rate_limits=False, control_plane_rate=1) as (tenant, client, token):
        codes = {
            (await client.get("/segments", headers=headers(tenant, token))).status_code for _ in range(30)
        }
        assert codes == {200}


# -- state ---------------------------------------------------------------------------------------


async def test_run_and_stop_workflows_keep_state() -> None:
    clock = ManualClock(ms("2026-05-01T00:00:00Z"))
    async with running(rows=20, clock=clock) as (tenant, client, token):
        hdrs = headers(tenant, token)
        before = (await client.get("/workflow/runs", params={"with_total": "true"}, headers=hdrs)).json()[
            "total"
        ]
        created = await client.post(
            "/workflow/runs", json={"config_id": "cg-123ABc4DE", "run_mode": "full"}, headers=hdrs
        )
        assert created.status_code == 201
        run = created.json()
        assert run["created_at"].startswith("2026-05-01T00:00:00") and "ended_at" not in run
        listed, _ = await walk(client, "/workflow/runs", hdrs, {"limit": 6})
        assert len(listed) == before + 1 and listed[-1] == run
        window = {"created_from": "2026-04-30", "created_to": "2026-05-02"}
        assert (await walk(client, "/workflow/runs", hdrs, window))[0] == [run]
        assert (await client.get(f"/workflow/runs/{run['id']}", headers=hdrs)).json() == run
        clock.advance(90)
        stopped = await client.post(f"/workflow/runs/{run['id']}/stop", headers=hdrs)
        assert stopped.status_code == 200
        assert stopped.json()["state"] == "stopped" and stopped.json()["ended_at"].startswith(
            "2026-05-01T00:01:30"
        )
        assert (await client.get(f"/workflow/runs/{run['id']}", headers=hdrs)).json() == stopped.json()
        again = await client.post(f"/workflow/runs/{run['id']}/stop", headers=hdrs)
        assert again.status_code == 409 and again.json()["status"] == 409
        finished = next(w for w in listed if w["state"] == "succeeded")
        assert (await client.post(f"/workflow/runs/{finished['id']}/stop", headers=hdrs)).status_code == 409
        assert (
            await client.post("/workflow/runs/wf-20260101-00000-AAAAAA/stop", headers=hdrs)
        ).status_code == 404
        invalid = [
            {},
            {"config_id": 5},
            {"config_id": "cg-1", "run_mode": "sometimes"},
            {"config_id": "cg-1", "range_from": "later"},
        ]
        for body in invalid:
            response = await client.post("/workflow/runs", json=body, headers=hdrs)
            assert response.status_code == 400, body
        assert (await client.post("/workflow/runs", content=b"{", headers=hdrs)).status_code == 400


# -- faults and headers --------------------------------------------------------------------------


async def test_injected_errors_and_drops_happen_at_about_their_rates() -> None:
    async with running(rows=5, error_rate=0.2, drop_rate=0.1, seed=11) as (tenant, client, token):
        outcomes: Counter[str] = Counter()
        for _ in range(400):
            try:
                response = await client.get("/segments", headers=headers(tenant, token))
                outcomes[str(response.status_code)] += 1
            except httpx.TransportError:
                outcomes["dropped"] += 1
        stats = tenant.stats
    assert 50 <= outcomes["500"] + outcomes["503"] <= 110 and outcomes["500"] and outcomes["503"]
    assert 20 <= outcomes["dropped"] <= 65
    assert stats["dropped"] == outcomes["dropped"]
    assert stats["injected_errors"] == outcomes["500"] + outcomes["503"]


def test_fault_dice_are_seeded() -> None:
    def rolls(seed: int) -> list[object]:
        injector = FaultInjector(
            FakeTenantConfig(seed=seed, error_rate=0.3, drop_rate=0.1, latency=0.25, latency_jitter=0.5)
        )
        return [(injector.outcome(), round(injector.delay(), 6)) for _ in range(50)]

    assert rolls(3) == rolls(3) != rolls(4)
    outcomes = {o for o, _ in rolls(3)}
    assert {None, DROP, 500, 503} <= outcomes
    assert all(0.25 <= d <= 0.75 for _, d in rolls(3))


async def test_deprecation_and_sunset_headers() -> None:
    async with running(rows=5, deprecation="2026-06-01T00:00:00Z", sunset="2026-12-01") as (
        tenant,
        client,
        token,
    ):
        response = await client.get("/segments", headers=headers(tenant, token))
        assert response.headers["Deprecation"] == "Mon, 01 Jun 2026 00:00:00 GMT"
        assert response.headers["Sunset"] == "Tue, 01 Dec 2026 00:00:00 GMT"
        error = await client.get("/segments", params={"limit": 0}, headers=headers(tenant, token))
        assert error.headers["Sunset"] == "Tue, 01 Dec 2026 00:00:00 GMT"


# -- determinism, spec-driven routes, runners ----------------------------------------------------


async def page_bytes(seed: int) -> list[bytes]:
    bodies = []
    async with running(rows=60, seed=seed, profiles_per_index=40) as (tenant, client, token):
        for path, version in (
            ("/segments", CONTROL_PLANE),
            ("/workflow/runs", CONTROL_PLANE),
            ("/audit-events", CONTROL_PLANE),
            ("/indexes", PROFILE),
        ):
            query: dict[str, str] = {"limit": "25"}
            while True:
                response = await client.get(path, params=query, headers=headers(tenant, token, version))
                bodies.append(response.content)
                token_value = response.json().get("next_token")
                if not token_value:
                    break
                query["next_token"] = token_value
    return bodies


async def test_same_seed_same_bytes() -> None:
    first, second, other = await page_bytes(5), await page_bytes(5), await page_bytes(6)
    assert first == second
    assert first != other and len(first) == len(other)


async def test_a_new_operation_in_the_spec_is_served_without_code(tmp_path: Path) -> None:
    spec = json.loads(
        (Path(__file__).resolve().parent.parent / "openapi" / "amperity.json").read_text("utf-8")
    )
    schemas = spec["components"]["schemas"]
    schemas["Audience"] = {
        "type": "object",
        "required": ["id", "name", "state", "created_at"],
        "properties": {
            "id": {"type": "string", "example": "aud-7Hk2PqLx9"},
            "name": {"type": "string", "example": "Lapsed Buyers"},
            "state": {"type": "string", "enum": ["building", "ready", "failed"]},
            "created_at": {"type": "string", "format": "date-time"},
            "size": {"type": "integer", "example": 5000},
        },
    }
    schemas["AudienceList"] = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Audience"}},
            "next_token": {"type": "string"},
            "total": {"type": "integer"},
        },
    }

    def ok(name: str) -> dict[str, Any]:
        return {
            "200": {
                "description": "ok",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            }
        }

    spec["paths"]["/api/audiences"] = {
        "get": {
            "operationId": "list-audiences",
            "x-amperity-api": "control-plane",
            "x-amperity-stability": "stable",
            "parameters": [
                {"$ref": "#/components/parameters/Limit"},
                {"$ref": "#/components/parameters/NextToken"},
                {"$ref": "#/components/parameters/WithTotal"},
                {"name": "created_from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "created_to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "state", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": ok("AudienceList"),
        }
    }
    spec["paths"]["/api/audiences/{audience-id}"] = {
        "get": {
            "operationId": "get-audience",
            "x-amperity-api": "control-plane",
            "x-amperity-stability": "stable",
            "parameters": [
                {"name": "audience-id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": ok("Audience"),
        }
    }
    path = tmp_path / "next-version.json"
    path.write_text(json.dumps(spec), "utf-8")
    async with running(rows=40, spec_path=path) as (tenant, client, token):
        hdrs = headers(tenant, token)
        audiences, _ = await walk(client, "/audiences", hdrs, {"limit": 15})
        assert len(audiences) == 40 and all(a["id"].startswith("aud-") for a in audiences)
        assert {a["state"] for a in audiences} <= {"building", "ready", "failed"}
        ready, _ = await walk(client, "/audiences", hdrs, {"state": "ready"})
        assert ready == [a for a in audiences if a["state"] == "ready"]
        one = await client.get(f"/audiences/{audiences[7]['id']}", headers=hdrs)
        assert one.status_code == 200 and one.json() == audiences[7]
        assert tenant.stats["by_operation"]["get-audience"] == 1


async def test_large_collections_are_generated_lazily() -> None:
    async with running(rows=100_000) as (tenant, client, token):
        hdrs = headers(tenant, token)
        page = (
            await client.get(
                "/audit-events",
                params={"limit": 1000, "with_total": "true", "happened_from": "2026-03-31T12:00:00Z"},
                headers=hdrs,
            )
        ).json()
        assert 0 < page["total"] < 1000 and len(page["data"]) == page["total"]
        assert all(e["happened_at"] >= "2026-03-31T12:00:00" for e in page["data"])


def test_threaded_tenant_serves_synchronous_callers() -> None:
    with start_in_thread(rows=12) as tenant:
        token = tenant.issue_token()
        with httpx.Client(base_url=tenant.base_url) as client:
            response = client.get(
                "/segments",
                params={"with_total": "true"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "amperity-tenant": tenant.config.tenant,
                    "api-version": CONTROL_PLANE,
                },
            )
        assert response.json()["total"] == 12
        assert tenant.stats["by_operation"] == {"list-segment": 1}
        base_url = tenant.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/segments")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_threaded_tenant_serves_trio_callers() -> None:
    with start_in_thread(rows=3) as tenant:
        async with httpx.AsyncClient(base_url=tenant.base_url) as client:
            form = {
                "grant_type": "client_credentials",
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
            }
            token = (
                await client.post(
                    "/v0/oauth2/token", data=form, headers={"X-Amperity-Tenant": tenant.config.tenant}
                )
            ).json()
            response = await client.get(
                "/segments",
                headers={
                    "Authorization": f"Bearer {token['access_token']}",
                    "amperity-tenant": tenant.config.tenant,
                    "api-version": CONTROL_PLANE,
                },
            )
        assert len(response.json()["data"]) == 3


def test_pytest_fixture_gives_a_running_tenant(fake_tenant: Any) -> None:
    token = fake_tenant.issue_token()
    response = httpx.get(
        fake_tenant.base_url + "/segments",
        params={"with_total": "true"},
        headers={
            "Authorization": f"Bearer {token}",
            "amperity-tenant": fake_tenant.config.tenant,
            "api-version": CONTROL_PLANE,
        },
    )
    assert response.json()["total"] == fake_tenant.config.rows


async def test_port_in_use_is_a_clear_error() -> None:
    async with FakeTenant(rows=1) as first:
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            async with FakeTenant(rows=1, port=first.port):
                pass


# -- configuration -------------------------------------------------------------------------------


def test_config_from_strings_and_its_errors() -> None:
    config = FakeTenantConfig.from_mapping(
        {
            "rows": "10",
            "rate_limits": "off",
            "error_rate": "0.1",
            "rows_by_operation": "list-segment=3,list-events=4",
            "deprecation": "2026-06-01",
            "revoke_after_requests": "7",
        }
    )
    assert (config.rows, config.rate_limits, config.error_rate) == (10, False, 0.1)
    assert config.rows_by_operation == {"list-segment": 3, "list-events": 4}
    assert config.revoke_after_requests == 7 and config.deprecation == datetime(2026, 6, 1, tzinfo=UTC)
    for bad, words in [
        ({"rows": "many"}, "rows"),
        ({"colour": "red"}, "unknown"),
        ({"error_rate": "2"}, "error_rate"),
        ({"rate_window": "rolling"}, "rate_window"),
        ({"time_end": "2025-01-01"}, "time_end"),
        ({"rows_by_operation": "list-segment"}, "OPERATION=COUNT"),
        ({"tenant": " "}, "tenant"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            FakeTenantConfig.from_mapping(bad)
    assert "fake-secret" not in repr(FakeTenantConfig())


def test_command_line_flags_come_from_the_config_fields() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--rows",
            "42",
            "--no-rate-limits",
            "--seed",
            "9",
            "--drop-rate",
            "0.02",
            "--rows-by-operation",
            "list-segment=5",
            "--sunset",
            "2027-01-01T00:00:00Z",
        ]
    )
    config = config_from_args(args)
    assert (config.rows, config.rate_limits, config.seed, config.drop_rate) == (42, False, 9, 0.02)
    assert config.rows_by_operation == {"list-segment": 5} and config.sunset == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert config_from_args(parser.parse_args([])) == FakeTenantConfig()
    with pytest.raises(ConfigurationError):
        config_from_args(parser.parse_args(["--rows", "-1"]))


@pytest.mark.fake_tenant(rows=7, seed=5)
@pytest.mark.fake_tenant(rows=9, cursor_ignored={"list_segment"})
def test_fake_tenant_marks_change_the_fixture_settings(fake_tenant: Any) -> None:
    # As with get_closest_marker, the mark nearest the function wins; the others fill in.
    assert (fake_tenant.config.rows, fake_tenant.config.seed) == (9, 5)
    assert fake_tenant.config.cursor_ignored == {"list_segment"} and fake_tenant.config.indexes == 2
    token = fake_tenant.issue_token()
    hdrs = {
        "Authorization": f"Bearer {token}",
        "amperity-tenant": fake_tenant.config.tenant,
        "api-version": CONTROL_PLANE,
    }
    first = httpx.get(fake_tenant.base_url + "/segments", params={"limit": 5}, headers=hdrs).json()
    again = httpx.get(
        fake_tenant.base_url + "/segments",
        params={"limit": 5, "next_token": first["next_token"]},
        headers=hdrs,
    ).json()
    assert again["data"] == first["data"] and again["next_token"] != first["next_token"]
