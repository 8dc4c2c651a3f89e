"""The Real-time API through AmperityClient, with no per-endpoint code: its base URL, no api-version,
its own rate bucket, body sizes checked before sending, what is retried and what is not, 202 and
204 told apart, ``find`` for lookups, the one-page segment members and paginated memberships."""

from __future__ import annotations

import json
import warnings
from typing import Any

import anyio
import httpx
import pytest
import respx
from client_support import NoLimit

from amperity_async import (
    UNLIMITED,
    AmperityClient,
    APITimeoutError,
    ClientCredentials,
    ConfigurationError,
    ConflictError,
    EmptyAnswer,
    IncompleteListWarning,
    InternalServerError,
    ManualClock,
    NotFoundError,
    RequestTooLargeError,
    StaticToken,
    TokenBucket,
)
from amperity_async.api.realtime import (
    get_collection_history,
    get_collection_profile,
    get_collection_stats,
    list_profile_segments,
    list_segment_members,
    lookup_profile,
    lookup_profile_by_keys,
    send_event,
)
from amperity_async.api.segments import list_segment
from amperity_async.api.workflow import get_workflow
from amperity_async.models import HistoryScale, KeychainKeys, KeychainLookup, StreamEvent
from amperity_async.testing import FakeTenant

pytestmark = pytest.mark.timeout(60)

API = "https://app.amperity.com/api"
PROF = "https://app.amperity.com/prof"
KEYS = KeychainKeys.from_dict({"email": "customer+vip@example.com"})
PROFILE = {
    "collection_id": "pc-customers",
    "profile_id": "p-1",
    "attributes": {"email": "customer+vip@example.com", "given_name": "Ana"},
    "links": {"email": ["customer+vip@example.com"]},
}
ERROR = {"status": 500, "message": "x"}


def client_on(router: respx.Router, **options: Any) -> AmperityClient:
    settings: dict[str, Any] = {
        "tenant": "acme",
        "auth": StaticToken("rt-token"),
        "transport": httpx.MockTransport(router.async_handler),
        "rate_limit": NoLimit(),
        "realtime_rate_limit": NoLimit(),
        "max_retries": 3,
    }
    settings.update(options)
    return AmperityClient(**settings)


def event(size: int) -> StreamEvent:
    """An event whose JSON body is exactly ``size`` bytes."""
    overhead = len(json.dumps({"email": "big@example.com", "blob": ""}, separators=(",", ":")).encode())
    return StreamEvent.from_dict({"email": "big@example.com", "blob": "x" * (size - overhead)})


# -- on the wire -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_operation_goes_to_prof_with_the_tenant_and_token_and_no_api_version() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{PROF}/lookup/pc-customers/keychain").respond(200, json=PROFILE)
    router.post(f"{PROF}/lookup/pc-customers/keychain").respond(200, json=PROFILE)
    router.get(f"{PROF}/profiles/pc-customers/p-1").respond(200, json=PROFILE)
    router.post(f"{PROF}/events/es-web").respond(202)
    router.get(f"{PROF}/segments/rts-1/profiles").respond(200, json={"data": [{"profile_id": "p-1"}]})
    router.get(f"{PROF}/profiles/pc-customers/p-1/segments").respond(200, json={"data": []})
    router.get(f"{PROF}/collections/pc-customers/stats").respond(200, json={"total_profiles": 1})
    router.get(f"{PROF}/collections/pc-customers/history").respond(200, json={"scale": "hour", "data": []})
    async with client_on(router) as client:
        await client.call(lookup_profile, "pc-customers", keys=KEYS, field_enrich=True)
        await client.call(
            lookup_profile_by_keys, "pc-customers", body=KeychainLookup(keys=KEYS, enrich=False)
        )
        await client.call(get_collection_profile, "pc-customers", "p-1", enrich=True)
        await client.call(send_event, "es-web", body=StreamEvent.from_dict({"email": "a@example.com"}))
        await client.call(list_segment_members, "rts-1")
        await client.call(list_profile_segments, "pc-customers", "p-1", limit=100)
        await client.call(get_collection_stats, "pc-customers")
        await client.call(get_collection_history, "pc-customers", scale=HistoryScale.HOUR)
    sent = [call.request for call in router.calls]
    assert len(sent) == 8
    for request in sent:
        assert request.url.path.startswith("/prof/"), request.url
        assert "api-version" not in request.headers, request.url
        assert request.headers["amperity-tenant"] == "acme"
        assert request.headers["authorization"] == "Bearer rt-token"
    lookup, by_keys, profile, posted, members, segments, _, history = sent
    assert lookup.url.params.multi_items() == [("email", "customer+vip@example.com"), ("_enrich", "true")]
    assert json.loads(by_keys.content) == {"keys": {"email": "customer+vip@example.com"}, "enrich": False}
    assert profile.url.query == b"enrich=true"
    assert posted.headers["content-length"] == str(len(posted.content))
    assert "transfer-encoding" not in posted.headers
    assert members.url.query == b"" and segments.url.query == b"limit=100"
    assert history.url.query == b"scale=hour"


