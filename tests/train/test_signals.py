"""SignalStop: the run stops after the step that got the signal, and the handler that was there before
(submitit's checkpoint-and-requeue) gets the signal once the checkpoint is written."""
import os
import signal

import pytest

from quadflow.train.callbacks import SignalStop


@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="no SIGUSR2 on this platform")
def test_signal_is_caught_and_forwarded_to_the_previous_handler_after_repeated_fit_starts():
    calls = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        stop = SignalStop(["SIGUSR2"])
        stop.on_fit_start(None)
        stop.on_fit_start(None)  # the job installs it around its theories, the trainer again around the fit
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.received == signal.SIGUSR2 and stop.on_step_end(None) and calls == []
        stop.on_fit_end(None)
        stop.forward()
        assert calls == [signal.SIGUSR2]  # the earlier handler, not SignalStop's own
        assert signal.getsignal(signal.SIGUSR2) is stop.previous[signal.SIGUSR2]  # restored
    finally:
        signal.signal(signal.SIGUSR2, before)
