"""The budget a parent serves to worker processes: the window guard's ledger, grants over the
socket, cancelled and vanished workers, a parent that goes away, 429s, and real processes."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import pytest

from amperity_async.custom.clock import ManualClock
from amperity_async.custom.errors import ConfigurationError, RateLimiterUnavailableError
from amperity_async.custom.extract.budget_link import SETTLE_SECONDS, BudgetLink, LocalBudget
from amperity_async.custom.extract.budget_server import BudgetServer
from amperity_async.custom.extract.budget_wire import lease_size
from amperity_async.custom.extract.budgets import Rates
from amperity_async.custom.extract.ledger import WindowLedger
from amperity_async.custom.operations import CONTROL_PLANE, PROFILE
from amperity_async.custom.ratelimit import UNLIMITED

WINDOW = 1.01  # what the promise is checked over: no 1.01 s window holds more than the limit


def busiest_window(times: Sequence[float], seconds: float = WINDOW) -> int:
    ordered = sorted(times)
    busiest, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


# The ledger, on explicit times.


def test_ledger_grants_up_to_the_count_then_waits_for_the_oldest_point() -> None:
    ledger = WindowLedger(3, 1.0)
    for t in (0.0, 0.1, 0.2):
        assert ledger.due(t) == t
        ledger.spent(ledger.grant(t), t, t)
    assert ledger.due(0.3) == pytest.approx(1.0)  # the point at 0.0 leaves the window at 1.0
    assert ledger.due(1.0) == 1.0


def test_grants_out_count_in_every_window_until_reported() -> None:
    ledger = WindowLedger(2, 1.0)
    first, second = ledger.grant(0.0), ledger.grant(0.0)
    assert ledger.due(50.0) is None  # however long ago: not spent yet, so maybe about to be
    ledger.spent(first, 49.5, 50.0)  # spent late: it counts from when it was spent
    assert ledger.due(50.0) == pytest.approx(50.5)
    ledger.returned(second)  # handed back unspent: out of the window
    assert ledger.due(50.0) == 50.0
    ledger.spent(ledger.grant(50.0), 50.0, 50.0)
    assert ledger.due(50.1) == pytest.approx(50.5)


def test_a_report_cannot_place_a_spend_before_its_grant_or_after_now() -> None:
    ledger = WindowLedger(1, 1.0)
    ledger.spent(ledger.grant(10.0), 3.0, 10.2)  # a clock reading before the grant
    assert ledger.due(10.5) == pytest.approx(11.0)
    other = WindowLedger(1, 1.0)
    other.spent(other.grant(10.0), 99.0, 10.2)  # a reading from the future
    assert other.due(10.5) == pytest.approx(11.2)


def test_grants_of_a_vanished_worker_count_as_spent_when_it_is_noticed() -> None:
    ledger = WindowLedger(2, 1.0)
    tickets = {ledger.grant(0.0), ledger.grant(0.0)}
    ledger.abandoned(tickets, 5.0)
    assert ledger.out == 0
    assert ledger.due(5.5) == pytest.approx(6.0)


def test_ledger_refuses_an_empty_window() -> None:
    with pytest.raises(ConfigurationError):
        WindowLedger(0, 1.0)


# The server and its links, in one process.


@pytest.mark.anyio
async def test_links_share_one_window_and_report_every_grant() -> None:
    rates = Rates(control_plane=20, profile=UNLIMITED)
    spends: list[float] = []
    async with BudgetServer(rates) as server:
        assert server.ledger(PROFILE) is None  # unlimited: nothing to serve

        async def worker() -> None:
            async with server.budget.limiters("acme") as limiters:
                assert limiters[PROFILE] is UNLIMITED
                limiter = limiters[CONTROL_PLANE]
                assert limiter is not None and limiter is not UNLIMITED
                with anyio.move_on_after(2.5):
                    while True:
                        await limiter.acquire()
                        spends.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                for _ in range(4):
                    tg.start_soon(worker)
        ledger = server.ledger(CONTROL_PLANE)
        assert ledger is not None
        with anyio.fail_after(5):
            while ledger.out:  # the last spends' reports may still be on their way
                await anyio.sleep(0.01)
    assert len(spends) > 20  # more than one window's worth went through
    assert busiest_window(spends) <= 20


@pytest.mark.anyio
async def test_a_cancelled_acquire_hands_its_grant_back() -> None:
    async with BudgetServer(Rates(control_plane=1, profile=UNLIMITED)) as server:
        ledger = server.ledger(CONTROL_PLANE)
        assert ledger is not None
        async with BudgetLink.connect(server.address, server.budget.key) as link:
            limiter = link.limiter(CONTROL_PLANE)
            await limiter.acquire()  # the first token is there at once; the next is a second away
            with anyio.move_on_after(0.05):
                await limiter.acquire()
            with anyio.fail_after(5):
                while ledger.out or ledger.in_window(time.monotonic()) != 1:
                    await anyio.sleep(0.01)
            await limiter.acquire()  # the budget still works for the next caller


@pytest.mark.anyio
async def test_a_worker_that_vanishes_has_its_grants_counted_as_spent() -> None:
    async with BudgetServer(Rates(control_plane=5, profile=UNLIMITED)) as server:
        ledger = server.ledger(CONTROL_PLANE)
        assert ledger is not None
        stream = await anyio.connect_tcp("127.0.0.1", int(server.address.rpartition(":")[2]))
        hello = b'{"t":"hello","key":"%s"}\n' % server.budget.key.encode()
        await stream.send(hello + b'{"t":"want","api":"control-plane","n":2}\n')
        with anyio.fail_after(5):
            while ledger.out < 2:
                await anyio.sleep(0.01)
        await stream.aclose()  # gone without a report
        with anyio.fail_after(5):
            while ledger.out:
                await anyio.sleep(0.01)
        assert ledger.in_window(time.monotonic()) == 2


@pytest.mark.anyio
async def test_nonsense_on_the_socket_is_hung_up_on() -> None:
    async with BudgetServer(Rates(control_plane=5, profile=UNLIMITED)) as server:
        port = int(server.address.rpartition(":")[2])
        hello = b'{"t":"hello","key":"%s"}\n' % server.budget.key.encode()
        for nonsense in (
            b'{"t":"hello","key":"guess"}\n',
            hello + b'{"t":"want","api":"no-such-api","n":1}\n',
            b"{{{\n",
        ):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(nonsense + b'{"t":"want","api":"control-plane","n":1}\n')
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()  # hung up on, no grant
            await stream.aclose()


@pytest.mark.anyio
async def test_waiting_workers_fail_when_the_parent_goes_away() -> None:
    stop = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[BudgetServer]) -> None:
        async with BudgetServer(Rates(control_plane=1, profile=UNLIMITED)) as server:
            task_status.started(server)
            await stop.wait()

    async def stop_soon() -> None:
        await anyio.sleep(0.1)
        stop.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            server = await tg.start(serve)
            async with BudgetLink.connect(server.address, server.budget.key) as link:
                limiter = link.limiter(CONTROL_PLANE)
                await limiter.acquire()
                tg.start_soon(stop_soon)
                with pytest.raises(RateLimiterUnavailableError, match="gone"):
                    await limiter.acquire()  # waiting for the next token when the server stops
                with pytest.raises(RateLimiterUnavailableError):
                    await limiter.acquire()  # and every later one, at once


@pytest.mark.anyio
async def test_no_server_is_a_typed_error() -> None:
    with pytest.raises(RateLimiterUnavailableError, match="local budget"):
        async with LocalBudget("127.0.0.1:1", "key", Rates()).limiters("acme"):
            pass


@pytest.mark.anyio
async def test_a_429_in_a_worker_slows_the_shared_bucket() -> None:
    async with BudgetServer(Rates(control_plane=10, profile=UNLIMITED)) as server:
        async with BudgetLink.connect(server.address, server.budget.key) as link:
            link.limiter(CONTROL_PLANE).on_rate_limited(None)
            bucket = server._apis[CONTROL_PLANE].bucket
            with anyio.fail_after(5):
                while bucket.current_rate >= 10:
                    await anyio.sleep(0.01)
            assert bucket.current_rate <= 5.01


# Leases: at high rates most tickets come from a worker's own pool.

HIGH = 4000  # requests/s: leases of 40 tickets


async def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def test_leases_are_about_a_hundredth_of_the_rate_and_one_ticket_at_low_rates() -> None:
    assert [lease_size(rate) for rate in (1, 10, 199.9, 200, 2000, 4000, 10**6, UNLIMITED)] == [
        1,
        1,
        1,
        2,
        20,
        40,
        50,
        50,
    ]


@pytest.mark.anyio
async def test_at_a_high_rate_links_take_whole_leases_and_keep_every_window() -> None:
    rates = Rates(control_plane=UNLIMITED, profile=HIGH)
    spends: list[float] = []
    async with BudgetServer(rates) as server:

        async def worker(callers: int) -> None:
            async with server.budget.limiters("acme") as limiters:
                limiter = limiters[PROFILE]
                assert limiter is not None and limiter is not UNLIMITED

                async def caller() -> None:
                    for _ in range(1500 // callers):
                        await limiter.acquire()
                        spends.append(time.monotonic())

                async with anyio.create_task_group() as tg:
                    for _ in range(callers):
                        tg.start_soon(caller)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for callers in (1, 3, 5, 15):  # 6000 tickets: more than one window's worth
                    tg.start_soon(worker, callers)
        ledger, stats = server.ledger(PROFILE), server.stats(PROFILE)
        assert ledger is not None and stats is not None
        # Every link said goodbye: spends reported, the rest of its pool handed back.
        await wait_for(lambda: ledger.out == 0)
        assert ledger.in_window(time.monotonic()) <= len(spends)
    assert len(spends) == 6000
    assert stats.tickets == 40 * stats.leases  # whole leases, even while the window was full
    assert stats.leases < len(spends) / 20  # about one round trip per 40 requests, not two per request
    assert busiest_window(spends) <= HIGH


@pytest.mark.anyio
async def test_an_idle_pool_goes_back_and_the_spend_is_reported() -> None:
    clock = ManualClock()  # the link's: its settling waits for this clock alone
    async with BudgetServer(Rates(control_plane=UNLIMITED, profile=HIGH)) as server:
        ledger = server.ledger(PROFILE)
        assert ledger is not None
        key = server.budget.key
        async with BudgetLink.connect(server.address, key, rates=server.rates, clock=clock) as link:
            limiter = link.limiter(PROFILE)
            await limiter.acquire()  # one spend; 39 tickets wait in the pool
            await wait_for(lambda: ledger.out == 40)
            await clock.advance(SETTLE_SECONDS * 0.9)
            assert ledger.out == 40  # neither reported nor handed back yet
            await clock.advance(SETTLE_SECONDS * 0.2)
            await wait_for(lambda: ledger.out == 0)  # the link is still open: nobody drew on the pool
            assert ledger.in_window(time.monotonic()) == 1  # only the spend counts; the rest went back
            await limiter.acquire()  # and the budget still works: a new lease
            assert ledger.out == 40


@pytest.mark.anyio
async def test_a_closing_link_reports_its_spends_and_hands_back_its_pool() -> None:
    async with BudgetServer(Rates(control_plane=UNLIMITED, profile=HIGH)) as server:
        ledger = server.ledger(PROFILE)
        assert ledger is not None
        async with BudgetLink.connect(server.address, server.budget.key, rates=server.rates) as link:
            for _ in range(3):
                await link.limiter(PROFILE).acquire()
        await wait_for(lambda: ledger.out == 0, seconds=SETTLE_SECONDS * 0.9)  # not left to the settling
        assert ledger.in_window(time.monotonic()) == 3


@pytest.mark.anyio
async def test_a_ticket_granted_to_a_caller_that_gave_up_goes_to_the_next_caller() -> None:
    clock = ManualClock()  # the link's: the ticket stays in its pool until this clock moves
    async with BudgetServer(Rates(control_plane=2, profile=UNLIMITED)) as server:
        ledger, stats = server.ledger(CONTROL_PLANE), server.stats(CONTROL_PLANE)
        assert ledger is not None and stats is not None
        key = server.budget.key
        async with BudgetLink.connect(server.address, key, rates=server.rates, clock=clock) as link:
            limiter = link.limiter(CONTROL_PLANE)
            for _ in range(2):
                await limiter.acquire()  # the window's two; the next is a second away
            with anyio.move_on_after(0.05):
                await limiter.acquire()
            await wait_for(lambda: stats.leases == 3)  # granted after its caller gave up: in the pool
            await limiter.acquire()  # from the pool, no round trip
            assert stats.leases == 3
            await wait_for(lambda: ledger.out == 0)  # at a lease of one, each spend is reported at once


# Real processes, each recording when its grants arrive.

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import anyio
    from amperity_async.custom.extract.budget_link import LocalBudget
    from amperity_async.custom.extract.budgets import Rates
    from amperity_async.custom.ratelimit import UNLIMITED

    async def main(address: str, key: str, rate: float, count: int) -> None:
        times = []
        budget = LocalBudget(address, key, Rates(profile=rate, control_plane=UNLIMITED))
        async with budget.limiters("acme") as limiters:
            async def spend() -> None:
                for _ in range(count // 10):
                    await limiters["profile"].acquire()
                    times.append(time.monotonic())
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(spend)
        print(json.dumps(times))

    anyio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    """
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("rate", "per_process"), [(50, 60), (3000, 1500)], ids=["one-ticket", "leases"])
@pytest.mark.anyio
async def test_processes_on_one_local_budget_hold_every_window(rate: int, per_process: int) -> None:
    async with BudgetServer(Rates(profile=rate, control_plane=UNLIMITED)) as server:
        results: list[list[float]] = []

        async def child() -> None:
            args = [server.address, server.budget.key, str(rate), str(per_process)]
            done = await anyio.run_process([sys.executable, "-c", _CHILD, *args], check=True)
            results.append(json.loads(done.stdout))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(child)
    spends = [t for times in results for t in times]
    assert sorted(len(times) for times in results) == [per_process] * 3
    assert len(spends) > rate  # more than one window's worth went through
    assert busiest_window(spends) <= rate
