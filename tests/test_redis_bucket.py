"""RedisTokenBucket against a real redis-server on 127.0.0.1 (started and stopped here).

Budget tests record every lease in the Redis server's time (``RecordingBucket``) and check what the
script promises, strictly, since it holds by construction whatever the machine's speed: no window
of ``seconds`` holds more than ``count`` tokens of all workers together, counting a lease's first
token at its ready time and its other spent tokens anywhere until the lease was settled, and every
spend lies where its lease allowed it (a test on one machine reads Redis ``TIME`` and
``time.time()`` from the same clock). The token-bucket bound ``capacity + rate * t`` is asserted
strictly too; achieved rates only loosely. Tests that must not see a grant use rates so low
(1 token per 1000 s) or windows so long (30 s) that "not within half a second" has a wide margin.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

redis_asyncio = pytest.importorskip("redis.asyncio")

from redis_server import RedisServer  # noqa: E402

from amperity_async.custom.client import CONTROL_PLANE_RATE, PROFILE_RATE  # noqa: E402
from amperity_async.custom.clock import ManualClock  # noqa: E402
from amperity_async.custom.errors import (  # noqa: E402
    ConfigurationError,
    RateLimiterFallbackWarning,
    RateLimiterUnavailableError,
)
from amperity_async.custom.redis_bucket import (  # noqa: E402
    DEFAULT_WINDOW_SECONDS,
    Grant,
    RedisTokenBucket,
    redact_url,
)

SLOW = 0.001  # tokens per second: a token that is not in the bucket will not come during a test
LONG = 30.0  # window seconds: a token held back by the window will not come during a test
WIDE = (1000, 1.0)  # a window the bucket tests never reach
REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# time.time() and Redis TIME read one clock; this absorbs their rounding (Redis gives microseconds).
CLOCK_TOLERANCE = 0.002


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's client is asyncio-only; the trio refusal has its own test below.
    return "asyncio"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server this test may stop and restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def tenant() -> str:
    """A fresh tenant per test, so no test inherits another's bucket."""
    return f"t-{uuid.uuid4().hex[:12]}"


# recording grants in server time


@attrs.define
class LeaseRecord:
    """One lease as the script granted it (server time) and the times it was spent (wall clock)."""

    ready: float
    expiry: float
    settled: float | None = None
    spends: list[float] = attrs.Factory(list)