@pytest.mark.anyio
async def test_the_control_plane_still_gets_its_version_and_base_url() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{API}/segments").respond(200, json={"data": []})
    async with client_on(router) as client:
        await client.call(list_segment)
    (call,) = router.calls
    assert call.request.headers["api-version"] == "2024-04-01"


@pytest.mark.parametrize(
    ("base_url", "realtime", "expected"),
    [
        ("https://app.amperity.com/api", None, "https://app.amperity.com/prof"),
        ("https://acme.amperity.com/api/", None, "https://acme.amperity.com/prof"),
        ("https://gateway.example.com/amperity/api", None, "https://gateway.example.com/amperity/prof"),
        (
            "https://app.amperity.com/api",
            "https://rt.example.com/edge/prof",
            "https://rt.example.com/edge/prof",
        ),
    ],
)
@pytest.mark.anyio
async def test_the_realtime_base_url_follows_base_url_unless_given(
    base_url: str, realtime: str | None, expected: str
) -> None:
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{expected}/collections/pc-1/stats").respond(200, json={"total_profiles": 0})
    api_root = base_url.rstrip("/")
    router.get(f"{api_root}/segments").respond(200, json={"data": []})
    async with client_on(router, base_url=base_url, realtime_base_url=realtime) as client:
        assert client.realtime_base_url == expected
        await client.call(get_collection_stats, "pc-1")
        await client.call(list_segment)
    stats, segments = (call.request for call in router.calls)
    assert str(stats.url) == f"{expected}/collections/pc-1/stats"
    assert stats.headers["host"] == httpx.URL(expected).netloc.decode()
    assert str(segments.url) == f"{api_root}/segments"


@pytest.mark.anyio
async def test_a_base_url_without_api_needs_an_explicit_realtime_base_url() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.get("https://proxy.example.com/amperity/segments").respond(200, json={"data": []})
    async with client_on(router, base_url="https://proxy.example.com/amperity") as client:
        assert client.realtime_base_url is None
        await client.call(list_segment)  # the control plane is unaffected
        with pytest.raises(ConfigurationError, match="pass realtime_base_url="):
            await client.call(get_collection_stats, "pc-1")
    with pytest.raises(ConfigurationError, match="realtime_base_url .* plain http"):
        AmperityClient(tenant="acme", auth="t", realtime_base_url="http://rt.example.com/prof")


# -- what is sent, and what is sent again ---------------------------------------------------------


@pytest.mark.anyio
async def test_an_event_over_64_kb_is_refused_before_sending_and_64_kb_is_sent() -> None:
    router = respx.Router(assert_all_mocked=True)
    route = router.post(f"{PROF}/events/es-web").respond(202)
    async with client_on(router) as client:
        with pytest.raises(RequestTooLargeError) as caught:
            await client.call(send_event, "es-web", body=event(65537))
        assert not route.called
        assert (caught.value.operation, caught.value.size, caught.value.limit) == ("send_event", 65537, 65536)
        assert "65537 bytes" in str(caught.value) and "at most 65536" in str(caught.value)
        answer = await client.call(send_event, "es-web", body=event(65536))
    assert answer == EmptyAnswer(202)
    assert len(route.calls.last.request.content) == 65536


@pytest.mark.parametrize(("status", "published"), [(202, True), (204, False)])
@pytest.mark.anyio
async def test_published_and_dropped_events_are_told_apart(status: int, published: bool) -> None:
    router = respx.Router(assert_all_mocked=True)
    router.post(f"{PROF}/events/es-web").respond(status, headers={"x-request-id": "r-9"})
    async with client_on(router) as client:
        answer = await client.call(
            send_event, "es-web", body=StreamEvent.from_dict({"email": "a@example.com"})
        )
    assert isinstance(answer, EmptyAnswer)
    assert (answer.status_code == 202, answer.request_id, answer.ok) == (published, "r-9", True)


