"""A checkpoint is loaded with ``torch.load(weights_only=True)``: one that someone else wrote cannot run code, and a
job's own checkpoint (spectra, theory results) holds only tensors and plain values."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_reliability import make_cfg

from quadflow.cli.build import ConfigError
from quadflow.cli.job import Job, run_job
from quadflow.io import read_jsonl
from quadflow.train import load_checkpoint, save_checkpoint
from quadflow.train.callbacks import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["problem.d=10", "problem.alpha=2.0", "trainer.steps=20", "theory=[]", "device=cpu", "precision=fp64",
        "progress=false", "tracking.wandb.mode=disabled", "tracking.plots=false"]


class WritesAFile:
    """Unpickling it calls ``open(marker, "w")``: the file appears if the pickle is executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_crafted_checkpoint_runs_no_code_and_is_refused_in_one_line(tmp_path):
    """A run folder whose checkpoint.pt holds a pickled call: rerunning in it (resume=auto, the default) exits with
    code 2 and one ``error:`` line naming the file and what it needed; the call never ran."""
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    out.mkdir()
    save_checkpoint(out / "checkpoint.pt", {"key": "x", "simulation": WritesAFile(marker)})
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *ARGS, f"hydra.run.dir={out}"],
                          cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert not marker.exists()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("error: ") and str(out / "checkpoint.pt") in line and "io.open" in line, line
    assert "resume=false" in line and "Traceback" not in proc.stderr
    assert not (out / "metrics.jsonl").exists()  # nothing was run or overwritten


def test_a_plain_pickle_is_refused_without_running_it(tmp_path):
    import pickle

    path, marker = tmp_path / "checkpoint.pt", tmp_path / "code-ran"
    path.write_bytes(pickle.dumps({"key": WritesAFile(marker)}))
    with pytest.raises(CheckpointError, match=r"was not loaded: it holds more than tensors") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and not marker.exists()


def test_an_interrupted_run_with_theories_resumes_from_a_weights_only_checkpoint(tmp_path, monkeypatch):
    """Spectra (numpy arrays) and theory results (the long-time density, curves, summaries) are stored as tensors
    and plain values; the resumed run continues with them and ends as an uninterrupted one."""
    overrides = ("theory=[population,longtime]", "record.spectrum_points=3")
    reference = run_job(make_cfg(*overrides), tmp_path / "ref")
    on_record = Job.on_record

    def stop_at_step_10(job, rec):
        on_record(job, rec)
        if rec["step"] >= 10 and not job.interrupted():
            os.kill(os.getpid(), signal.SIGTERM)  # SignalStop's handler: the run checkpoints and stops

    monkeypatch.setattr(Job, "on_record", stop_at_step_10)
    first = run_job(make_cfg(*overrides), tmp_path / "run")
    monkeypatch.setattr(Job, "on_record", on_record)
    assert first["status"] == "interrupted"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert set(state["spectra"]) and all(isinstance(v, torch.Tensor) for v in state["spectra"].values())
    assert isinstance(state["theory"]["longtime"][1]["density"][0], torch.Tensor)

    def no_theory(*args, **kwargs):
        raise AssertionError("the theories come from the checkpoint")

    monkeypatch.setattr("quadflow.cli.theories.Population.compute", no_theory)
    monkeypatch.setattr("quadflow.cli.theories.LongTime.compute", no_theory)
    resumed = run_job(make_cfg(*overrides), tmp_path / "run")
    assert resumed["status"] == "ok" and resumed["steps_done"] == 40
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    theory = {k: v for k, v in reference.items() if k.startswith("theory/")}
    assert {k: resumed[k] for k in theory} == theory
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "ok"


def test_a_checkpoint_needing_more_than_plain_values_is_a_config_error(tmp_path):
    """In-process too: the job refuses it before any training (a ConfigError: exit code 2 from the command line)."""
    import numpy as np

    save_checkpoint(tmp_path / "checkpoint.pt", {"key": "x", "spectra": {0: np.zeros(3)}})
    with pytest.raises(ConfigError, match=r"checkpoint.pt was not loaded.*numpy"):
        run_job(make_cfg(), tmp_path)