class RecordingBucket(RedisTokenBucket):
    """A ``RedisTokenBucket`` that records its leases and spends, for checking the bounds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leases: dict[str, LeaseRecord] = {}

    async def _round_trip(self, *, need: float, want: float, penalize: bool) -> Grant:
        settling = self._unsettled.member if self._unsettled is not None else None
        grant = await super()._round_trip(need=need, want=want, penalize=penalize)
        if settling is not None:
            self.leases[settling].settled = grant.server_time
        if grant.member:
            ready = grant.server_time + grant.wait
            self.leases[grant.member] = LeaseRecord(ready=ready, expiry=ready + self.lease_validity)
        return grant

    async def acquire(self, cost: float = 1.0) -> None:
        await super().acquire(cost)
        assert self._lease is not None, "served by the local fallback: nothing to record"
        self.leases[self._lease.member].spends.append(time.time())

    def records(self) -> dict[str, dict[str, Any]]:
        return {member: attrs.asdict(lease) for member, lease in self.leases.items()}


def spans(leases: Iterable[LeaseRecord]) -> list[tuple[float, float, int]]:
    """(from, to, tokens) in server time: where each spent token may lie, as the window counts it."""
    result = []
    for lease in leases:
        if lease.spends:
            result.append((lease.ready, lease.ready, 1))
        if len(lease.spends) > 1:
            end = lease.settled if lease.settled is not None else lease.expiry
            result.append((lease.ready, end, len(lease.spends) - 1))
    return result


def busiest_window(leases: Iterable[LeaseRecord], seconds: float) -> int:
    """The most spent tokens any window ``(a - seconds, a]`` may hold; a span counts where it overlaps.

    A span (lo, hi) overlaps the window when ``lo <= a < hi + seconds``; the count can only rise at
    some ``lo``, so those are the windows to try.
    """
    items = spans(leases)
    return max(
        (sum(n for lo, hi, n in items if lo <= a < hi + seconds) for a in {lo for lo, _, _ in items}),
        default=0,
    )


def misplaced_spends(leases: dict[str, LeaseRecord]) -> list[str]:
    """Spends before their lease was ready, or after it was settled (or had expired)."""
    wrong = []
    for member, lease in leases.items():
        end = lease.settled if lease.settled is not None else lease.expiry
        for at in lease.spends:
            if not lease.ready - CLOCK_TOLERANCE <= at <= end + CLOCK_TOLERANCE:
                wrong.append(f"{member}: spent at {at:.4f}, ready {lease.ready:.4f}, until {end:.4f}")
    return wrong


def spent(leases: Iterable[LeaseRecord]) -> int:
    return sum(len(lease.spends) for lease in leases)


async def _completes(bucket: RedisTokenBucket, within: float = 5.0, cost: float = 1.0) -> bool:
    with anyio.move_on_after(within):
        await bucket.acquire(cost)
        return True
    return False


async def _held_back(bucket: RedisTokenBucket) -> bool:
    """No token within half a second; then ``bucket`` is closed, handing its reservation back."""
    try:
        return not await _completes(bucket, within=0.5)
    finally:
        await bucket.aclose()


async def _run_for(buckets: list[RecordingBucket], seconds: float, tasks_each: int) -> float:
    start = time.monotonic()
    stop_at = start + seconds

    async def worker(bucket: RedisTokenBucket) -> None:
        while time.monotonic() < stop_at:
            await bucket.acquire()

    async with anyio.create_task_group() as tg:
        for bucket in buckets:
            for _ in range(tasks_each):
                tg.start_soon(worker, bucket)
    return time.monotonic() - start


def _all_leases(buckets: Iterable[RecordingBucket]) -> dict[str, LeaseRecord]:
    return {member: lease for bucket in buckets for member, lease in bucket.leases.items()}


# sharing, within the limit


@pytest.mark.anyio
async def test_independent_instances_keep_every_window_at_the_limit(
    redis_server: RedisServer, tenant: str
) -> None:
    rate = 40.0
    # Four buckets, four connection pools: as four processes would hold them.
    buckets = [
        RecordingBucket(redis_server.url, tenant=tenant, api="control-plane", rate=rate) for _ in range(4)
    ]
    try:
        assert buckets[0].lease_size == 0 and buckets[0].window == (40, DEFAULT_WINDOW_SECONDS)
        elapsed = await _run_for(buckets, 2.0, tasks_each=8)
    finally:
        for bucket in buckets:
            await bucket.aclose()
    leases = _all_leases(buckets)
    total = spent(leases.values())
    assert misplaced_spends(leases) == []
    assert busiest_window(leases.values(), DEFAULT_WINDOW_SECONDS) <= 40
    assert total <= buckets[0].capacity + rate * elapsed
    assert total >= 0.7 * rate * 2.0
    # One round trip per grant at low rates (the caller sleeps the time the script names, no
    # polling), and one more per bucket on aclose to settle its last lease.
    assert sum(b.stats.round_trips for b in buckets) == total + len(buckets)
    assert all(b.stats.acquired > 0 for b in buckets)


@pytest.mark.anyio
async def test_without_the_window_a_full_bucket_overfills_the_first_second(
    redis_server: RedisServer, tenant: str
) -> None:
    """Why the guard exists: at rate = limit the bucket alone lets capacity + limit into one second."""
    buckets = [
        RecordingBucket(redis_server.url, tenant=tenant, api="control-plane", rate=10.0, window=WIDE)
        for _ in range(4)
    ]
    try:
        await _run_for(buckets, 3.0, tasks_each=4)
    finally:
        for bucket in buckets:
            await bucket.aclose()
    # Reservations are spaced exactly 1/rate apart in server time, after the 2 tokens the bucket
    # starts with (or has saved up during a stall): 12 in one 1.02 s window.
    assert busiest_window(_all_leases(buckets).values(), DEFAULT_WINDOW_SECONDS) >= 11


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    tests, url, tenant, api, start_at, seconds, tasks = sys.argv[1:8]
    sys.path.insert(0, tests)
    from test_redis_bucket import RecordingBucket

    async def main():
        async with RecordingBucket.for_api(url, tenant=tenant, api=api) as bucket:
            await asyncio.sleep(max(0.0, float(start_at) - time.time()))
            stop_at = float(start_at) + float(seconds)

            async def worker():
                while time.time() < stop_at:
                    await bucket.acquire()

            await asyncio.gather(*(worker() for _ in range(int(tasks))))
        print(json.dumps({
            "leases": bucket.records(),
            "round_trips": bucket.stats.round_trips,
            "acquired": bucket.stats.acquired,
            "window": bucket.window,
        }))

    asyncio.run(main())
    """
)