@pytest.mark.parametrize(
    ("answers", "calls", "outcome"),
    [
        # The page: a 503 means the event was not published; retrying it cannot publish it twice.
        ([503, 503, 202], 3, None),
        ([429, 202], 2, None),
        # Anything else may have published it: never sent again.
        ([500, 202], 1, InternalServerError),
        ([409, 202], 1, ConflictError),
    ],
)
@pytest.mark.anyio
async def test_send_event_retries_only_what_cannot_publish_twice(
    answers: list[int], calls: int, outcome: type[Exception] | None
) -> None:
    router = respx.Router(assert_all_mocked=True)
    route = router.post(f"{PROF}/events/es-web").mock(
        side_effect=[
            httpx.Response(s, json={"status": s, "message": "m"}) if s >= 400 else httpx.Response(s)
            for s in answers
        ]
    )
    clock = ManualClock()
    async with client_on(router, clock=clock) as client:

        async def send() -> Any:
            return await client.call(
                send_event, "es-web", body=StreamEvent.from_dict({"email": "a@example.com"})
            )

        async with anyio.create_task_group() as group:
            results: list[Any] = []

            async def run() -> None:
                try:
                    results.append(await send())
                except Exception as exc:  # inspected below
                    results.append(exc)

            group.start_soon(run)
            await clock.advance(120)
    assert route.call_count == calls
    (result,) = results
    if outcome is None:
        assert result == EmptyAnswer(202)
    else:
        assert isinstance(result, outcome)


@pytest.mark.anyio
async def test_a_timed_out_event_is_not_sent_again() -> None:
    router = respx.Router(assert_all_mocked=True)
    route = router.post(f"{PROF}/events/es-web").mock(side_effect=httpx.ReadTimeout("slow"))
    async with client_on(router) as client:
        with pytest.raises(APITimeoutError, match="may have reached the server"):
            await client.call(send_event, "es-web", body=StreamEvent.from_dict({"email": "a@example.com"}))
    assert route.call_count == 1


@pytest.mark.anyio
async def test_the_lookup_by_keys_is_a_post_that_is_retried_like_a_get() -> None:
    router = respx.Router(assert_all_mocked=True)
    route = router.post(f"{PROF}/lookup/pc-1/keychain").mock(
        side_effect=[
            httpx.Response(500, json=ERROR),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=PROFILE),
        ]
    )
    clock = ManualClock()
    async with client_on(router, clock=clock) as client:

        async def look() -> Any:
            return await client.call(lookup_profile_by_keys, "pc-1", body=KeychainLookup(keys=KEYS))

        async with anyio.create_task_group() as group:
            found: list[Any] = []

            async def run() -> None:
                found.append(await look())

            group.start_soon(run)
            await clock.advance(120)
    assert route.call_count == 3 and found[0].profile_id == "p-1"


# -- find, and lists --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_find_answers_none_for_no_match_and_call_raises() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{PROF}/lookup/pc-1/keychain").respond(404, json={"status": 404, "message": "No match"})
    router.get(f"{PROF}/profiles/pc-1/p-9").respond(404, json={"status": 404, "message": "No profile"})
    router.get(f"{PROF}/collections/pc-1/stats").respond(
        404, json={"status": 404, "message": "No collection"}
    )
    router.post(f"{PROF}/lookup/pc-1/keychain").respond(400, json={"status": 400, "message": "No keys"})
    async with client_on(router) as client:
        assert await client.find(lookup_profile, "pc-1", keys=KEYS) is None
        assert await client.find(get_collection_profile, "pc-1", "p-9") is None
        # The resource view's methods, and the descriptors, as call takes them.
        assert await client.find(client.realtime.lookup, "pc-1", keys=KEYS) is None
        assert await client.find(lookup_profile.ENDPOINT, "pc-1", keys=KEYS) is None
        with pytest.raises(NotFoundError):
            await client.realtime.lookup("pc-1", keys=KEYS)
        with pytest.raises(NotFoundError, match="No match"):
            await client.call(lookup_profile, "pc-1", keys=KEYS)
        with pytest.raises(ConfigurationError, match="get_collection_stats has no status that means"):
            await client.find(get_collection_stats, "pc-1")
        with pytest.raises(ConfigurationError, match="get_workflow has no status"):
            await client.find(get_workflow, "wf-1")
        # Other errors are errors.
        from amperity_async import BadRequestError

        with pytest.raises(BadRequestError):
            await client.find(
                lookup_profile_by_keys, "pc-1", body=KeychainLookup(keys=KeychainKeys.from_dict({}))
            )


