"""Callbacks of the training loop: divergence guard, signal stop, checkpoints.

A callback sees the :class:`quadflow.train.Trainer` at five points; what it must
keep across a resume it returns from ``state_dict`` (saved in the checkpoint).
"""
from __future__ import annotations

import logging
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from quadflow.io import atomic_write


class Callback:
    """Hooks of :meth:`Trainer.fit`; ``on_step_end`` returning True stops the run after that step."""

    def on_fit_start(self, trainer) -> None: ...

    def on_evaluate(self, trainer, loss: float, stats) -> None:
        """After each evaluation of the objective at the current parameters (``loss`` is L)."""

    def on_step_end(self, trainer) -> bool:
        return False

    def on_fit_end(self, trainer) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class DivergenceError(RuntimeError):
    """The flow produced a non-finite or exploding loss.

    Attributes: ``step`` where it happened, ``value`` (the train loss there) and ``last``
    (the last finite record, or None).
    """

    def __init__(self, step: int, value: float, last: dict | None, h: float):
        self.step, self.value, self.last = step, value, last
        last_txt = ", ".join(f"{k}={v:.4g}" for k, v in (last or {}).items() if isinstance(v, float))
        super().__init__(
            f"training diverged at step {step} (t={step * h:g}): train_loss={value:.4g}. "
            f"Last finite record: {last_txt or 'none'}. Use a smaller step (trainer.h, now {h:g}), "
            "a higher precision (precision=fp32 or fp64), or optim=rk4.")


class DivergenceGuard(Callback):
    """Stop on a non-finite train loss or one above ``factor`` times its initial value; warn when GD
    oscillates: the objective ``L / (m d)`` rose by more than ``rise`` at over ``fraction`` of the steps.

    A rise of more than 10 %: step-size oscillations rise by 20-30 % per step, while the
    rounding noise of bf16 near its error floor rises by at most ~6 % (measured).
    """

    def __init__(self, factor: float = 1e6, rise: float = 0.1, fraction: float = 0.05, min_steps: int = 50):
        self.factor, self.rise, self.fraction, self.min_steps = factor, rise, fraction, min_steps
        self.initial_loss: float | None = None
        self.last_objective: float | None = None
        self.ascents = 0

    def on_evaluate(self, trainer, loss, stats):
        value = stats.train_loss
        if self.initial_loss is None:
            self.initial_loss = value
        if not math.isfinite(value) or value > self.factor * max(self.initial_loss, 1e-12):
            raise DivergenceError(trainer.step, value, trainer.last_record, trainer.h)
        if trainer.batches is not None:  # minibatch losses fluctuate from batch to batch: no ascent test
            return
        objective = loss / trainer.objective.scale
        if self.last_objective is not None and objective > (1 + self.rise) * self.last_objective:
            self.ascents += 1
        self.last_objective = objective

    def on_fit_end(self, trainer):
        if trainer.step >= self.min_steps and self.ascents > self.fraction * trainer.step:
            warnings.warn(f"GD is not descending: the objective rose at {self.ascents} of {trainer.step} steps "
                          f"(h={trainer.h:g} oscillates without diverging); use a smaller trainer.h", RuntimeWarning)

    def state_dict(self):
        return {"initial_loss": self.initial_loss, "last_objective": self.last_objective, "ascents": self.ascents}

    def load_state_dict(self, state):
        self.initial_loss, self.last_objective = state["initial_loss"], state["last_objective"]
        self.ascents = state["ascents"]


