"""The token bucket and the manual clock, on virtual time: exact grant times, no waiting."""

from __future__ import annotations

import math
from typing import Any

import anyio
import httpx
import pytest

from amperity_async import AmperityClient, StaticToken
from amperity_async.api.indexes import list_indexes
from amperity_async.api.segments import list_segment
from amperity_async.custom.clock import Clock, ManualClock, SystemClock
from amperity_async.custom.errors import ConfigurationError
from amperity_async.custom.operations import REGISTRY
from amperity_async.custom.ratelimit import (
    UNLIMITED,
    PerApiLimits,
    PerOperationLimits,
    RateLimiter,
    TokenBucket,
)

pytestmark = pytest.mark.anyio


class LateClock:
    """A clock whose sleeps end ``lateness`` seconds after the deadline, like a busy event loop."""

    def __init__(self, manual: ManualClock, lateness: float) -> None:
        self.manual, self.lateness = manual, lateness

    def now(self) -> float:
        return self.manual.now()

    async def sleep_until(self, deadline: float) -> None:
        await self.manual.sleep_until(deadline + self.lateness)


async def acquire_all(
    bucket: TokenBucket, clock: ManualClock, tasks: int, *, run_for: float
) -> list[tuple[int, float]]:
    """Start ``tasks`` tasks that each acquire once; return (task, grant time) in grant order."""
    called: list[int] = []
    granted: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        called.append(i)
        await bucket.acquire()
        granted.append((i, clock.now()))

    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(one, i)
        await clock.advance(run_for)
    assert [i for i, _ in granted] == called, "grants must follow the order of the acquire calls"
    return granted


# the manual clock


async def test_manual_clock_wakes_sleepers_in_deadline_order_at_their_deadlines() -> None:
    clock = ManualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 103.0)
        tg.start_soon(sleeper, "early", 101.5)
        tg.start_soon(sleeper, "past", 99.0)
        await clock.advance(1.0)
        assert woke == [("past", 100.0)]
        assert clock.now() == 101.0
        await clock.advance(5.0)
    assert woke == [("past", 100.0), ("early", 101.5), ("late", 103.0)]
    assert clock.now() == 106.0
    assert clock.pending_sleepers == 0


async def test_manual_clock_sleep_is_cancellable_and_cancelled_sleepers_are_skipped() -> None:
    clock = ManualClock()
    woke: list[float] = []

    async def sleeper(deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(sleeper, 5.0)
            async with anyio.create_task_group() as inner:
                inner.start_soon(sleeper, 1.0)
                await clock.advance(0)
                assert clock.pending_sleepers == 2
                inner.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert clock.pending_sleepers == 1
        await clock.advance(10)
    assert woke == [5.0], "only the sleeper that was not cancelled wakes"


async def test_manual_clock_refuses_to_go_back() -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        await ManualClock().advance(-1)


async def test_system_clock_is_monotonic_and_satisfies_the_protocol() -> None:
    clock = SystemClock()
    assert isinstance(clock, Clock) and isinstance(ManualClock(), Clock)
    first = clock.now()
    await clock.sleep_until(first - 1)  # a deadline in the past returns at once
    assert clock.now() >= first


# granting


async def test_fifty_tasks_on_a_ten_per_second_bucket_are_granted_exactly_0_1_s_apart_in_fifo_order() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock)
    granted = await acquire_all(bucket, clock, 50, run_for=10.0)
    assert len(granted) == 50
    times = [t for _, t in granted]
    assert times == pytest.approx([k * 0.1 for k in range(50)], abs=1e-9)
    # The head sleeps exactly until its token is due: nobody is left asleep once all are served.
    assert clock.pending_sleepers == 0


async def test_capacity_allows_a_burst_then_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, capacity=5, clock=clock)
    times = [t for _, t in await acquire_all(bucket, clock, 8, run_for=5.0)]
    assert times == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2, 0.3], abs=1e-9)


async def test_costs_take_proportionally_longer() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, capacity=3, clock=clock)
    grants: list[float] = []

    async def worker() -> None:
        for cost in (3, 2, 1):
            await bucket.acquire(cost)
            grants.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await clock.advance(5)
    assert grants == pytest.approx([0.0, 0.2, 0.3], abs=1e-9)


