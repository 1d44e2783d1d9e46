"""A run's streams share one feed: one database read an event for all of them, never a missed or repeated event."""

from __future__ import annotations

import asyncio
import threading

import pytest

from backend.events import EVENTS_PER_READ, EventHub, FeedEvent, RunFeed


class FakeRun:
    """A run's event table; `load` is what a stream would run in the thread pool, counted."""

    def __init__(self) -> None:
        self.events: list[FeedEvent] = []
        self.finished = False
        self.loads: list[int] = []

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            n = len(self.events) + 1
            self.events.append((n, "epoch", f'{{"epoch": {n}}}'))

    async def load(self, after: int) -> tuple[list[FeedEvent], bool]:
        self.loads.append(after)
        await asyncio.sleep(0.01)  # a query takes a while: other streams arrive meanwhile
        return [e for e in self.events if e[0] > after][:EVENTS_PER_READ], self.finished


def ids(answer: tuple[list[FeedEvent], bool] | None) -> list[int]:
    assert answer is not None
    return [e[0] for e in answer[0]]


def test_a_hundred_streams_on_a_run_cost_one_read_an_event() -> None:
    async def scenario() -> None:
        hub, run = EventHub(), FakeRun()
        subs = [hub.subscribe(7).__enter__() for _ in range(100)]
        assert len({id(s.feed) for s in subs}) == 1  # one feed for the run
        run.add(3)
        answers = await asyncio.gather(*(s.feed.read(0, run.load) for s in subs))
        assert all(ids(a) == [1, 2, 3] for a in answers)
        assert run.loads == [0]
        run.add()
        hub.notify(7)
        answers = await asyncio.gather(*(s.feed.read(3, run.load) for s in subs))
        assert all(ids(a) == [4] for a in answers)
        assert run.loads == [0, 3]  # after the notify: one read, of what is new only
        assert ids(await subs[0].feed.read(4, run.load)) == []  # fresh and nothing new: no read
        assert run.loads == [0, 3]
        for s in subs:
            s.__exit__(None, None, None)
        assert hub.feeds == {} and 7 not in hub.subscriptions

    asyncio.run(scenario())


def test_a_notify_during_a_read_leaves_the_feed_stale_so_its_event_is_not_missed() -> None:
    async def scenario() -> None:
        hub, run = EventHub(), FakeRun()
        with hub.subscribe(1) as sub:
            run.add()

            async def load_then_commit(after: int) -> tuple[list[FeedEvent], bool]:
                answer = await run.load(after)
                run.add()  # committed (and notified) after the query read its snapshot
                hub.notify(1)
                return answer

            assert ids(await sub.feed.read(0, load_then_commit)) == [1]
            assert ids(await sub.feed.read(1, run.load)) == [2]

    asyncio.run(scenario())


def test_the_feed_rereads_after_max_age_for_writes_of_other_api_processes() -> None:
    async def scenario() -> None:
        feed, run = RunFeed(max_age=0.05), FakeRun()
        assert ids(await feed.read(0, run.load)) == []
        run.add()  # written by another process: no notify here
        assert ids(await feed.read(0, run.load)) == []
        await asyncio.sleep(0.06)
        assert ids(await feed.read(0, run.load)) == [1]

    asyncio.run(scenario())


def test_a_stream_behind_the_feed_is_told_to_read_alone_and_long_backlogs_are_paged() -> None:
    async def scenario() -> None:
        feed, run = RunFeed(), FakeRun()
        run.add(EVENTS_PER_READ + 20)
        first = await feed.read(5, run.load)
        assert ids(first) == list(range(6, EVENTS_PER_READ + 6))
        assert ids(await feed.read(EVENTS_PER_READ + 5, run.load)) == list(range(EVENTS_PER_READ + 6,
                                                                                 EVENTS_PER_READ + 21))
        assert await feed.read(2, run.load) is None  # before what the feed holds: the database, not the feed
        run.add(RunFeed.KEEP)
        feed.version += 1  # notified
        last, seen = EVENTS_PER_READ + 20, []
        for _ in range(10):  # a stream's loop: read after the last event it sent, until nothing is new
            got = ids(await feed.read(last, run.load))
            if not got:
                break
            seen += got
            last = got[-1]
        assert seen == list(range(EVENTS_PER_READ + 21, EVENTS_PER_READ + 21 + RunFeed.KEEP))  # all, once each
        assert len(feed.events) == RunFeed.KEEP
        assert feed.covered_from == feed.events[0][0] - 1
        assert await feed.read(feed.covered_from - 1, run.load) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("threads", [8])
def test_notify_from_worker_threads_bumps_the_feed(threads: int) -> None:
    async def scenario() -> None:
        hub = EventHub()
        with hub.subscribe(3) as sub:
            workers = [threading.Thread(target=lambda: [hub.notify(3) for _ in range(100)]) for _ in range(threads)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            assert sub.feed.version == threads * 100

    asyncio.run(scenario())
