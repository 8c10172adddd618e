"""How the GPT and SoVITS share a CPU while a stream is synthesised.

The GPT decodes in a read-ahead worker thread (`read_ahead`) on one core while SoVITS windows
decode on the others (`WindowJob`, so the reader can watch the GPT meanwhile). `GptPause` lets
the reader stop the worker between two GPT steps, so one latency-critical window (the request's
first) can take every core instead of sharing the CPU with the GPT.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import torch

from gpt_sovits.fast import set_threads
from gpt_sovits.sovits.streaming import ChunkedDecoder, Window

StopFn = Callable[[], bool]


class GptPause:
    """Holds the read-ahead GPT worker between two steps while the reader decodes a window.

    The worker calls `checkpoint` between steps; the reader's `hold()` closes the gate and waits
    (briefly) for the worker to reach it, so the step in flight finishes first and no step runs
    during the hold. On a 2-core CPU the first SoVITS window then decodes on both cores instead
    of on one beside a GPT step (v2, 4 tokens alone: 54 ms on two cores vs 82 ms on one; in the
    benchmark the first chunk came 50-60 ms sooner); that window is most of what stands between
    the first GPT tokens and the first audio.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._parked = threading.Event()

    def checkpoint(self, halted: Callable[[], bool]) -> None:
        """Worker side, between two steps: wait here while the reader holds the pause."""
        if self._open.is_set():
            return
        self._parked.set()
        try:
            while not self._open.wait(0.05) and not halted():
                continue
        finally:
            self._parked.clear()

    @contextlib.contextmanager
    def hold(self, wait_s: float = 0.05) -> Iterator[bool]:
        """Reader side: stop the worker at its next checkpoint for the body. Yields whether it
        got there within `wait_s` (a step takes ~15 ms on CPU); if not (it finished, or blocks on
        a full queue) the body should not count on the cores being free."""
        self._open.clear()
        try:
            yield self._parked.wait(wait_s)
        finally:
            self._open.set()


class WindowJob:
    """One SoVITS window decoded in its own thread with `threads` intra-op threads, so the reader
    can watch the GPT while it runs."""

    def __init__(self, chunker: ChunkedDecoder, window: Window, threads: int) -> None:
        self.window = window
        self._audio: np.ndarray | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        restore = torch.get_num_threads()
        threading.Thread(target=self._run, args=(chunker, threads, restore), daemon=True,
                         name="gsv-sovits-window").start()

    def _run(self, chunker: ChunkedDecoder, threads: int, restore: int) -> None:
        # Thread counts are set explicitly: a new thread would start from whatever count
        # another thread set last. Restored after, since new threads inherit this one's.
        set_threads(threads)
        try:
            self._audio = chunker.decode(self.window)
        except BaseException as exc:  # re-raised in the reader by result()
            self._error = exc
        finally:
            torch.set_num_threads(restore)
            self._done.set()

    def wait_unless(self, give_up: Callable[[], bool], poll_s: float = 0.005) -> bool:
        """Wait for the decode; False as soon as `give_up()` says so while it still runs."""
        while not self._done.wait(poll_s):
            if give_up():
                return self._done.is_set()
        return True

    def result(self) -> np.ndarray:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._audio is not None
        return self._audio


class _Failed:
    """Carries an exception from the GPT worker to the reader."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def read_ahead(
    produce: Callable[[StopFn], Iterator[Any]], limit: int, should_stop: StopFn | None = None,
    pause: "GptPause | None" = None,
) -> Generator[Any, None, None]:
    """Run `produce(stop)` in a worker thread, at most `limit` items ahead of the reader.

    The worker polls `stop` (true once the reader is closed or `should_stop()` says so) and is
    joined when the reader finishes or is closed; its exceptions are re-raised in the reader.
    With `pause`, the worker waits at `pause.checkpoint` after handing over each item, i.e.
    between two GPT steps, while the reader holds it.
    """
    if limit < 1:
        raise ValueError(f"read-ahead limit must be >= 1, got {limit}")
    box: queue.Queue[Any] = queue.Queue(maxsize=limit)
    threads = torch.get_num_threads()  # the worker's prefill gets the reader's cores
    halt = threading.Event()

    def stop() -> bool:
        return halt.is_set() or (should_stop is not None and should_stop())

    def put(item: Any) -> bool:
        while not halt.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        # Explicit: a new thread's count would otherwise come from whichever thread set one
        # last (a window job's single thread, say).
        set_threads(threads)
        try:
            for item in produce(stop):
                if not put(item):
                    return
                if pause is not None:
                    pause.checkpoint(halt.is_set)
            put(_END)
        except BaseException as exc:  # handed to the reader, which raises it
            put(_Failed(exc))

    worker = threading.Thread(target=work, name="gsv-gpt-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        halt.set()
        worker.join()