async def test_cost_larger_than_capacity_is_refused_with_a_clear_error() -> None:
    bucket = TokenBucket(10, clock=ManualClock())
    with pytest.raises(ValueError, match="capacity"):
        await bucket.acquire(2)
    with pytest.raises(ValueError, match="positive"):
        await bucket.acquire(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"rate": 10, "capacity": 0.5}, "capacity"),
        ({"rate": 10, "decrease_factor": 1.0}, "decrease_factor"),
        ({"rate": 10, "min_rate": 20}, "min_rate"),
        ({"rate": 10, "recovery_seconds": 0}, "recovery_seconds"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(**kwargs)


async def test_a_cancelled_waiter_takes_no_tokens_and_does_not_hold_up_the_queue() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock)
    granted: list[tuple[str, float]] = []

    async def one(name: str) -> None:
        await bucket.acquire()
        granted.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        await bucket.acquire()  # empty the bucket at t=0
        tg.start_soon(one, "head")
        await clock.advance(0)
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(one, "second")
            await clock.advance(0)
            tg.start_soon(one, "third")
            await clock.advance(0)
            doomed.cancel_scope.cancel()
        await clock.advance(0.05)
        # And one cancelled at the tail of the queue.
        async with anyio.create_task_group() as doomed_last:
            doomed_last.start_soon(one, "last")
            await clock.advance(0)
            doomed_last.cancel_scope.cancel()
        await clock.advance(1.0)
    assert [name for name, _ in granted] == ["head", "third"]
    assert [t for _, t in granted] == pytest.approx([0.1, 0.2])


async def test_cancelling_the_sleeping_head_passes_its_slot_to_the_next_waiter() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock)
    granted: list[tuple[str, float]] = []

    async def one(name: str) -> None:
        await bucket.acquire()
        granted.append((name, clock.now()))

    await bucket.acquire()  # empty at t=0
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(one, "head")
            await clock.advance(0)
            tg.start_soon(one, "next")
            await clock.advance(0.05)
            doomed.cancel_scope.cancel()
        await clock.advance(1.0)
    assert [name for name, _ in granted] == ["next"]
    assert [t for _, t in granted] == pytest.approx([0.1])
    assert clock.pending_sleepers == 0


async def late_grants(capacity: float, lateness: float, grants: int) -> list[float]:
    manual = ManualClock()
    bucket = TokenBucket(10, capacity=capacity, clock=LateClock(manual, lateness=lateness))
    granted: list[float] = []

    async def worker() -> None:
        await bucket.acquire(capacity)  # start from an empty bucket
        for _ in range(grants):
            await bucket.acquire()
            granted.append(manual.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await manual.advance(10)
    return granted


async def test_with_capacity_1_grants_are_never_closer_than_one_interval_however_late_the_loop() -> None:
    # Each sleep ends 30 ms late; the late time is not made up for by a shorter gap later, so no
    # one-second window can hold more than rate grants.
    assert await late_grants(1, 0.03, 5) == pytest.approx([0.13, 0.26, 0.39, 0.52, 0.65], abs=1e-9)


async def test_capacity_above_1_absorbs_late_wake_ups_and_keeps_the_rate() -> None:
    # The spare token capacity holds what flowed in while the loop was late: the schedule holds.
    assert await late_grants(2, 0.03, 5) == pytest.approx([0.13, 0.23, 0.33, 0.43, 0.53], abs=1e-9)


def test_default_capacity_is_20_ms_of_tokens_and_at_least_one() -> None:
    assert TokenBucket(10).capacity == 1
    assert TokenBucket(100).capacity == 2
    assert TokenBucket(2000).capacity == 40


async def test_no_window_holds_more_than_capacity_plus_rate_times_its_length() -> None:
    manual = ManualClock()
    rate, capacity = 10.0, 3.0
    bucket = TokenBucket(rate, capacity=capacity, clock=LateClock(manual, lateness=0.017))
    granted: list[float] = []

    async def worker(pause_every: int) -> None:
        for i in range(40):
            await bucket.acquire()
            granted.append(manual.now())
            if i % pause_every == 0:
                await manual.sleep_until(manual.now() + 0.45)  # idle spells refill the bucket

    async with anyio.create_task_group() as tg:
        for pause_every in (3, 5, 7):
            tg.start_soon(worker, pause_every)
        await manual.advance(60)
    granted.sort()
    assert len(granted) == 120
    for window in (0.1, 0.35, 1.0, 2.5):
        most = max(sum(1 for t in granted if start <= t < start + window) for start in granted)
        assert most <= capacity + rate * window + 1e-9


async def test_a_bucket_shared_by_many_tasks_and_a_second_user_keeps_one_budget() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock)
    granted: list[float] = []

    async def user(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()
            granted.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(user, 10)
        tg.start_soon(user, 10)
        await clock.advance(10)
    assert sorted(granted) == pytest.approx([k * 0.1 for k in range(20)], abs=1e-9)


# learning from 429s


async def test_a_429_halves_the_rate_and_it_recovers_linearly_over_recovery_seconds() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock, recovery_seconds=10.0)
    assert bucket.current_rate == 10
    bucket.on_rate_limited()
    assert bucket.current_rate == 5
    await clock.advance(5)
    assert bucket.current_rate == pytest.approx(7.5)
    await clock.advance(5)
    assert bucket.current_rate == 10
    assert bucket.rate == 10