class SignalStop(Callback):
    """SIGINT, SIGTERM and SIGUSR2 (Ctrl-C, a SLURM pre-emption or time limit) end the run cleanly
    after the current step.

    ``received`` holds the signal number. Handlers are installed for the fit only, and not at
    all off the main thread (some launchers), where Python cannot install them. The handler
    that was there before (submitit's, which requeues the job) is kept in ``previous`` so that
    the job can hand the signal on once its checkpoint is written (:meth:`forward`).
    """

    def __init__(self, signals=("SIGINT", "SIGTERM", "SIGUSR2")):
        self.signals = [getattr(signal, s) if isinstance(s, str) else s for s in signals
                        if not isinstance(s, str) or hasattr(signal, s)]
        self.received: int | None = None
        self.previous: dict = {}

    def _handle(self, signum, frame):
        self.received = signum

    def on_fit_start(self, trainer):
        for sig in self.signals:
            try:
                old = signal.signal(sig, self._handle)
            except ValueError:
                continue
            if old != self._handle:  # bound methods are new objects on each access: compare with ==
                self.previous[sig] = old

    def on_step_end(self, trainer):
        return self.received is not None

    def on_fit_end(self, trainer):
        for sig, old in self.previous.items():
            signal.signal(sig, old)

    def forward(self) -> None:
        """Call the handler that was installed before ours for the received signal, if it was a
        Python function (submitit's checkpoint-and-requeue); default and ignore handlers are not called."""
        old = self.previous.get(self.received)
        if callable(old) and old not in (signal.default_int_handler,):
            old(self.received, None)


class ProgressLog(Callback):
    """Progress lines on the ``quadflow`` logger about every ``fraction`` of the steps (step, t, train loss,
    rate, ETA), for batch jobs: silent when stderr is a terminal, where the tqdm bar shows."""

    def __init__(self, fraction: float = 0.05, force: bool = False):
        if not 0 < fraction <= 1:
            raise ValueError(f"callbacks.progress.fraction={fraction!r} is out of range: allowed (0, 1]")
        self.fraction, self.force = fraction, force
        self.enabled, self._start, self._t0, self._next, self._every, self._loss = False, 0, 0.0, 0, 1, float("nan")

    def on_fit_start(self, trainer):
        self.enabled = self.force or not sys.stderr.isatty()
        self._t0, self._start = time.time(), trainer.step
        self._every = max(1, int(round(self.fraction * max(trainer.steps, 1))))
        self._next = (trainer.step // self._every + 1) * self._every

    def on_evaluate(self, trainer, loss, stats):
        self._loss = stats.train_loss

    def on_step_end(self, trainer):
        if not self.enabled or trainer.step < self._next:
            return False
        self._next += self._every
        rate = (trainer.step - self._start) / max(time.time() - self._t0, 1e-9)
        eta = (trainer.steps - trainer.step) / rate if rate > 0 else float("nan")
        logging.getLogger("quadflow").info(
            f"step {trainer.step}/{trainer.steps} ({100 * trainer.step / max(trainer.steps, 1):.0f} %) "
            f"t={trainer.step * trainer.h:g} train_loss={self._loss:.4g} {rate:.1f} steps/s ETA {eta:.0f} s")
        return False


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (tensors, numpy arrays, plain Python) atomically to ``path``."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path, expected_key: str | None = None) -> dict | None:
    """The state saved at ``path`` (None when there is none).

    Raises ``ValueError`` when the checkpoint was written for another configuration
    (``state["key"] != expected_key``): resuming it would mix runs.
    """
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if expected_key is not None and state.get("key") != expected_key:
        raise ValueError(f"{path} was written by a run with a different configuration; resume with the "
                         "same overrides, or use a new hydra.run.dir")
    return state


class Checkpointer(Callback):
    """Save ``state()`` to ``path`` every ``every`` steps (0: only when :meth:`save` is called, e.g. at exit).

    ``state`` is a callable returning the whole resumable state (the trainer's and the job's).
    """

    def __init__(self, every: int = 200, path: Path | None = None, state: Callable[[], dict] | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint.every={every!r} is out of range: allowed an integer >= 0 (0: only at exit)")
        self.every, self.path, self.state = every, path, state

    def save(self) -> None:
        if self.path is not None and self.state is not None:
            save_checkpoint(self.path, self.state())

    def on_step_end(self, trainer):
        if self.every and trainer.step % self.every == 0:
            self.save()
        return False