@pytest.mark.anyio
async def test_segment_members_is_one_request_that_warns_when_it_cannot_hold_every_member() -> None:
    router = respx.Router(assert_all_mocked=True)
    route = router.get(f"{PROF}/segments/rts-1/profiles").respond(
        200, json={"data": [{"profile_id": "p-1"}, {"profile_id": "p-2"}], "next_token": "opaque", "total": 5}
    )
    async with client_on(router) as client:
        with pytest.warns(IncompleteListWarning, match="answered 2 of 5 items"):
            page = await client.call(list_segment_members, "rts-1")
        assert [m.profile_id for m in page.data] == ["p-1", "p-2"]
        with pytest.raises(ConfigurationError, match="one page and no cursor"):
            client.paginate(list_segment_members, "rts-1")
        with pytest.raises(TypeError, match="next_token"):
            await client.call(list_segment_members, "rts-1", next_token="opaque")
        route.respond(200, json={"data": [{"profile_id": "p-1"}], "total": 1})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await client.call(list_segment_members, "rts-1")
    assert all("next_token" not in str(call.request.url) for call in router.calls)


# -- rate buckets ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lookups_never_wait_behind_an_exhausted_control_plane_bucket() -> None:
    clock = ManualClock()
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{API}/segments").respond(200, json={"data": []})
    router.get(f"{PROF}/lookup/pc-1/keychain").respond(200, json=PROFILE)
    control_plane = TokenBucket(1, capacity=1, clock=clock)
    async with client_on(router, rate_limit=control_plane, realtime_rate_limit=None, clock=clock) as client:
        await client.call(list_segment)  # the control plane's one token
        async with anyio.create_task_group() as group:
            group.start_soon(client.call, list_segment)  # waits for a second that never comes
            # The default Real-time bucket's burst (the manual clock never refills it).
            with anyio.fail_after(5):
                profiles = [await client.call(lookup_profile, "pc-1", keys=KEYS) for _ in range(20)]
            group.cancel_scope.cancel()
    assert len(profiles) == 20


@pytest.mark.anyio
async def test_a_realtime_429_slows_the_realtime_bucket_only() -> None:
    class Recording(NoLimit):
        def __init__(self) -> None:
            self.pauses: list[float | None] = []

        def on_rate_limited(self, retry_after: float | None = None) -> None:
            self.pauses.append(retry_after)

    control, realtime = Recording(), Recording()
    router = respx.Router(assert_all_mocked=True)
    router.get(f"{PROF}/collections/pc-1/stats").mock(
        side_effect=[
            httpx.Response(429, json={"status": 429, "message": "slow"}, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"total_profiles": 1}),
        ]
    )
    async with client_on(router, rate_limit=control, realtime_rate_limit=realtime) as client:
        await client.call(get_collection_stats, "pc-1")
    assert (control.pauses, realtime.pauses) == ([], [0.0])


@pytest.mark.anyio
async def test_realtime_rate_limit_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="realtime_rate_limit"):
        AmperityClient(tenant="acme", auth="t", realtime_rate_limit=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="per_operation_limits"):
        AmperityClient(tenant="acme", auth="t", per_operation_limits=True, realtime_rate_limit=UNLIMITED)