async def test_grants_follow_the_learned_rate_exactly() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock, recovery_seconds=10.0)
    bucket.on_rate_limited()  # at t=0: 5/s, climbing linearly to 10/s at t=10
    granted: list[float] = []

    async def worker() -> None:
        for _ in range(110):
            await bucket.acquire()
            granted.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await clock.advance(20)
    # The full token at t=0 goes at once; grant k then comes when 5t + t**2/4 = k tokens have
    # flowed in, i.e. t = 2*(sqrt(25 + k) - 5), until the rate is back at 10/s.
    ramp = [2 * (math.sqrt(25 + k) - 5) for k in range(76)]
    assert granted[:76] == pytest.approx(ramp, abs=1e-9)
    assert granted[75] == pytest.approx(10.0)
    assert granted[76:] == pytest.approx([10.0 + 0.1 * k for k in range(1, 35)], abs=1e-9)


async def test_429s_in_one_burst_count_once_and_the_rate_never_drops_below_min_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock, min_rate=2, decrease_interval=1.0)
    for _ in range(20):  # twenty in-flight requests answered 429 together
        bucket.on_rate_limited()
    assert bucket.current_rate == 5
    await clock.advance(1.0)
    bucket.on_rate_limited()
    assert bucket.current_rate == pytest.approx(5.5 / 2)  # 5/s had climbed to 5.5/s
    await clock.advance(1.0)
    bucket.on_rate_limited()
    assert bucket.current_rate == 2, "min_rate is the floor"


async def test_non_adaptive_bucket_keeps_its_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock, adaptive=False)
    bucket.on_rate_limited()
    assert bucket.current_rate == 10


async def test_retry_after_pauses_every_grant_until_then() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, capacity=5, clock=clock, adaptive=False)
    bucket.on_rate_limited(retry_after=2.0)
    granted = await acquire_all(bucket, clock, 3, run_for=5)
    # No burst of saved tokens after the pause: one token at 2.0, then the rate.
    assert [t for _, t in granted] == pytest.approx([2.0, 2.1, 2.2], abs=1e-9)


async def test_retry_after_also_delays_the_waiter_already_asleep() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, clock=clock, adaptive=False)
    granted: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        granted.append(clock.now())

    await bucket.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await clock.advance(0.05)  # the waiter sleeps until 0.1
        bucket.on_rate_limited(retry_after=1.0)  # the server says: nothing before 1.05
        await clock.advance(5)
    assert granted == pytest.approx([1.1], abs=1e-9)


# choosing limiters


def test_per_api_limits_give_each_api_its_bucket_and_unknown_requests_the_control_plane_one() -> None:
    control, profile = TokenBucket(10), TokenBucket(2000)
    limiter_for = PerApiLimits({"control-plane": control, "profile": profile})
    list_segment, list_profiles = REGISTRY.get("list_segment"), REGISTRY.get("list_profiles")
    assert list_segment is not None and list_profiles is not None
    assert limiter_for(list_segment) is control
    assert limiter_for(list_profiles) is profile
    assert limiter_for(None) is control
    assert isinstance(control, RateLimiter)
    with pytest.raises(ValueError, match="default API"):
        PerApiLimits({"profile": profile})


def test_per_operation_limits_make_one_bucket_per_operation_on_first_use() -> None:
    made: list[str] = []

    def make(api: str) -> TokenBucket:
        made.append(api)
        return TokenBucket(10 if api == "control-plane" else 2000)

    limiter_for = PerOperationLimits(make)
    list_segment, list_campaign = REGISTRY.get("list_segment"), REGISTRY.get("list_campaign")
    list_profiles = REGISTRY.get("list_profiles")
    assert list_segment is not None and list_campaign is not None and list_profiles is not None
    first = limiter_for(list_segment)
    assert limiter_for(list_segment) is first
    assert limiter_for(list_campaign) is not first
    profiles = limiter_for(list_profiles)
    assert isinstance(profiles, TokenBucket) and profiles.rate == 2000
    assert limiter_for(None) is limiter_for(None)
    assert made == ["control-plane", "control-plane", "profile", "control-plane"]


