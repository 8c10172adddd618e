"""GptPause: the reader holds the read-ahead worker between two items (GPT steps)."""
from __future__ import annotations

import threading
import time

from gpt_sovits.overlap import GptPause, read_ahead


def _counting_producer(made: list[float], stop_after: int = 10_000):
    def produce(stop):
        for i in range(stop_after):
            if stop():
                return
            time.sleep(0.002)  # one "step"
            made.append(time.perf_counter())
            yield i
    return produce


def test_hold_stops_the_worker_between_items_and_lets_it_go_after():
    pause, made = GptPause(), []
    feed = read_ahead(_counting_producer(made), 10_000, pause=pause)
    assert next(feed) == 0
    with pause.hold() as parked:
        assert parked
        start, before = time.perf_counter(), len(made)
        time.sleep(0.1)
        assert len(made) == before  # nothing was produced while held
        end = time.perf_counter()
    time.sleep(0.05)
    assert len(made) > before  # and it goes on afterwards
    assert not [t for t in made if start < t < end]
    feed.close()


def test_hold_without_a_running_worker_says_so_quickly():
    pause = GptPause()
    start = time.perf_counter()
    with pause.hold(wait_s=0.05) as parked:
        assert not parked
    assert time.perf_counter() - start < 1.0


def test_a_held_worker_still_stops_when_the_reader_closes():
    pause, made = GptPause(), []
    feed = read_ahead(_counting_producer(made), 10_000, pause=pause)
    next(feed)
    closed = threading.Event()
    with pause.hold() as parked:
        assert parked
        # Closing joins the worker: it must leave the checkpoint although the hold is still on.
        closer = threading.Thread(target=lambda: (feed.close(), closed.set()))
        closer.start()
        assert closed.wait(2.0)