# -- a per-call deadline ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_within_bounds_each_call_of_its_task_and_no_other() -> None:
    release = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=PROFILE)

    fast = httpx.Response(200, json={"total_profiles": 1})
    client = AmperityClient(
        tenant="acme",
        auth=StaticToken("t"),
        transport=httpx.MockTransport(
            lambda request: slow(request) if "lookup" in request.url.path else _answer(fast)
        ),
        realtime_rate_limit=NoLimit(),
    )
    async with client:
        outside: list[Any] = []

        async def unbounded() -> None:
            # Another task's call: the block does not bound it, it waits for the answer.
            outside.append(await client.call(lookup_profile, "pc-1", keys=KEYS))

        async with anyio.create_task_group() as group:
            group.start_soon(unbounded)
            with anyio.fail_after(30), pytest.raises(APITimeoutError) as caught, client.within(0.05):
                await client.find(lookup_profile, "pc-1", keys=KEYS)
            assert caught.value.bound == "deadline" and not outside
            release.set()
        assert outside[0].profile_id == "p-1"
        assert (await client.call(get_collection_stats, "pc-1")).total_profiles == 1
        for bad in (0, -1.0, float("nan"), True):
            with pytest.raises(ConfigurationError, match="within\\(\\) takes a positive number"):
                with client.within(bad):
                    pass


async def _answer(response: httpx.Response) -> httpx.Response:
    return response


# -- against the fake tenant (aiohttp: asyncio only) ---------------------------------------------------

on_asyncio = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@on_asyncio
@pytest.mark.anyio
async def test_send_event_then_lookup_finds_the_profile_through_the_fake_tenant() -> None:
    async with FakeTenant(profiles_per_collection=20, fail_first={"send-event": (503, 2)}) as tenant:
        auth = ClientCredentials(tenant.client_id, tenant.client_secret)
        async with AmperityClient(tenant=tenant.tenant, auth=auth, base_url=tenant.base_url) as client:
            keys = KeychainKeys.from_dict({"email": "first.visit@example.com"})
            assert await client.find(lookup_profile, "pc-customers", keys=keys) is None
            answer = await client.call(
                send_event,
                "es-web-events",
                body=StreamEvent.from_dict({"email": "first.visit@example.com", "event_type": "purchase"}),
            )
            assert answer.status_code == 202
            profile = await client.find(lookup_profile, "pc-customers", keys=keys, field_enrich=True)
            assert profile is not None and profile.attributes["event_type"] == "purchase"
            assert "predicted_clv" in profile.attributes.to_dict()
            # The 503s were retried; the event was published once.
            assert tenant.stats["by_operation"]["send-event"] == 3
            assert tenant.profile_store.published == 1
            assert client.stats.by_operation["send_event"].retries == 2


@on_asyncio
@pytest.mark.anyio
async def test_paginate_reads_every_page_of_a_profiles_segments() -> None:
    segments = {f"rts-{n:02d}": ("loyalty_tier", "gold") for n in range(7)}
    async with FakeTenant(profiles_per_collection=30, realtime_segments=segments) as tenant:
        gold = next(
            p
            for p in tenant.profile_store.collection("pc-customers").profiles.values()
            if p.attributes["loyalty_tier"] == "gold"
        )
        auth = ClientCredentials(tenant.client_id, tenant.client_secret)
        async with AmperityClient(tenant=tenant.tenant, auth=auth, base_url=tenant.base_url) as client:
            found = [
                s.segment_id
                async for s in client.paginate(
                    list_profile_segments, "pc-customers", gold.profile_id, limit=2
                )
            ]
            pages = client.pages(list_profile_segments, "pc-customers", gold.profile_id, limit=3)
            sizes = [len(page.raw) async for page in pages]
        assert tenant.stats["by_operation"]["list-profile-segments"] == 4 + 3
    assert found == sorted(segments)
    assert sizes == [3, 3, 1] and pages.next_token is None


@on_asyncio
@pytest.mark.anyio
async def test_thousands_of_concurrent_lookups_share_one_client_and_one_token() -> None:
    async with FakeTenant(profiles_per_collection=2000, rate_limits=False) as tenant:
        auth = ClientCredentials(tenant.client_id, tenant.client_secret)
        async with AmperityClient(tenant=tenant.tenant, auth=auth, base_url=tenant.base_url) as client:
            found: list[str] = []

            async def look(i: int) -> None:
                keys = KeychainKeys.from_dict({"email": f"customer{i}@example.com"})
                profile = await client.find(lookup_profile, "pc-customers", keys=keys)
                assert profile is not None
                found.append(profile.profile_id)

            async with anyio.create_task_group() as group:
                for i in range(2000):
                    group.start_soon(look, i)
        assert tenant.stats["tokens_issued"] == 1 and tenant.stats["rate_limited"] == 0
    assert len(set(found)) == 2000
