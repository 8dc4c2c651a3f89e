"""RedisTokenBucket against a real redis-server on 127.0.0.1 (started and stopped here).

Budget tests count grants against the token-bucket bound ``capacity + rate * t``: the upper bound is
asserted strictly (it holds by construction, whatever the machine's speed), the lower bound loosely.
Tests that must not see a grant use rates so low (1 token per 1000 s) that "not within half a
second" has a margin of three orders of magnitude.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

redis_asyncio = pytest.importorskip("redis.asyncio")

from redis_server import RedisServer

from amperity_async.custom.clock import ManualClock
from amperity_async.custom.errors import (
    ConfigurationError,
    RateLimiterFallbackWarning,
    RateLimiterUnavailableError,
)
from amperity_async.custom.redis_bucket import RedisTokenBucket, redact_url

SLOW = 0.001  # tokens per second: a token that is not in the bucket will not come during a test
REPO = Path(__file__).resolve().parent.parent


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


async def _completes(bucket: RedisTokenBucket, within: float = 5.0) -> bool:
    with anyio.move_on_after(within):
        await bucket.acquire()
        return True
    return False


async def _run_for(
    buckets: list[RedisTokenBucket], seconds: float, tasks_each: int
) -> tuple[list[int], float]:
    counts = [0] * len(buckets)
    start = time.monotonic()
    stop_at = start + seconds

    async def worker(index: int) -> None:
        while time.monotonic() < stop_at:
            await buckets[index].acquire()
            counts[index] += 1

    async with anyio.create_task_group() as tg:
        for index in range(len(buckets)):
            for _ in range(tasks_each):
                tg.start_soon(worker, index)
    return counts, time.monotonic() - start


# sharing


@pytest.mark.anyio
async def test_independent_instances_share_one_budget(redis_server: RedisServer, tenant: str) -> None:
    rate = 40.0
    # Four buckets, four connection pools: as four processes would hold them.
    buckets = [
        RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=rate) for _ in range(4)
    ]
    try:
        assert buckets[0].capacity == 1 and buckets[0].lease_size == 0
        counts, elapsed = await _run_for(buckets, 2.0, tasks_each=8)
        round_trips = sum(b.stats.round_trips for b in buckets)
    finally:
        for bucket in buckets:
            await bucket.aclose()
    total = sum(counts)
    assert total <= buckets[0].capacity + rate * elapsed
    assert total >= 0.7 * rate * 2.0
    # One round trip per grant at low rates (the caller sleeps the time the script names, no polling).
    assert round_trips == total
    assert all(count > 0 for count in counts)


@pytest.mark.anyio
async def test_leasing_keeps_the_bound_and_cuts_round_trips(redis_server: RedisServer, tenant: str) -> None:
    rate = 2000.0
    buckets = [RedisTokenBucket(redis_server.url, tenant=tenant, api="profile", rate=rate) for _ in range(4)]
    try:
        assert buckets[0].lease_size == 20 and buckets[0].capacity == 41
        counts, elapsed = await _run_for(buckets, 1.5, tasks_each=25)
    finally:
        for bucket in buckets:
            await bucket.aclose()
    total = sum(counts)
    assert total <= buckets[0].capacity + rate * elapsed
    assert total >= 0.5 * rate * 1.5
    round_trips = sum(b.stats.round_trips for b in buckets)
    assert sum(b.stats.acquired for b in buckets) == total
    # Without leasing this would be 1.0.
    assert round_trips / total < 0.5


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from amperity_async.custom.redis_bucket import RedisTokenBucket

    url, tenant, rate, start_at, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

    async def main():
        async with RedisTokenBucket(url, tenant=tenant, api="control-plane", rate=rate) as bucket:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            count, first, stop_at = 0, time.time(), start_at + seconds

            async def worker():
                nonlocal count
                while time.time() < stop_at:
                    await bucket.acquire()
                    count += 1

            await asyncio.gather(*(worker() for _ in range(10)))
            print(json.dumps({"count": count, "first": first, "last": time.time()}))

    asyncio.run(main())
    """
)


