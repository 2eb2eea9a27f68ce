"""The training loop: ``loss.backward(); optimizer.step()`` on the paper's time axis ``t = step * h``."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from quadflow.optim import uses_closure
from quadflow.train.callbacks import Callback


class Trainer:
    """Fits a student with a ``torch.optim`` optimiser, recording on a schedule.

    Args:
        h: the step in the paper's time (``t = step * h``); the optimiser's ``lr`` for the flows.
        steps: number of optimiser steps of :meth:`fit` (can be overridden there).
        batch_size: None (full batch, the flow) or the number of samples drawn per step; ``t``
            is then still ``step * h`` and SGD with ``lr = h`` is an unbiased, noisy estimate of
            the flow's step (noise variance of order ``h / batch_size``).
        callbacks: :class:`Callback` objects (divergence guard, signal stop, checkpoints, ...).
        progress: a tqdm bar on terminals.

    After :meth:`fit` binds them, ``model``, ``objective``, ``optimizer`` and ``step`` are
    attributes; :meth:`state_dict` holds what a bitwise resume needs.
    """

    def __init__(self, h: float, steps: int = 600, batch_size: int | None = None,
                 callbacks: Iterable[Callback] = (), progress: bool = False):
        if not (isinstance(h, (int, float)) and h > 0):
            raise ValueError(f"trainer.h={h!r} is out of range: allowed > 0")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"trainer.steps={steps!r} is out of range: allowed an integer >= 0")
        self.h, self.steps, self.batch_size = float(h), steps, batch_size
        self.callbacks, self.progress = list(callbacks), progress
        self.step = 0
        self.last_record: dict | None = None
        self.model = self.objective = self.optimizer = self.batches = None

    def setup(self, model: nn.Module, objective, optimizer: torch.optim.Optimizer,
              batches: Callable[[int], object] | None = None) -> "Trainer":
        """Bind the student, its objective (``model, batch -> (loss, Stats)``), the optimiser and the
        minibatch sampler (``step -> batch``; None for full batch)."""
        self.model, self.objective, self.optimizer, self.batches = model, objective, optimizer, batches
        return self

    def _evaluate(self):
        """Loss, gradients (in ``.grad``) and Stats at the current parameters; full batch when ``full``."""
        self.optimizer.zero_grad(set_to_none=True)
        batch = None if self.batches is None else self.batches(self.step)
        loss, stats = self.objective(self.model, batch)
        loss.backward()
        return float(loss.detach()), stats

    def _full_stats(self):
        """Exact full-batch Stats for a record when minibatching."""
        with torch.no_grad():
            return self.objective(self.model, None)[1]

    def fit(self, evaluator, record_steps: Iterable[int], spectrum_steps: Iterable[int] = (),
            on_record: Callable[[dict], None] | None = None, steps: int | None = None) -> None:
        """Advance to ``steps``, calling ``on_record(evaluator(...))`` at each step in ``record_steps``.

        Callbacks may stop the run early (``self.step`` is then the next step to evaluate).
        Raises :class:`quadflow.train.DivergenceError` (from the divergence guard).
        """
        steps = self.steps if steps is None else steps
        record, spectra = set(record_steps), set(spectrum_steps)
        bar = _progress(steps, self.step, self.progress)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            while self.step < steps or self.step in record or self.step in spectra:
                loss, stats = self._evaluate()
                for cb in self.callbacks:
                    cb.on_evaluate(self, loss, stats)
                if self.step in record or self.step in spectra:
                    full = stats if self.batches is None else self._full_stats()
                    self.last_record = evaluator(self.model, full, self.step, self.step * self.h,
                                                 spectrum=self.step in spectra)
                    if on_record is not None:
                        on_record(self.last_record)
                if self.step >= steps:
                    return
                self._step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(train_loss=f"{np.mean(stats.train_loss):.3e}", refresh=False)
                if any([cb.on_step_end(self) for cb in self.callbacks]):
                    return
        finally:
            if bar is not None:
                bar.close()
            for cb in self.callbacks:
                cb.on_fit_end(self)

    def _step(self) -> None:
        if uses_closure(self.optimizer):
            def closure():
                return self._evaluate()[0]
            self.optimizer.step(closure)
        else:
            self.optimizer.step()
        self.step += 1

    def state_dict(self) -> dict:
        """Step, student, optimiser and callback states (tensors moved to the CPU by ``torch.save``)."""
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for cb, s in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(s)


def _progress(total: int, done: int, enabled: bool):
    """A tqdm bar on a terminal (rate and ETA); None when disabled or not a TTY (CI logs stay quiet)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="step", disable=None, dynamic_ncols=True)