def _run_processes(
    url: str, tenant: str, api: str, processes: int, tasks: int, seconds: float
) -> list[dict[str, Any]]:
    start_at = time.time() + 2.0  # after every interpreter has started
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(TESTS), url, tenant, api, str(start_at), str(seconds), str(tasks)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


@pytest.mark.parametrize(
    ("api", "limit", "processes", "tasks", "seconds"),
    [("control-plane", CONTROL_PLANE_RATE, 4, 10, 3.0), ("profile", PROFILE_RATE, 2, 25, 2.0)],
)
def test_separate_processes_keep_every_window_at_the_documented_limit(
    redis_server: RedisServer, tenant: str, api: str, limit: float, processes: int, tasks: int, seconds: float
) -> None:
    results = _run_processes(redis_server.url, tenant, api, processes, tasks, seconds)
    leases = {m: LeaseRecord(**lease) for r in results for m, lease in r["leases"].items()}
    count, window_seconds = results[0]["window"]
    assert (count, window_seconds) == (int(limit), DEFAULT_WINDOW_SECONDS)  # rate = the documented limit
    assert len(leases) == sum(len(r["leases"]) for r in results)  # one budget: members never collide
    assert misplaced_spends(leases) == []
    # Every window of 1.02 s of the server's time, hence every second, holds at most the limit.
    assert busiest_window(leases.values(), window_seconds) <= limit
    total = spent(leases.values())
    assert total == sum(r["acquired"] for r in results)
    assert total >= 0.5 * limit * seconds
    assert all(r["acquired"] > 0 for r in results)
    if api == "profile":
        # Leasing: most acquires cost no round trip, and the bound above counted every lease.
        assert sum(r["round_trips"] for r in results) / total < 0.5
        assert any(len(lease.spends) > 1 for lease in leases.values())


# the window guard


def _budget(url: str, tenant: str, **overrides: Any) -> RecordingBucket:
    options: dict[str, Any] = {
        "api": "profile",
        "rate": SLOW,
        "capacity": 10,
        "lease_size": 0,
        "window": WIDE,
    }
    return RecordingBucket(url, tenant=tenant, **{**options, **overrides})


@pytest.mark.anyio
async def test_window_holds_back_a_full_bucket_until_the_oldest_grant_leaves(
    redis_server: RedisServer, tenant: str
) -> None:
    bucket = _budget(redis_server.url, tenant, window=(3, LONG))
    try:
        for _ in range(3):
            assert await _completes(bucket)
        assert not await _completes(bucket, within=0.5)  # 7 tokens left in the bucket, none in the window
        leases = sorted(bucket.leases.values(), key=lambda lease: lease.ready)
        # The fourth was reserved for the moment the first grant leaves the window: its ready time,
        # moved later by the round trip and the lateness its spend reported.
        assert 0 <= leases[3].ready - (leases[0].ready + LONG) < bucket.timeout + 0.25
        assert not leases[3].spends
    finally:
        await bucket.aclose()


@pytest.mark.anyio
async def test_unspent_lease_tokens_count_in_the_window_until_settled(
    redis_server: RedisServer, tenant: str
) -> None:
    leasing = _budget(redis_server.url, tenant, lease_size=4, window=(5, LONG))
    other = _budget(redis_server.url, tenant, window=(5, LONG))
    try:
        await leasing.acquire()  # a lease of 1 + 4: one token spent, four held
        # The held four fill the window. The probe's reservation, handed back unspent, leaves it.
        assert await _held_back(_budget(redis_server.url, tenant, window=(5, LONG)))
        await leasing.acquire()
        await leasing.acquire()
        await leasing.aclose()  # settles: two spent (now in the window), two handed back
        assert leasing.stats.tokens_returned == 2
        for _ in range(2):
            assert await _completes(other)  # 5 - 1 - 2 = 2 left in the window
        assert not await _completes(other, within=0.5)
    finally:
        await leasing.aclose()
        await other.aclose()
    leases = _all_leases([leasing, other])
    assert misplaced_spends(leases) == []
    assert busiest_window(leases.values(), LONG) <= 5


async def _crash_holding_a_lease(url: str, tenant: str, window: tuple[int, float]) -> None:
    """A process leases 1 + 4 tokens, spends one and dies; returns once the lease has expired."""
    client = redis_asyncio.Redis.from_url(url)
    crashed = RedisTokenBucket(
        client,
        tenant=tenant,
        api="profile",
        rate=SLOW,
        capacity=10,
        lease_size=4,
        window=window,
        lease_validity=0.3,
        timeout=0.1,
    )
    await crashed.acquire()
    await client.aclose()  # never settles: the 4 it held may have been spent before the expiry
    await anyio.sleep(0.6)


