"""Callbacks of the training loop: divergence guard, signal stop, checkpoints.

A callback sees the :class:`quadflow.train.Trainer` at five points; what it must
keep across a resume it returns from ``state_dict`` (saved in the checkpoint).
"""
from __future__ import annotations

import logging
import math
import pickle
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from quadflow.io import atomic_write
from quadflow.optim import RK4, follows_flow
from quadflow.runtime.distributed import world
from quadflow.runtime.precision import PRECISIONS


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
    (the last finite record, or None). The advice names a smaller ``h``, the precisions higher
    than ``precision`` (when it is known) and RK4 (unless ``rk4``: the run already uses it).
    """

    def __init__(self, step: int, value: float, last: dict | None, h: float, precision: str | None = None,
                 rk4: bool = False):
        self.step, self.value, self.last = step, value, last
        last_txt = ", ".join(f"{k}={v:.4g}" for k, v in (last or {}).items() if isinstance(v, float))
        higher = PRECISIONS[:PRECISIONS.index(precision)][::-1] if precision in PRECISIONS else ()
        advice = [f"a smaller step (trainer.h, now {h:g})"]
        if higher:
            advice.append(f"a higher precision (precision={_either(higher)})")
        if not rk4:
            advice.append("optim=rk4")
        super().__init__(f"training diverged at step {step} (t={step * h:g}): train_loss={value:.4g}. "
                         f"Last finite record: {last_txt or 'none'}. Use {_either(advice)}.")


def _either(items) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


class DivergenceGuard(Callback):
    """Stops a run whose train loss is not finite or above ``factor`` times its initial value
    (:class:`DivergenceError`), and marks a full-batch run whose objective ``L`` did not descend as a
    smaller step would: at the end of a fit of more than ``min_steps`` steps that evaluated its last step
    (not stopped by a divergence or a signal), :attr:`unstable` is the reason (a warning too), else None.
    Such a run is one where

    - ``L`` rose by more than ``rise`` at over ``fraction`` of the steps after the first ``min_steps``
      (``late_ascents``): step-size oscillations rise by 20-30 % per step and go on, while heavy-ball
      momentum overshoots in its first ~30 steps only. Rises below ``floor`` times the initial ``L`` are not
      counted: the rounding noise of bf16 at its error floor rises by up to 2x, but by under 1.4e-5 of it;
    - or ``L`` ended above its lowest value by more than ``give_back`` of the decrease it made (4-11 % for
      GD and RK4 oscillating at h = 0.1-0.2 on the default problem; under 1e-5 for bf16 noise);
    - or the optimiser follows the flow (:func:`quadflow.optim.follows_flow`) but stalled where the flow
      does not: its last step lowered ``L`` by less than ``stall`` times the flow's first-order decrease
      ``lr |grad L|^2``, while that decrease is above ``stall_gate`` times the initial ``L`` (it is 0.1-0.3
      times it where RK4 at h = 0.12-0.14 settles, under 2e-5 in converged runs, bf16 included).

    The values are those measured on quadflow's problems (docs/theory.md section 2). ``L`` is taken per unit
    of the objective's ``scale`` and ``loss_scale``, so that a lowered loss scale is no descent.
    """

    _STATE = ("initial_loss", "first", "lowest", "last", "previous", "last_step", "ascents", "late_ascents")

    def __init__(self, factor: float = 1e6, rise: float = 0.1, fraction: float = 0.05, min_steps: int = 50,
                 floor: float = 1e-4, give_back: float = 0.01, stall: float = 0.25, stall_gate: float = 1e-3):
        for name, value, low, high in (("factor", factor, 1, math.inf), ("rise", rise, 0, math.inf),
                                       ("fraction", fraction, 0, 1), ("floor", floor, 0, 1),
                                       ("give_back", give_back, 0, 1), ("stall", stall, 0, 1),
                                       ("stall_gate", stall_gate, 0, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
                raise ValueError(f"callbacks.divergence.{name}={value!r} is out of range: allowed a number in "
                                 f"({low:g}, {high:g})")
        if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
            raise ValueError(f"callbacks.divergence.min_steps={min_steps!r} is out of range: allowed an integer >= 0")
        self.factor, self.rise, self.fraction, self.min_steps = factor, rise, fraction, min_steps
        self.floor, self.give_back, self.stall, self.stall_gate = floor, give_back, stall, stall_gate
        self.precision: str | None = None  # the run's precision name, for the advice of DivergenceError
        self.initial_loss: float | None = None  # train loss at the first evaluation
        self.first = self.lowest = self.last = self.previous = None  # L: first, lowest, last two evaluations
        self.last_step: int | None = None  # step of the last evaluation
        self.ascents = self.late_ascents = 0  # rises counted at all steps, and at steps >= min_steps
        self.unstable: str | None = None

    def on_evaluate(self, trainer, loss, stats):
        value = float(np.max(stats.train_loss))  # the worst replica's
        if self.initial_loss is None:
            self.initial_loss = value
        if not math.isfinite(value) or value > self.factor * max(self.initial_loss, 1e-12):
            raise DivergenceError(trainer.step, value, trainer.last_record, trainer.h, self.precision,
                                  rk4=isinstance(trainer.optimizer, RK4))
        if trainer.batches is not None:  # minibatch losses fluctuate from batch to batch: no descent test
            return
        objective = loss / _unit(trainer.objective)
        if self.first is None:
            self.first = self.lowest = objective
        elif objective > (1 + self.rise) * self.last and objective - self.last > self.floor * self.first:
            self.ascents += 1
            self.late_ascents += int(trainer.step >= self.min_steps)
        self.previous, self.last, self.last_step = self.last, objective, trainer.step
        self.lowest = min(self.lowest, objective)

    def on_fit_end(self, trainer):
        self.unstable = self.verdict(trainer)
        if self.unstable:
            warnings.warn(f"training unstable: {self.unstable}", RuntimeWarning)

    def verdict(self, trainer) -> str | None:
        """Why the run did not descend as a smaller step would (see the class docstring), or None."""
        if trainer.batches is not None or trainer.step <= self.min_steps or self.last_step != trainer.step:
            return None
        opt, h = trainer.optimizer, trainer.h
        lr = float(opt.param_groups[0]["lr"])
        advice = f"use a smaller step (trainer.h, now {h:g}" + (f"; optimiser lr {lr:g})" if lr != h else ")")
        if self.late_ascents > self.fraction * (trainer.step - self.min_steps):
            return (f"the objective rose by over {self.rise:.0%} at {self.late_ascents} of the "
                    f"{trainer.step - self.min_steps} steps after step {self.min_steps}: {type(opt).__name__} "
                    f"oscillates without diverging; {advice}")
        if self.last - self.lowest > self.give_back * (self.first - self.lowest):
            return (f"the objective ended at {self.last:.4g}, giving back over {self.give_back:.0%} of its decrease "
                    f"from {self.first:.4g} to the lowest value it reached, {self.lowest:.4g}; {advice}")
        if not follows_flow(opt):
            return None
        flow = sum(g["lr"] * sum(float(torch.sum(p.grad * p.grad)) for p in g["params"] if p.grad is not None)
                   for g in opt.param_groups) / _unit(trainer.objective)
        if flow > self.stall_gate * self.first and self.previous - self.last < self.stall * flow:
            return (f"{type(opt).__name__} stalled where the flow does not: at objective {self.last:.4g} the "
                    f"flow's first-order decrease lr |grad L|^2 is {flow:.3g}, but the last step changed the "
                    f"objective by {self.last - self.previous:+.3g}; {advice}")
        return None

    def state_dict(self):
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state):
        for k in self._STATE:
            setattr(self, k, state[k])


def _unit(objective) -> float:
    """What the objective's loss is per unit of ``train_loss + lam |theta|^2 / scale``: ``scale * loss_scale``."""
    return objective.scale * float(np.mean(getattr(objective, "loss_scale", 1.0)))


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
    """Progress lines (step, t, train loss, rate, ETA) about every ``fraction`` of the steps (None: none by
    fraction) and at least every ``interval`` seconds, so that a long run says how long it will take within
    ``interval`` seconds.

    The lines go to the ``quadflow`` logger (the console and run.log in the app). Where a tqdm bar shows the
    same on a terminal (the trainer's ``progress`` on and stderr a TTY) they go to :data:`FILE_LOGGER`, which
    the app writes to run.log only. ``label`` starts each line (``population theory: step ...``).
    """

    def __init__(self, fraction: float | None = 0.05, interval: float = 30.0, label: str = ""):
        if fraction is not None and not 0 < fraction <= 1:
            raise ValueError(f"callbacks.progress.fraction={fraction!r} is out of range: allowed (0, 1] or null")
        if not (isinstance(interval, (int, float)) and 0 < interval < math.inf):
            raise ValueError(f"callbacks.progress.interval={interval!r} is out of range: allowed seconds > 0")
        self.fraction, self.interval, self.label = fraction, float(interval), f"{label}: " if label else ""
        self.log = logging.getLogger("quadflow")
        self._start, self._t0, self._last, self._next, self._every, self._loss = 0, 0.0, 0.0, 0, 1, float("nan")

    def on_fit_start(self, trainer):
        bar = trainer.progress and sys.stderr.isatty()
        self.log = logging.getLogger(FILE_LOGGER if bar else "quadflow")
        self._t0 = self._last = time.time()
        self._start = trainer.step
        self._every = max(1, int(round(self.fraction * max(trainer.steps, 1)))) if self.fraction else math.inf
        self._next = (trainer.step // self._every + 1) * self._every

    def on_evaluate(self, trainer, loss, stats):
        self._loss = float(np.mean(stats.train_loss))  # the replicas' mean

    def on_step_end(self, trainer):
        now = time.time()
        if trainer.step < self._next and now - self._last < self.interval:
            return False
        self._next = (trainer.step // self._every + 1) * self._every
        self._last = now
        rate = (trainer.step - self._start) / max(now - self._t0, 1e-9)
        eta = duration((trainer.steps - trainer.step) / rate) if rate > 0 else "unknown"
        self.log.info(f"{self.label}step {trainer.step}/{trainer.steps} "
                      f"({100 * trainer.step / max(trainer.steps, 1):.3g} %) t={trainer.step * trainer.h:g} "
                      f"train_loss={self._loss:.4g} {rate:.3g} steps/s ETA {eta}")
        return False


FILE_LOGGER = "quadflow.file"  # a logger the app writes to run.log only (conf/hydra/job_logging/quadflow.yaml)


def duration(seconds: float) -> str:
    """``seconds`` as ``45 s``, ``12 min``, ``3.2 h``, ``4.1 days`` or ``2.7e+03 years``."""
    for unit, size, limit in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800), ("days", 86400, 3.156e7)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit in ("s", "min") else f"{seconds / size:.3g} {unit}"
    return f"{seconds / 3.156e7:.3g} years"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically to ``path``.

    ``state`` holds tensors and plain Python values (dicts, lists, tuples, str, int, float, bool, None), what
    :func:`load_checkpoint` reads back; convert numpy arrays to tensors first.
    """
    atomic_write(path, lambda fh: torch.save(state, fh))


class CheckpointError(ValueError):
    """A checkpoint that holds more than tensors and plain Python values: loading it could run code."""


def load_checkpoint(path: Path, expected_key: str | None = None) -> dict | None:
    """The state saved at ``path`` (None when there is none), loaded with ``torch.load(weights_only=True)``.

    Only tensors and plain Python values are rebuilt, so a file someone else wrote cannot run code when it
    is loaded. Raises :class:`CheckpointError` (one line) when the file needs any other object, and
    ``ValueError`` when it was written for another configuration (``state["key"] != expected_key``):
    resuming it would mix runs.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():  # a plain pickle (no zip archive) warns about its protocol first
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} was not loaded: it holds more than tensors and plain Python values "
                              f"({_refusal(str(err))}), and loading that could run code; start over with "
                              "resume=false, or use a new hydra.run.dir") from None
    if expected_key is not None and state.get("key") != expected_key:
        raise ValueError(f"{path} was written by a run with a different configuration; resume with the "
                         "same overrides, or use a new hydra.run.dir")
    return state


def _refusal(message: str) -> str:
    """The line of torch's weights-only error that names what was refused (``Unsupported global: ...``)."""
    for line in message.splitlines():
        if "nsupported" in line:
            line = line.split("error:", 1)[-1].split(" Please use", 1)[0]
            return line.strip().rstrip(".")
    return "not a weights-only file"


class Checkpointer(Callback):
    """Save ``state()`` to ``path`` every ``every`` steps (0: only when :meth:`save` is called, e.g. at exit).

    ``state`` is a callable returning the whole resumable state (the trainer's and the job's). Under
    torch.distributed only rank 0 calls it and writes the file: the state is the same on every rank, and
    ``state`` must then not need a collective.
    """

    def __init__(self, every: int = 200, path: Path | None = None, state: Callable[[], dict] | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint.every={every!r} is out of range: allowed an integer >= 0 (0: only at exit)")
        self.every, self.path, self.state = every, path, state

    def save(self) -> None:
        if self.path is not None and self.state is not None and world()[0] == 0:
            save_checkpoint(self.path, self.state())

    def on_step_end(self, trainer):
        if self.every and trainer.step % self.every == 0:
            self.save()
        return False
