"""The fake tenant's Real-time API on the wire: the profile store behind its eight operations, each
documented status reachable (naturally or by a fault setting), the same auth and tenant checks,
and answers that fit the normalized spec."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_tenant_support import exchange, raw_request
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from amperity_async.custom.errors import ConfigurationError
from amperity_async.testing import FakeTenant, FakeTenantConfig
from amperity_async.testing.cli import config_from_args

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi" / "amperity.json"
STREAM, COLLECTION = "es-web-events", "pc-customers"
EVENTS = f"/prof/events/{STREAM}"
LOOKUP = f"/prof/lookup/{COLLECTION}/keychain"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC_FILE.read_text("utf-8")))


def conforms(openapi: OpenAPI, method: str, path: str, response: httpx.Response) -> None:
    request = MockRequest("https://app.amperity.com", method.lower(), path)
    content_type = response.headers.get("content-type", "application/json").split(";")[0]
    openapi.validate_response(
        request, MockResponse(response.content, status_code=response.status_code, content_type=content_type)
    )


class Realtime:
    """An httpx client on the tenant's host, with a valid token and the tenant header, no api-version."""

    def __init__(self, tenant: FakeTenant, client: httpx.AsyncClient) -> None:
        self.tenant = tenant
        self.client = client
        self.headers = {"Authorization": f"Bearer {tenant.issue_token()}", "amperity-tenant": tenant.tenant}

    async def send(self, event: Any, stream: str = STREAM, **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/prof/events/{stream}", json=event, headers={**self.headers, **headers}
        )

    async def get(self, path: str, **params: str) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers)


@asynccontextmanager
async def realtime(**settings: Any) -> AsyncIterator[Realtime]:
    settings.setdefault("rate_limits", False)
    settings.setdefault("profiles_per_collection", 40)
    async with FakeTenant(FakeTenantConfig(**settings)) as tenant:
        async with httpx.AsyncClient(base_url=tenant.root_url, timeout=30) as client:
            yield Realtime(tenant, client)


# -- events and lookups --------------------------------------------------------------------------


async def test_an_event_creates_the_profile_a_lookup_then_finds(openapi: OpenAPI) -> None:
    async with realtime() as api:
        assert (await api.get(LOOKUP, email="new.customer@example.com")).status_code == 404
        sent = await api.send(
            {"email": "new.customer@example.com", "event_type": "purchase", "order_total": 42.0}
        )
        assert (sent.status_code, sent.content) == (202, b"")
        conforms(openapi, "POST", EVENTS, sent)

        by_query = await api.get(LOOKUP, email="new.customer@example.com")
        by_body = await api.post(LOOKUP, {"keys": {"email": "new.customer@example.com"}, "enrich": False})
        for answer, method in ((by_query, "GET"), (by_body, "POST")):
            assert answer.status_code == 200, answer.text
            conforms(openapi, method, LOOKUP, answer)
        profile = by_query.json()
        assert by_body.json() == profile
        assert profile["collection_id"] == COLLECTION
        assert profile["attributes"] == {
            "email": "new.customer@example.com",
            "event_type": "purchase",
            "order_total": 42.0,
        }
        assert profile["links"] == {"email": ["new.customer@example.com"]}
        location = f"{api.tenant.root_url}/prof/profiles/{COLLECTION}/{profile['profile_id']}"
        assert by_query.headers["location"] == by_body.headers["location"] == location
        again = await api.client.get(location, headers=api.headers)
        assert again.json() == profile
        conforms(openapi, "GET", f"/prof/profiles/{COLLECTION}/{profile['profile_id']}", again)


async def test_an_event_updates_the_profile_its_keychain_finds_and_links_new_values() -> None:
    async with realtime() as api:
        seeded = api.tenant.profile_store.collection(COLLECTION).profiles
        existing = next(iter(seeded.values()))
        phone = existing.links["phone"][0]
        before = (await api.get(f"/prof/collections/{COLLECTION}/stats")).json()
        sent = await api.send(
            {"phone": phone, "email": "second.address@example.com", "event_type": "page_view"}
        )
        assert sent.status_code == 202
        found = (await api.get(LOOKUP, email="second.address@example.com", phone=phone)).json()
        assert found["profile_id"] == existing.profile_id
        assert found["links"]["email"] == [existing.links["email"][0], "second.address@example.com"]
        assert found["attributes"]["event_type"] == "page_view"
        after = (await api.get(f"/prof/collections/{COLLECTION}/stats")).json()
        assert after["total_profiles"] == before["total_profiles"]
        assert after["link_cardinality"]["email"] == before["link_cardinality"]["email"] + 1