@pytest.mark.anyio
async def test_lease_never_settled_counts_its_extras_as_spent_in_the_window(
    redis_server: RedisServer, tenant: str
) -> None:
    other = _budget(redis_server.url, tenant, window=(6, LONG))
    try:
        await _crash_holding_a_lease(redis_server.url, tenant, window=(6, LONG))
        assert await _completes(other)  # 6 - 1 - 4 = 1
        assert not await _completes(other, within=0.5)
    finally:
        await other.aclose()


@pytest.mark.anyio
async def test_window_full_of_leases_says_when_to_ask_again(redis_server: RedisServer, tenant: str) -> None:
    leasing = _budget(redis_server.url, tenant, lease_size=2, window=(3, 0.2), lease_validity=2.0)
    other = _budget(redis_server.url, tenant, window=(3, 0.2))
    try:
        await leasing.acquire()  # 1 spent, 2 held for up to 2 s
        await anyio.sleep(0.5)  # the spent one has left the window; the 2 held still count
        with anyio.fail_after(10):
            await other.acquire(2)  # 2 + 2 > 3: nothing to wait for until the held lease ends
        # One answer "ask again when that lease expires", one grant: no polling in between.
        assert other.stats.round_trips == 2
        held = next(iter(leasing.leases.values()))
        granted = next(iter(other.leases.values()))
        # Unsettled, the lease's extras count as spent at its expiry: the grant comes after that
        # point has left the window.
        assert granted.ready >= held.expiry + 0.2 - 1e-4
    finally:
        await leasing.aclose()
        await other.aclose()


@pytest.mark.anyio
async def test_a_late_taker_of_a_cancelled_reservation_does_not_spend_its_counted_token(
    redis_server: RedisServer, tenant: str
) -> None:
    bucket = _budget(redis_server.url, tenant, rate=4.0, capacity=1, window=(10, LONG))
    try:
        await bucket.acquire()  # empties the bucket
        with anyio.move_on_after(0.05):
            await bucket.acquire()  # reserves the next token (due in 0.25 s), then is cancelled
        await anyio.sleep(0.5)  # nobody took its place before the reservation was due
        await bucket.acquire()
        # The reserved token was counted in the window at its ready time; spent now it would land
        # outside that, so a new grant was asked for.
        assert bucket.stats.round_trips == 3
    finally:
        await bucket.aclose()
    leases = sorted(bucket.leases.values(), key=lambda lease: lease.ready)
    assert [len(lease.spends) for lease in leases] == [1, 0, 1]


@pytest.mark.anyio
async def test_a_late_spend_moves_its_point_later_in_the_window(
    redis_server: RedisServer, tenant: str
) -> None:
    bucket = _budget(redis_server.url, tenant, rate=4.0, capacity=1, window=(10, LONG))
    try:
        await bucket.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(bucket.acquire)  # reserved 0.25 s ahead
            await anyio.sleep(0.05)
            time.sleep(0.5)
        await bucket.acquire()  # its round trip reports that lateness
        members = list(bucket.leases)
        late = bucket.leases[members[1]]
        point = members[1].split("/")[0] + ":1"
        score = await bucket._redis.zscore(bucket.keys[2], point)
        # The point counts from (an upper bound of) the moment the token was actually spent.
        assert score >= late.spends[0] - CLOCK_TOLERANCE
        assert score - late.ready > 0.15
    finally:
        await bucket.aclose()


# for_api and keys


@pytest.mark.parametrize(
    ("api", "canonical", "rate"),
    [
        ("control-plane", "control-plane", CONTROL_PLANE_RATE),
        ("control", "control-plane", CONTROL_PLANE_RATE),
        ("profile", "profile", PROFILE_RATE),
    ],
)
def test_for_api_uses_the_documented_limit(api: Any, canonical: str, rate: float) -> None:
    bucket = RedisTokenBucket.for_api("redis://127.0.0.1:1/0", tenant="acme", api=api)
    assert (bucket.api, bucket.rate) == (canonical, rate)
    assert bucket.window == (int(rate), DEFAULT_WINDOW_SECONDS)
    assert bucket.keys[0] == f"amperity-async:{{acme:{canonical}}}:bucket"


