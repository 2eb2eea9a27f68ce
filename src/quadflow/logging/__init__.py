"""Where a run's observables go: metrics.jsonl, Weights & Biases (offline by default), the fan-out."""
from quadflow.logging.sinks import JsonlSink, Tracker, WandbSink

__all__ = ["JsonlSink", "Tracker", "WandbSink"]
