from __future__ import annotations

import os
import signal
import threading

import pytest

from training.runtime import StopSignal


def test_first_signal_is_a_request_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in StopSignal.SIGNALS}
    with StopSignal() as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
        assert stop.requested()
    assert {s: signal.getsignal(s) for s in StopSignal.SIGNALS} == before


def test_a_second_signal_falls_through_to_the_previous_handler() -> None:
    with StopSignal() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested()
        with pytest.raises(KeyboardInterrupt):  # Python's default SIGINT handler, restored and re-raised
            signal.raise_signal(signal.SIGINT)


def test_outside_the_main_thread_it_installs_nothing() -> None:
    seen: dict[str, object] = {}

    def worker() -> None:
        with StopSignal() as stop:
            seen["requested"] = stop.requested()
            seen["handler"] = signal.getsignal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"requested": False, "handler": before}