def test_for_api_refuses_an_unknown_api_or_a_rate_of_its_own() -> None:
    with pytest.raises(ConfigurationError, match="'control', 'control-plane', 'profile', got 'realtime'"):
        RedisTokenBucket.for_api("redis://127.0.0.1:1/0", tenant="acme", api="realtime")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="documented rate"):
        RedisTokenBucket.for_api("redis://127.0.0.1:1/0", tenant="acme", api="profile", rate=5.0)  # type: ignore[call-arg]


def test_sandbox_keys_name_the_parent_only_for_the_profile_api() -> None:
    def keys(api: Any, **kwargs: Any) -> str:
        return RedisTokenBucket.for_api("redis://127.0.0.1:1/0", api=api, **kwargs).keys[0]

    sandbox = {"tenant": "acme-sb-123", "parent_tenant": "acme"}
    assert keys("profile", **sandbox) == keys("profile", tenant="acme")
    # The control-plane limit is documented per tenant, not across sandboxes.
    assert keys("control-plane", **sandbox) == "amperity-async:{acme-sb-123:control-plane}:bucket"
    bucket = RedisTokenBucket.for_api("redis://127.0.0.1:1/0", api="profile", **sandbox)
    assert bucket.budget_owner == "acme" and "budget of 'acme'" in repr(bucket)


@pytest.mark.anyio
async def test_sandbox_and_parent_share_one_profile_budget(redis_server: RedisServer, tenant: str) -> None:
    sandbox, options = f"{tenant}-sb-123", {"window": (3, LONG), "lease_size": 0}
    sandbox_profile = RedisTokenBucket.for_api(
        redis_server.url, tenant=sandbox, parent_tenant=tenant, api="profile", **options
    )
    parent_profile = RedisTokenBucket.for_api(redis_server.url, tenant=tenant, api="profile", **options)
    sandbox_control = RedisTokenBucket.for_api(
        redis_server.url, tenant=sandbox, parent_tenant=tenant, api="control", window=(1, LONG)
    )
    parent_control = RedisTokenBucket.for_api(
        redis_server.url, tenant=tenant, api="control", window=(1, LONG)
    )
    try:
        for _ in range(2):
            assert await _completes(sandbox_profile)
        assert await _completes(parent_profile)
        assert not await _completes(parent_profile, within=0.5)  # the family's 3 are used up
        assert not await _completes(sandbox_profile, within=0.5)
        assert await _completes(sandbox_control)  # control-plane budgets stay per tenant
        assert await _completes(parent_control)
    finally:
        for bucket in (sandbox_profile, parent_profile, sandbox_control, parent_control):
            await bucket.aclose()


@pytest.mark.anyio
async def test_two_tenants_never_share(redis_server: RedisServer, tenant: str) -> None:
    other = tenant + "-other"
    acme = _budget(redis_server.url, tenant, capacity=3)
    globex = _budget(redis_server.url, other, capacity=3)
    acme_cp = _budget(redis_server.url, tenant, api="control-plane", capacity=3)
    try:
        for _ in range(3):
            assert await _completes(acme)
        assert not await _completes(acme, within=0.5)
        for bucket in (globex, acme_cp):  # another tenant, and another API of the same tenant
            for _ in range(3):
                assert await _completes(bucket)
        keys = {key.decode() for key in await acme._redis.keys("amperity-async:*")}
        for owner in (f"{tenant}:profile", f"{other}:profile", f"{tenant}:control-plane"):
            assert {f"amperity-async:{{{owner}}}:{kind}" for kind in ("bucket", "leases", "window")} <= keys
    finally:
        for bucket in (acme, globex, acme_cp):
            await bucket.aclose()


# leases and the token bucket


@pytest.mark.anyio
async def test_returned_lease_tokens_keep_the_total_exact(redis_server: RedisServer, tenant: str) -> None:
    first, second, third = (
        _budget(redis_server.url, tenant, lease_size=4),
        _budget(redis_server.url, tenant, lease_size=4),
        _budget(redis_server.url, tenant),
    )
    try:
        await first.acquire()  # leases 1 + 4
        for _ in range(5):
            assert await _completes(second)  # leases 1 + 4, spends all
        assert second.stats.round_trips == 1 and second.stats.acquired == 5
        await first.aclose()  # gives back the 4 it did not spend
        assert first.stats.tokens_returned == 4
        for _ in range(4):
            assert await _completes(third)
        assert not await _completes(third, within=0.5)  # 1 + 5 + 4 = capacity: nothing more
    finally:
        for b in (first, second, third):
            await b.aclose()


