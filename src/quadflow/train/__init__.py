"""Training: the loop (``loss.backward(); optimizer.step()``), its callbacks and the simulation; it re-exports
the observables (:mod:`quadflow.observables`) and the record schedules (:mod:`quadflow.schedules`)."""
from quadflow.train.callbacks import (Callback, Checkpointer, DivergenceError, DivergenceGuard, ProgressLog,
                                      SignalStop, load_checkpoint, save_checkpoint)
from quadflow.train.loop import Trainer
from quadflow.observables import METRICS, RANK_TOL, Evaluator, collect, mse
from quadflow.schedules import log_schedule, record_schedule, spectrum_schedule
from quadflow.train.simulation import Simulation, simulate

__all__ = ["METRICS", "RANK_TOL", "Callback", "Checkpointer", "DivergenceError", "DivergenceGuard", "Evaluator",
           "ProgressLog", "SignalStop", "Simulation", "Trainer", "collect", "load_checkpoint", "log_schedule", "mse",
           "record_schedule", "save_checkpoint", "simulate", "spectrum_schedule"]