def test_separate_processes_share_one_budget(redis_server: RedisServer, tenant: str) -> None:
    rate, seconds = 30.0, 2.0
    start_at = time.time() + 1.5  # after every interpreter has started
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, redis_server.url, tenant, str(rate), str(start_at), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(4)
    ]
    results: list[dict[str, Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    total = sum(r["count"] for r in results)
    window = max(r["last"] for r in results) - min(r["first"] for r in results)
    assert total <= 1 + rate * window
    assert total >= 0.7 * rate * seconds
    assert all(r["count"] > 0 for r in results)


@pytest.mark.anyio
async def test_two_tenants_never_share(redis_server: RedisServer, tenant: str) -> None:
    other = tenant + "-other"
    acme = RedisTokenBucket(redis_server.url, tenant=tenant, api="profile", rate=SLOW, capacity=3)
    globex = RedisTokenBucket(redis_server.url, tenant=other, api="profile", rate=SLOW, capacity=3)
    acme_cp = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=SLOW, capacity=3)
    try:
        for _ in range(3):
            assert await _completes(acme)
        assert not await _completes(acme, within=0.5)
        for bucket in (globex, acme_cp):  # another tenant, and another API of the same tenant
            for _ in range(3):
                assert await _completes(bucket)
        keys = {key.decode() for key in await acme._redis.keys("amperity-async:*")}
        assert f"amperity-async:{{{tenant}:profile}}:bucket" in keys
        assert f"amperity-async:{{{other}:profile}}:bucket" in keys
        assert f"amperity-async:{{{tenant}:control-plane}}:bucket" in keys
    finally:
        for bucket in (acme, globex, acme_cp):
            await bucket.aclose()


# leases


@pytest.mark.anyio
async def test_returned_lease_tokens_keep_the_total_exact(redis_server: RedisServer, tenant: str) -> None:
    def bucket(lease_size: int) -> RedisTokenBucket:
        return RedisTokenBucket(
            redis_server.url, tenant=tenant, api="profile", rate=SLOW, capacity=10, lease_size=lease_size
        )

    first, second, third = bucket(4), bucket(4), bucket(0)
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
    leased = RedisTokenBucket(
        redis_server.url,
        tenant=tenant,
        api="profile",
        rate=SLOW,
        capacity=10,
        lease_size=4,
        lease_validity=60.0,
        clock=clock,
    )
    other = RedisTokenBucket(
        redis_server.url, tenant=tenant, api="profile", rate=SLOW, capacity=10, lease_size=0
    )
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
    client = redis_asyncio.Redis.from_url(redis_server.url)
    crashed = RedisTokenBucket(
        client,
        tenant=tenant,
        api="profile",
        rate=SLOW,
        capacity=10,
        lease_size=4,
        lease_validity=0.3,
        timeout=0.1,
    )
    other = RedisTokenBucket(
        redis_server.url, tenant=tenant, api="profile", rate=SLOW, capacity=10, lease_size=0
    )
    try:
        await crashed.acquire()
        await client.aclose()  # the process dies holding 4 unspent tokens: they are never handed out twice
        await anyio.sleep(0.6)
        for _ in range(5):
            assert await _completes(other)
        assert not await _completes(other, within=0.5)
        # Only the reservation of the last attempt is left; the crashed process's lease is gone.
        assert await other._redis.zcard(other.keys[1]) == 1
    finally:
        await other.aclose()


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
    bucket = RedisTokenBucket(redis_server.url, tenant=tenant, api="control-plane", rate=4.0)
    try:
        await bucket.acquire()  # empties the bucket (capacity 1)
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
async def test_cost_above_capacity_is_refused(redis_server: RedisServer, tenant: str) -> None:
    async with RedisTokenBucket(redis_server.url, tenant=tenant, api="profile", rate=10.0) as bucket:
        with pytest.raises(ConfigurationError, match="capacity"):
            await bucket.acquire(2)
        with pytest.raises(ConfigurationError, match="cost"):
            await bucket.acquire(0)


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
    code = "import sys, amperity_async; assert 'redis' not in sys.modules; from amperity_async import RedisTokenBucket; print(RedisTokenBucket.__name__)"
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