@pytest.mark.anyio
async def test_stale_lease_is_returned_not_spent(redis_server: RedisServer, tenant: str) -> None:
    clock = ManualClock()
    leased = _budget(redis_server.url, tenant, lease_size=4, lease_validity=60.0, clock=clock)
    other = _budget(redis_server.url, tenant)
    try:
        await leased.acquire()
        await leased.acquire()
        assert leased.stats.round_trips == 1  # the second came from the lease
        await clock.advance(100.0)  # past the lease's validity on this process's clock
        await leased.acquire()
        assert leased.stats.round_trips == 2
        assert leased.stats.tokens_returned == 3
        # 10 - 5 (first lease) + 3 (returned) - 5 (second lease) = 3 left for everyone else.
        for _ in range(3):
            assert await _completes(other)
        assert not await _completes(other, within=0.5)
    finally:
        await leased.aclose()
        await other.aclose()


@pytest.mark.anyio
async def test_lease_never_settled_expires_as_spent(redis_server: RedisServer, tenant: str) -> None:
    other = _budget(redis_server.url, tenant)
    try:
        # The crashed process's 4 unspent tokens are never handed out twice.
        await _crash_holding_a_lease(redis_server.url, tenant, window=WIDE)
        for _ in range(5):
            assert await _completes(other)
        assert not await _completes(other, within=0.5)
        # Only the reservation of the last attempt is left; the crashed process's lease is gone.
        assert await other._redis.zcard(other.keys[1]) == 1
    finally:
        await other.aclose()


@pytest.mark.anyio
async def test_leasing_cuts_round_trips_in_process(redis_server: RedisServer, tenant: str) -> None:
    rate = 2000.0
    buckets = [RecordingBucket(redis_server.url, tenant=tenant, api="profile", rate=rate) for _ in range(4)]
    try:
        assert buckets[0].lease_size == 20 and buckets[0].capacity == 200
        elapsed = await _run_for(buckets, 1.5, tasks_each=25)
    finally:
        for bucket in buckets:
            await bucket.aclose()
    leases = _all_leases(buckets)
    total = spent(leases.values())
    assert total == sum(b.stats.acquired for b in buckets)
    assert total <= buckets[0].capacity + rate * elapsed
    assert misplaced_spends(leases) == []
    assert busiest_window(leases.values(), DEFAULT_WINDOW_SECONDS) <= rate
    assert total >= 0.5 * rate * 1.5
    # Without leasing this would be 1.0.
    assert sum(b.stats.round_trips for b in buckets) / total < 0.5


# 429s


@pytest.mark.anyio
async def test_a_429_slows_every_worker_once_per_burst(redis_server: RedisServer, tenant: str) -> None:
    def bucket() -> RedisTokenBucket:
        return RedisTokenBucket(
            redis_server.url, tenant=tenant, api="control-plane", rate=90.0, recovery_seconds=600.0
        )

    first, second = bucket(), bucket()
    try:
        assert first.lease_size == 0  # every acquire a round trip, so each sees the shared rate
        await second.acquire()
        assert second.current_rate == 90.0
        first.on_rate_limited()
        await first.acquire()
        assert first.current_rate == pytest.approx(45.0, rel=0.01)
        await second.acquire()
        assert second.current_rate == pytest.approx(45.0, rel=0.01)
        # 429s from the same burst (another worker's requests sent before the decrease) count once.
        second.on_rate_limited()
        await second.acquire()
        assert second.current_rate == pytest.approx(45.0, rel=0.01)
        factor = float(await first._redis.hget(first.keys[0], "factor"))
        assert factor == pytest.approx(0.5)
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.anyio
async def test_shared_rate_recovers_on_server_time(redis_server: RedisServer, tenant: str) -> None:
    first = RedisTokenBucket(
        redis_server.url, tenant=tenant, api="control-plane", rate=100.0, recovery_seconds=0.5
    )
    second = RedisTokenBucket(
        redis_server.url, tenant=tenant, api="control-plane", rate=100.0, recovery_seconds=0.5
    )
    try:
        first.on_rate_limited()
        await first.acquire()
        assert first.current_rate < 60.0
        await anyio.sleep(1.0)
        await second.acquire()
        assert second.current_rate == 100.0
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.anyio
async def test_retry_after_pauses_every_worker(redis_server: RedisServer, tenant: str) -> None:
    first = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=50.0)
    second = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=50.0)
    try:
        assert await _completes(second)
        first.on_rate_limited(retry_after=120.0)
        assert not await _completes(first, within=0.5)
        assert not await _completes(second, within=0.5)
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.anyio
async def test_a_429_drops_the_local_lease(redis_server: RedisServer, tenant: str) -> None:
    bucket = RedisTokenBucket(redis_server.url, tenant=tenant, api="profile", rate=2000.0)
    try:
        await bucket.acquire()
        assert bucket.stats.round_trips == 1
        bucket.on_rate_limited()
        await bucket.acquire()
        # The lease was handed back at once so the lowered rate applies to the next grant.
        assert bucket.stats.round_trips == 2
        assert bucket.stats.tokens_returned == bucket.lease_size
        assert bucket.current_rate == pytest.approx(1000.0, rel=0.01)
    finally:
        await bucket.aclose()