# the window guard


def most_in_any_window(times: list[float], seconds: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - seconds + 1e-9:  # a grant exactly `seconds` earlier is outside
            start += 1
        best = max(best, end - start + 1)
    return best


async def grants_within(bucket: TokenBucket, clock: ManualClock, tasks: int, seconds: float) -> list[float]:
    """Grant times of ``tasks`` waiting tasks over ``seconds`` of clock time (the rest are cancelled)."""
    times: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        times.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(one)
        await clock.advance(seconds)
        tg.cancel_scope.cancel()
    return times


async def test_window_guard_makes_up_for_late_wakeups_without_overfilling_any_window() -> None:
    plain_clock, guarded_clock = ManualClock(), ManualClock()
    plain = TokenBucket(10, clock=LateClock(plain_clock, 0.004))  # every sleep ends 4 ms late
    guarded = TokenBucket(10, capacity=2, clock=LateClock(guarded_clock, 0.004), window=(10, 1.01))
    plain_times = await grants_within(plain, plain_clock, 150, 10.0)
    guarded_times = await grants_within(guarded, guarded_clock, 150, 10.0)
    # capacity 1 loses the 4 ms of every late wake-up; the guarded bucket catches up
    assert len(plain_times) <= 97
    assert len(guarded_times) >= 99
    # and no 1.01 s window (so no strict 1 s server window) ever holds more than 10
    assert most_in_any_window(guarded_times, 1.01) == 10


async def test_window_guard_holds_after_idle_and_refuses_a_cost_above_its_count() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, capacity=5, clock=clock, window=(10, 1.0))
    times = await grants_within(bucket, clock, 30, 3.0)
    assert times[:5] == [0.0] * 5  # the burst the capacity allows
    assert most_in_any_window(times, 1.0) == 10
    with pytest.raises(ValueError, match="window"):
        await TokenBucket(20, capacity=20, clock=clock, window=(10, 1.0)).acquire(11)
    with pytest.raises(ValueError, match="window"):
        TokenBucket(10, window=(0, 1.0))


# "no client-side limit" versus "the default limit"


def _counting_client(clock: ManualClock, **limits: Any) -> tuple[AmperityClient, list[str]]:
    """A client on an in-memory server answering every segment list; the paths it was sent."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"data": []})

    client = AmperityClient(
        tenant="acme", auth=StaticToken(_TOKEN), transport=httpx.MockTransport(answer), clock=clock, **limits
    )
    return client, seen


_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrZXktMSIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln"  # exp in 2100


async def test_unlimited_sends_every_request_without_waiting_on_the_clock() -> None:
    clock = ManualClock()
    client, seen = _counting_client(clock, rate_limit=UNLIMITED, profile_rate_limit=UNLIMITED)
    async with client, anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(client.call, list_segment)
        for _ in range(30):
            tg.start_soon(client.call, list_indexes)
        await clock.advance(0)  # let every task run; virtual time never moves
        assert clock.pending_sleepers == 0
    assert seen.count("/api/segments") == 30 and seen.count("/api/indexes") == 30
    assert clock.now() == 0


async def test_none_keeps_the_documented_default_limit() -> None:
    clock = ManualClock()
    client, seen = _counting_client(clock, rate_limit=None)
    async with client, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(client.call, list_segment)
        await clock.advance(0)
        assert len(seen) == 2  # the default bucket's capacity; the rest wait for tokens
        await clock.advance(1.0)
        assert len(seen) == 10  # at most 10 in any 1.01 s
        await clock.advance(1.0)
        assert len(seen) == 12
    assert clock.pending_sleepers == 0


@pytest.mark.parametrize("value", [False, 0, 50, "unlimited"])
def test_a_rate_limit_that_is_no_limiter_is_refused_naming_the_setting(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit must be a rate limiter.*UNLIMITED"):
        AmperityClient(tenant="acme", auth=_TOKEN, rate_limit=value)
    with pytest.raises(ConfigurationError, match="profile_rate_limit must be"):
        AmperityClient(tenant="acme", auth=_TOKEN, profile_rate_limit=value)


def test_unlimited_is_one_named_value() -> None:
    import amperity_async

    assert amperity_async.UNLIMITED is UNLIMITED
    assert repr(UNLIMITED) == "UNLIMITED"
    with pytest.raises(ConfigurationError, match="per_operation_limits"):
        AmperityClient(tenant="acme", auth=_TOKEN, rate_limit=UNLIMITED, per_operation_limits=True)