async def test_lookup_answers_400_without_keys_and_404_when_keys_disagree_or_match_nothing() -> None:
    async with realtime() as api:
        profiles = list(api.tenant.profile_store.collection(COLLECTION).profiles.values())
        first, second = profiles[0], profiles[1]
        assert (await api.get(LOOKUP)).status_code == 400
        assert (await api.post(LOOKUP, {"keys": {}})).status_code == 400
        assert (await api.post(LOOKUP, {"enrich": True})).status_code == 400
        disagree = await api.get(LOOKUP, email=first.links["email"][0], phone=second.links["phone"][0])
        assert disagree.status_code == 404
        assert (await api.get(LOOKUP, email="nobody@example.com")).json()["status"] == 404
        assert (
            await api.get("/prof/lookup/pc-unknown/keychain", email=first.links["email"][0])
        ).status_code == 404
        number = await api.post(LOOKUP, {"keys": {"email": 7}})
        assert number.status_code == 400 and "body.keys.email must be a string" in number.text


async def test_enrich_is_named_as_each_page_names_it() -> None:
    async with realtime() as api:
        profile = next(iter(api.tenant.profile_store.collection(COLLECTION).profiles.values()))
        email = profile.links["email"][0]
        plain = (await api.get(LOOKUP, email=email)).json()
        enriched = (await api.get(LOOKUP, email=email, _enrich="true")).json()
        assert "predicted_clv" not in plain["attributes"] and "predicted_clv" in enriched["attributes"]
        by_body = (await api.post(LOOKUP, {"keys": {"email": email}, "enrich": True})).json()
        assert by_body == enriched
        path = f"/prof/profiles/{COLLECTION}/{profile.profile_id}"
        assert "predicted_clv" in (await api.get(path, enrich="true")).json()["attributes"]
        # The GET lookup's other parameters are keys: `enrich` there is a key no profile has.
        assert (await api.get(LOOKUP, email=email, enrich="true")).status_code == 404
        wrong = await api.get(path, _enrich="true")
        assert wrong.status_code == 400 and "unknown query parameter '_enrich'" in wrong.text


# -- every status of send-event ------------------------------------------------------------------


async def test_send_event_statuses_of_the_page(openapi: OpenAPI) -> None:
    async with realtime(
        dropping_streams="es-dropped",
        paused_streams="es-paused",
        event_streams={
            STREAM: COLLECTION,
            "es-dropped": COLLECTION,
            "es-paused": COLLECTION,
        },
    ) as api:
        store = api.tenant.profile_store
        cases: list[tuple[int, httpx.Response]] = [
            (204, await api.send({"email": "dropped@example.com"}, stream="es-dropped")),
            (409, await api.send({"email": "paused@example.com"}, stream="es-paused")),
            (404, await api.send({"email": "x@example.com"}, stream="es-nowhere")),
            (400, await api.send([{"email": "x@example.com"}])),
            (
                400,
                await api.client.post(
                    EVENTS, content=b"{not json", headers={**api.headers, "content-type": "application/json"}
                ),
            ),
            (
                415,
                await api.client.post(
                    EVENTS, content=b"{}", headers={**api.headers, "content-type": "text/plain"}
                ),
            ),
            (413, await api.send({"blob": "x" * 65536})),
            (401, await api.send({}, Authorization="Bearer not-a-token")),
        ]
        for expected, response in cases:
            assert response.status_code == expected, (expected, response.text)
            conforms(openapi, "POST", EVENTS, response)
        assert (store.published, store.dropped) == (0, 1)
        assert (await api.get(LOOKUP, email="dropped@example.com")).status_code == 404