# waiting


@pytest.mark.anyio
async def test_waiters_are_served_in_order(redis_server: RedisServer, tenant: str) -> None:
    bucket = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=50.0)
    order: list[int] = []

    async def take(index: int) -> None:
        await bucket.acquire()
        order.append(index)

    try:
        async with anyio.create_task_group() as tg:
            for index in range(8):
                tg.start_soon(take, index)
        assert order == list(range(8))
        assert bucket.stats.round_trips == 8
    finally:
        await bucket.aclose()


@pytest.mark.anyio
async def test_cancelled_waiter_leaves_its_reservation_to_the_next(
    redis_server: RedisServer, tenant: str
) -> None:
    bucket = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=4.0, capacity=1)
    try:
        await bucket.acquire()  # empties the bucket
        with anyio.move_on_after(0.05):
            await bucket.acquire()  # reserves the next token (due in 0.25 s), then is cancelled
        assert bucket.stats.round_trips == 2 and bucket.stats.acquired == 1
        await bucket.acquire()  # takes over that reservation: no new round trip, no token lost
        assert bucket.stats.round_trips == 2 and bucket.stats.acquired == 2
    finally:
        await bucket.aclose()


# Redis unavailable


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_hung_redis_raises_within_the_timeout_without_the_password(
    silent_port: int, tenant: str
) -> None:
    url = f"redis://worker:s3cret@127.0.0.1:{silent_port}/0"
    bucket = RedisTokenBucket(url, tenant=tenant, api="profile", rate=10.0, timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await bucket.acquire()
        assert time.monotonic() - started < 2.0  # bounded by the timeout, not hung
    finally:
        await bucket.aclose()
    message = str(caught.value)
    assert f"redis://***@127.0.0.1:{silent_port}/0" in message
    assert "s3cret" not in message and "s3cret" not in repr(bucket)


@pytest.mark.anyio
async def test_redis_killed_mid_run_raises(own_redis_server: RedisServer, tenant: str) -> None:
    async with RedisTokenBucket(
        own_redis_server.url, tenant=tenant, api="control-plane", rate=50.0
    ) as bucket:
        for _ in range(3):
            await bucket.acquire()
        own_redis_server.stop()
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailableError, match=f"127.0.0.1:{own_redis_server.port}"):
            await bucket.acquire()
        assert time.monotonic() - started < 2.0
        own_redis_server.start()
        await bucket.acquire()  # the next call simply works again
        assert not bucket.using_fallback


@pytest.mark.anyio
async def test_redis_killed_mid_run_falls_back_locally_and_returns(
    own_redis_server: RedisServer, tenant: str
) -> None:
    bucket = RedisTokenBucket(
        own_redis_server.url,
        tenant=tenant,
        api="control-plane",
        rate=100.0,
        lease_size=0,  # every acquire a round trip: the first one after the stop finds Redis gone
        on_unavailable="local",
        expected_workers=4,
        probe_interval=0.2,
    )
    async with bucket:
        for _ in range(3):
            await bucket.acquire()
        assert bucket.stats.acquired == 3
        own_redis_server.stop()
        with pytest.warns(RateLimiterFallbackWarning, match="25/s"):
            await bucket.acquire()
        assert bucket.using_fallback
        for _ in range(3):
            await bucket.acquire()
        assert bucket.stats.acquired_locally == 4
        own_redis_server.start()
        round_trips = bucket.stats.round_trips
        with anyio.fail_after(5):
            while bucket.using_fallback:
                await bucket.acquire()
        assert bucket.stats.round_trips > round_trips
        assert bucket.stats.acquired == 4  # the probe's grant came from Redis again
        # Probing happened at most once per probe_interval, not on every acquire.
        assert bucket.stats.unavailable <= 2 + bucket.stats.acquired_locally // 20