async def test_an_event_of_exactly_64_kb_is_accepted_and_one_byte_more_is_413() -> None:
    async with realtime() as api:
        padding = 65536 - len(
            json.dumps({"email": "big@example.com", "blob": ""}, separators=(",", ":")).encode()
        )
        body = json.dumps({"email": "big@example.com", "blob": "x" * padding}, separators=(",", ":")).encode()
        assert len(body) == 65536
        hdrs = {**api.headers, "content-type": "application/json"}
        assert (await api.client.post(EVENTS, content=body, headers=hdrs)).status_code == 202
        over = body[:-2] + b'x"}'
        assert len(over) == 65537
        assert (await api.client.post(EVENTS, content=over, headers=hdrs)).status_code == 413


async def test_a_chunked_event_without_content_length_is_411() -> None:
    async with realtime() as api:
        request = raw_request(
            "POST",
            EVENTS,
            {**api.headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
        answer = await exchange(api.tenant, request + b"2\r\n{}\r\n0\r\n\r\n")
        assert answer.status == 411


async def test_fail_first_answers_its_status_and_publishes_nothing_until_it_runs_out() -> None:
    async with realtime(fail_first="send-event=503x2") as api:
        statuses = [(await api.send({"email": "retried@example.com"})).status_code for _ in range(3)]
        assert statuses == [503, 503, 202]
        assert api.tenant.profile_store.published == 1
        assert api.tenant.stats["injected_errors"] == 2


async def test_the_realtime_rate_limit_answers_429() -> None:
    clock = [1_800_000_000.0]
    async with realtime(rate_limits=True, realtime_rate=2, clock=lambda: clock[0]) as api:
        statuses = [(await api.send({"email": f"r{i}@example.com"})).status_code for i in range(3)]
        assert statuses == [202, 202, 429]
        clock[0] += 1.0
        assert (await api.send({"email": "later@example.com"})).status_code == 202


async def test_same_auth_and_tenant_checks_and_no_api_version_needed() -> None:
    async with realtime() as api:
        email = next(iter(api.tenant.profile_store.collection(COLLECTION).profiles.values())).links["email"][
            0
        ]
        no_tenant = await api.client.get(
            LOOKUP, params={"email": email}, headers={"Authorization": api.headers["Authorization"]}
        )
        assert no_tenant.status_code == 400 and "amperity-tenant" in no_tenant.text
        other = await api.client.get(
            LOOKUP, params={"email": email}, headers={**api.headers, "amperity-tenant": "other"}
        )
        assert other.status_code == 401
        anonymous = await api.client.get(
            LOOKUP, params={"email": email}, headers={"amperity-tenant": api.tenant.tenant}
        )
        assert anonymous.status_code == 401
        assert (await api.get(LOOKUP, email=email)).status_code == 200
        # The control plane still needs its version header.
        assert (await api.get("/api/segments")).status_code == 400


# -- segments, statistics, history ----------------------------------------------------------------


async def test_segment_members_is_one_page_with_an_unusable_cursor(openapi: OpenAPI) -> None:
    async with realtime(profiles_per_collection=200, default_limit=25) as api:
        path = "/prof/segments/rts-gold/profiles"
        page = await api.get(path)
        conforms(openapi, "GET", path, page)
        body = page.json()
        gold = [
            p.profile_id
            for p in api.tenant.profile_store.collection(COLLECTION).profiles.values()
            if p.attributes["loyalty_tier"] == "gold"
        ]
        assert body["total"] == len(gold) > 25
        assert [m["profile_id"] for m in body["data"]] == gold[:25]
        assert body["next_token"]
        refused = await api.get(path, next_token=body["next_token"])
        assert refused.status_code == 400 and "next_token" in refused.text
        assert (await api.get("/prof/segments/rts-unknown/profiles")).status_code == 404


async def test_profile_segments_follow_events_and_page_with_cursors(openapi: OpenAPI) -> None:
    segments = {f"rts-{n}": ("event_type", "purchase") for n in range(5)}
    async with realtime(realtime_segments=segments) as api:
        await api.send({"email": "buyer@example.com", "event_type": "purchase"})
        profile = (await api.get(LOOKUP, email="buyer@example.com")).json()
        path = f"/prof/profiles/{COLLECTION}/{profile['profile_id']}/segments"
        seen, token, pages = [], None, 0
        while True:
            answer = await api.get(path, limit="2", **({"next_token": token} if token else {}))
            conforms(openapi, "GET", path, answer)
            pages += 1
            seen += [s["segment_id"] for s in answer.json()["data"]]
            token = answer.json().get("next_token")
            if not token:
                break
        assert (seen, pages) == (sorted(segments), 3)
        forged = await api.get(path, next_token="bm90LWEtY3Vyc29y")
        assert forged.status_code == 400
        members = (await api.get("/prof/segments/rts-3/profiles")).json()
        assert members["data"] == [{"profile_id": profile["profile_id"]}]


async def test_stats_and_history_of_a_collection(openapi: OpenAPI) -> None:
    async with realtime(profiles_per_collection=30) as api:
        stats_path = f"/prof/collections/{COLLECTION}/stats"
        stats = await api.get(stats_path)
        conforms(openapi, "GET", stats_path, stats)
        assert stats.json() == {
            "total_profiles": 30,
            "link_cardinality": {"email": 30, "phone": 30, "loyalty_id": 30},
        }
        path = f"/prof/collections/{COLLECTION}/history"
        history = await api.get(
            path, scale="day", after="2026-01-01T00:00:00Z", before="2026-04-01T00:00:00Z"
        )
        conforms(openapi, "GET", path, history)
        buckets = history.json()["data"]
        # Both ends are inclusive: 90 days from Jan 1 to Apr 1, and Apr 1 itself.
        assert len(buckets) == 91 and buckets[0]["bucket"].startswith("2026-01-01")
        counts = [b["count"] for b in buckets]
        assert counts == sorted(counts) and counts[-1] == 30
        assert (
            await api.get(path, after="2026-02-01T00:00:00Z", before="2026-02-01T00:00:00Z")
        ).status_code == 400
        assert (await api.get(path, scale="week")).status_code == 400
        assert (
            await api.get(path, scale="minute", after="2026-01-01T00:00:00Z", before="2026-02-01T00:00:00Z")
        ).status_code == 400
        assert (await api.get("/prof/collections/pc-unknown/stats")).status_code == 404


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"event_streams": "es-a=pc-elsewhere"}, "feed pc-elsewhere, not among profile_collections"),
        ({"dropping_streams": "es-unknown"}, "dropping_streams names es-unknown"),
        ({"dropping_streams": STREAM, "paused_streams": STREAM}, "cannot both drop events and be paused"),
        ({"fail_first": "send-event=200x2"}, "must be an error status and a count"),
        ({"fail_first": "send-event=503x0"}, "must be an error status and a count"),
        ({"realtime_segments": "rts-x=tier"}, "must be ATTRIBUTE=VALUE"),
        ({"profile_collections": ""}, "profile_collections needs at least one name"),
    ],
)
async def test_bad_realtime_settings_are_refused_naming_them(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        FakeTenantConfig.from_mapping(settings)


async def test_fail_first_names_only_served_operations() -> None:
    with pytest.raises(ConfigurationError, match="'send-nothing' is no operation"):
        async with FakeTenant(FakeTenantConfig(fail_first="send-nothing=503x1")):
            pass


async def test_realtime_settings_as_command_line_flags() -> None:
    import argparse

    from amperity_async.testing.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--profile-collections",
            "pc-a,pc-b",
            "--event-streams",
            "es-1=pc-a,es-2=pc-b",
            "--realtime-segments",
            "rts-vip=tier=vip",
            "--paused-streams",
            "es-2",
            "--fail-first",
            "send_event=503x3",
            "--realtime-rate",
            "50",
        ]
    )
    config = config_from_args(args)
    assert config.profile_collections == ("pc-a", "pc-b")
    assert config.event_streams == {"es-1": "pc-a", "es-2": "pc-b"}
    assert config.realtime_segments == {"rts-vip": ("tier", "vip")}
    assert config.paused_streams == frozenset({"es-2"})
    assert config.fail_first == {"send_event": (503, 3)}
    assert config.realtime_rate == 50