# configuration


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tenant": "acme:prod"}, "tenant"),
        ({"tenant": ""}, "tenant"),
        ({"api": "pro{file}"}, "api"),
        ({"rate": 0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"capacity": 0.5}, "capacity"),
        ({"on_unavailable": "ignore"}, "on_unavailable"),
        ({"expected_workers": 0}, "expected_workers"),
        ({"timeout": -1}, "timeout"),
        ({"lease_size": -1}, "lease_size"),
        ({"lease_validity": 0.3}, "lease_validity"),
        ({"parent_tenant": "acme:prod"}, "parent_tenant"),
        ({"window": (0, 1.0)}, "window count"),
        ({"window": (10.5, 1.0)}, "window count"),
        ({"window": (10, 0)}, "window seconds"),
        ({"window": 10}, "window must be a pair"),
    ],
)
def test_bad_configuration_is_named(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {"tenant": "acme", "api": "profile", "rate": 10.0}
    with pytest.raises(ConfigurationError, match=match):
        RedisTokenBucket("redis://127.0.0.1:1/0", **{**base, **kwargs})


def test_bad_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenBucket("http://user:pw@example.invalid/", tenant="acme", api="profile", rate=10.0)
    assert "http://***@example.invalid/" in str(caught.value) and "pw" not in str(caught.value)


@pytest.mark.anyio
async def test_cost_above_capacity_or_window_is_refused(redis_server: RedisServer, tenant: str) -> None:
    async with RedisTokenBucket(redis_server.url, tenant=tenant, api="profile", rate=10.0) as bucket:
        with pytest.raises(ConfigurationError, match="capacity 2"):
            await bucket.acquire(3)
        with pytest.raises(ConfigurationError, match="cost"):
            await bucket.acquire(0)
    async with RedisTokenBucket(
        redis_server.url, tenant=tenant, api="profile", rate=10.0, capacity=20, window=(5, 1.0)
    ) as bucket:
        with pytest.raises(ConfigurationError, match="window's count 5"):
            await bucket.acquire(6)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_is_refused_clearly(tenant: str) -> None:
    bucket = RedisTokenBucket("redis://127.0.0.1:1/0", tenant=tenant, api="profile", rate=10.0)
    with pytest.raises(ConfigurationError, match="asyncio"):
        await bucket.acquire()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/2", "redis://***@host:6379/2"),
        ("rediss://user:pw@host/0", "rediss://***@host/0"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_public_name_imports_lazily() -> None:
    code = (
        "import sys, amperity_async; assert 'redis' not in sys.modules; "
        "from amperity_async import RedisTokenBucket; print(RedisTokenBucket.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RedisTokenBucket"


def test_public_name_without_the_extra_names_it() -> None:
    code = "import sys; sys.modules['redis'] = None; from amperity_async import RedisTokenBucket"
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode != 0
    assert "amperity-async[redis]" in done.stderr


# what a type checker sees


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    examples = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    (example,) = [code for code in examples if "RedisTokenBucket" in code]
    return example


def test_readme_example_type_checks_with_mypy(tmp_path: Path) -> None:
    from mypy import api as mypy_api

    script = tmp_path / "example.py"
    script.write_text(
        _readme_example()
        + "\nfrom typing import assert_type\n"
        + "from amperity_async.custom.redis_bucket import RedisTokenBucket as Real\n"
        + "assert_type(RedisTokenBucket, type[Real])\n",
        encoding="utf-8",
    )
    stdout, stderr, status = mypy_api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(script),
        ]
    )
    assert status == 0, stdout + stderr


@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright is not installed")
def test_readme_example_type_checks_with_pyright(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_readme_example() + "\nreveal_type(RedisTokenBucket)\n", encoding="utf-8")
    # The package is installed in editable mode, which pyright does not follow: name its root.
    (tmp_path / "pyrightconfig.json").write_text(
        json.dumps({"extraPaths": [str(REPO)], "typeCheckingMode": "strict"})
    )
    done = subprocess.run(
        ["pyright", "--pythonpath", sys.executable, "--outputjson", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = json.loads(done.stdout)
    problems = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert problems == [], problems
    revealed = [d["message"] for d in report["generalDiagnostics"] if d["severity"] == "information"]
    assert revealed == ['Type of "RedisTokenBucket" is "type[RedisTokenBucket]"']
