"""W&B charts with theory on the simulation's axes, the spectrum overlay, the run's files as an artifact and
which of config and environment decides mode and project; offline runs read back from their files."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from quadflow.logging import JsonlSink, Tracker, WandbSink
from quadflow.logging.charts import MAX_BINS, MAX_ROWS, log_scale, num_bins, overlay_series, overlay_table, \
    row_metrics, spectrum_rows
from quadflow.viz.figures.data import FigureData

WANDB_CLI = Path(sys.executable).with_name("wandb")


def rows_with_two_theories(n: int = 6) -> list[dict]:
    """sim at every t, dmft at every other t, the long-time constants everywhere; ``test_error_se`` is no metric."""
    rows = []
    for i in range(n):
        t = 0.5 * i
        row = {"t": t, "step": 5 * i, "sim/mse": 1.0 / (1 + t), "sim/train_loss": 0.5 / (1 + t),
               "sim/test_error_se": 0.01, "theory/longtime/mse": 0.2, "theory/longtime/train_loss": 0.1}
        if i % 2 == 0:
            row["theory/dmft/mse"] = 1.0 / (1 + t) + 0.01
        rows.append(row)
    return rows


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline into ``tmp_path`` (also its artifact staging), no project in the config nor environment."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    return tmp_path


def run_dir(out: Path, run_id: str) -> Path:
    (found,) = (out / "wandb").glob(f"offline-run-*-{run_id}")
    return found


def table(run: Path, key: str) -> dict:
    """The table JSON logged under ``key`` (a chart's table is ``<key>_table``)."""
    parent, _, stem = key.rpartition("/")
    (path,) = (run / "files" / "media" / "table" / parent).glob(f"{stem}_[0-9]*.table.json")
    return json.loads(path.read_text())


def records(run: Path, run_id: str) -> list[dict]:
    proc = subprocess.run([str(WANDB_CLI), "leet", "inspect", "--json", str(run / f"run-{run_id}.wandb")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# -- the chart data, without W&B ---------------------------------------------------------------------------------
def test_overlay_series_keep_each_theory_on_its_own_points():
    rows = rows_with_two_theories()
    assert row_metrics(rows) == ["mse", "train_loss"]
    series = overlay_series(rows, "mse")
    assert list(series) == ["simulation", "theory: longtime", "theory: dmft"]
    table = overlay_table(series, "t", "mse")  # t from 0 to 2.5, mse within a decade: linear axes
    assert table["columns"] == ["series", "t", "mse"] and (table["x"], table["y"]) == ("t", "mse")
    by = {label: [(x, y) for lab, x, y in table["data"] if lab == label] for label in series}
    assert [x for x, _ in by["simulation"]] == [0.5 * i for i in range(6)]
    assert [x for x, _ in by["theory: dmft"]] == [0.0, 1.0, 2.0]
    assert {y for _, y in by["theory: longtime"]} == {0.2}  # the long-time constant: a flat line


def test_chart_points_drop_non_finite_average_repeats_and_fit_wandb_limits():
    table = overlay_table({"a": [(0, 1.0), (1, float("nan")), (1, None), (2, 3.0), (2, 5.0)], "empty": [(0, None)]},
                          "t", "y")
    assert table["data"] == [["a", 0.0, 1.0], ["a", 2.0, 4.0]]
    assert overlay_table({"a": [(0, None)]}, "t", "y") is None
    big = overlay_table({k: [(i, 1.0 + i % 2) for i in range(20_000)] for k in "ab"}, "t", "y")
    assert len(big["data"]) <= MAX_ROWS and big["x"] == "log10 t"  # t = 0 left out, last point kept
    assert big["data"][0][1] == 0.0 and big["data"][-1][1] == pytest.approx(np.log10(19_999))
    assert num_bins(10**7) <= MAX_BINS and num_bins(3) == 8


def test_axes_spanning_decades_are_charted_in_log10_with_named_columns():
    """mse falls over four decades on log-spaced times: both axes in log10, t = 0 left out; rank_fraction stays
    linear (under a decade); a metric with a negative value is never logged."""
    t = [0.0, *np.geomspace(0.01, 100.0, 9)]
    rows = [{"t": s, "sim/mse": 1.0 / (1 + s), "theory/dmft/mse": 1.0 / (1 + s),
             "theory/longtime/mse": 1e-2, "sim/rank_fraction": 1.0 - 0.5 * s / 100} for s in t]
    mse = overlay_table(overlay_series(rows, "mse"), "t", "mse")
    assert mse["columns"] == ["series", "log10 t", "log10 mse"]
    sim = [(x, y) for label, x, y in mse["data"] if label == "simulation"]
    assert len(sim) == 9 and sim[0][0] == pytest.approx(-2.0) and sim[-1][0] == pytest.approx(2.0)
    assert sim[-1][1] == pytest.approx(np.log10(1 / 101))
    assert [y for label, _, y in mse["data"] if label == "theory: longtime"] == pytest.approx([-2.0] * 9)
    rank = overlay_table(overlay_series(rows, "rank_fraction"), "t", "rank_fraction")
    assert rank["columns"] == ["series", "log10 t", "rank_fraction"] and len(rank["data"]) == 9
    assert log_scale([1e-3, 1.0]) and not log_scale([0.1, 1.0]) and not log_scale([-1e-3, 1e-3, 1.0])
    assert log_scale([0.0, 0.01, 1.0])  # a zero (t = 0) does not prevent a log axis


def test_spectrum_rows_are_normalised_histograms_plus_the_theory_density():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 4, 50)
    rows = spectrum_rows({0: rng.random(200), 10: 2 * rng.random(200)}, 0.1, (x, np.exp(-x)), "theory: longtime")
    series = {r[0] for r in rows}
    assert series == {"empirical t=0", "empirical t=1", "theory: longtime"}
    for name in ("empirical t=0", "empirical t=1"):
        centres = np.array([r[2] for r in rows if r[0] == name])
        dens = np.array([r[3] for r in rows if r[0] == name])
        assert np.sum(dens) * (centres[1] - centres[0]) == pytest.approx(1.0)
    assert sum(r[0] == "theory: longtime" for r in rows) == 50
    assert spectrum_rows({}, 0.1, None) == []


def test_figure_tables_become_sim_against_theory_charts():
    from quadflow.viz.figures.wb import table_charts

    rows = [{"kappa": k, "t": t, "sim_mse": 1 / (1 + t), "dmft_mse": 1.1 / (1 + t), "seed": 0}
            for k in (0.5, 2.0) for t in (0.0, 1.0, 2.0)]
    ((quantity, x, series),) = table_charts(rows)
    assert (quantity, x) == ("mse", "t")
    assert set(series) == {"sim_mse kappa=0.5", "dmft_mse kappa=0.5", "sim_mse kappa=2.0", "dmft_mse kappa=2.0"}
    assert table_charts([{"design": "goe", "mse_mean": 1.0}]) == []  # no x column


# -- where mode and project come from ------------------------------------------------------------------------------
def kwargs(**over):
    base = dict(mode=None, project=None, entity=None, group=None, name=None, tags=[], run_id=None, job_type="train")
    return WandbSink.init_kwargs(**{**base, **over})


def test_unset_mode_and_project_leave_the_wandb_environment_in_force(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert kwargs() == {"mode": "offline", "project": "quadflow", "job_type": "train"}
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    # the environment decides, read at start (W&B's settings singleton may have read it earlier in the process)
    assert kwargs() == {"mode": "online", "project": "from-env", "job_type": "train"}
    assert kwargs(mode="offline", project="cli", run_id="abc") == {
        "mode": "offline", "project": "cli", "id": "abc", "resume": "allow", "job_type": "train"}


@pytest.mark.parametrize("mode,env", [(None, "disabled"), ("offline", "disabled"), ("disabled", "offline")])
def test_disabled_from_config_or_environment_disables(tmp_path, monkeypatch, mode, env):
    monkeypatch.setenv("WANDB_MODE", env)
    assert WandbSink.start(mode=mode, project=None, out_dir=tmp_path) is None
    tracker = Tracker(JsonlSink(None), None)
    tracker.log_overlays(rows_with_two_theories())
    tracker.log_spectrum_overlay({0: np.ones(4)}, 0.1, None)
    assert tracker.log_artifact("x", "run-files", [tmp_path]) is None
    assert not (tmp_path / "wandb").exists()


def test_chart_failure_is_one_warning_and_the_run_goes_on(tmp_path):
    class Broken:
        def log_overlays(self, *a):
            raise RuntimeError("boom")

    tracker = Tracker(JsonlSink(tmp_path / "metrics.jsonl"), Broken())
    with pytest.warns(RuntimeWarning, match="overlay charts.*boom"):
        tracker.log_overlays()


# -- offline runs read back ---------------------------------------------------------------------------------------
def test_offline_run_has_overlay_charts_spectrum_and_artifact(offline, monkeypatch):
    """mode and project null: WANDB_MODE=offline and WANDB_PROJECT decide; charts, tables, artifact on disk."""
    monkeypatch.setenv("WANDB_PROJECT", "project-from-env")
    out = offline / "run"
    out.mkdir()
    sink = WandbSink.start(mode=None, project=None, entity=None, group="g", name="job", tags=[], config={"a": 1},
                           out_dir=out)
    assert sink is not None
    tracker = Tracker(JsonlSink(out / "metrics.jsonl"), sink)
    for row in rows_with_two_theories():
        tracker.log({**row, "sim/decay": 10.0 ** (-2 * row["t"])})  # five decades over t in [0, 2.5]
    rng = np.random.default_rng(1)
    spectra = {0: rng.random(40), 10: 1.5 * rng.random(40)}
    x = np.linspace(0, 3, 30)
    tracker.log_overlays()
    tracker.log_spectrum_overlay(spectra, 0.1, (x, np.exp(-x)), label="theory: longtime")
    np.savez(out / "spectra.npz", **{f"step_{k}": v for k, v in spectra.items()})
    (out / "summary.json").write_text("{}")
    files = [out / f for f in ("metrics.jsonl", "summary.json", "spectra.npz", "config.yaml")]  # no config.yaml
    assert tracker.log_artifact("run-files", "run-files", files) == "run-files"
    tracker.finish({"status": "ok"}, 0)

    run = run_dir(out, sink.run_id)
    mse = table(run, "charts/mse_table")
    assert mse["columns"] == ["series", "t", "mse"]  # within a decade: linear axes
    keys = {r[0] for r in mse["data"]}
    assert keys == {"simulation", "theory: dmft", "theory: longtime"}
    assert sorted(r[1] for r in mse["data"] if r[0] == "theory: dmft") == [0.0, 1.0, 2.0]
    assert {r[0] for r in table(run, "charts/train_loss_table")["data"]} == {"simulation", "theory: longtime"}
    decay = table(run, "charts/decay_table")
    assert decay["columns"] == ["series", "t", "log10 decay"]
    assert [r[2] for r in decay["data"]] == pytest.approx([-2 * r[1] for r in decay["data"]])
    spec = table(run, "spectrum/table")
    assert spec["columns"] == ["series", "t", "x", "density"]
    assert {r[0] for r in spec["data"]} == {"empirical t=0", "empirical t=1", "theory: longtime"}

    recs = records(run, sink.run_id)
    (info,) = [r["run"] for r in recs if r["type"] == "run"]
    assert info["project"] == "project-from-env" and info["job_type"] == "train" and info["run_group"] == "g"
    artifacts = [r["artifact"] for r in recs if r["type"] == "artifact"]
    (files_art,) = [a for a in artifacts if a["name"] == "run-files"]
    assert files_art["type"] == "run-files"
    assert sorted(c["path"] for c in files_art["manifest"]["contents"]) == ["metrics.jsonl", "spectra.npz",
                                                                            "summary.json"]
    config = [r["config"]["update"] for r in recs if r["type"] == "config"]
    panels = {k[len("_wandb.visualize."):]: v["panel_config"] for c in config for k, v in c.items()
              if k.startswith("_wandb.visualize.")}
    assert set(panels) == {"charts/mse", "charts/train_loss", "charts/decay", "charts/spectrum"}
    assert {p["panelDefId"] for p in panels.values()} == {"wandb/line/v0"}  # a built-in preset: renders anywhere
    # the preset labels its axes with the field's column
    assert panels["charts/decay"]["fieldSettings"] == {"x": "t", "y": "log10 decay", "stroke": "series"}
    assert panels["charts/decay"]["stringSettings"] == {"title": "log10 decay against t"}


def test_config_project_and_mode_win_over_the_environment_and_resume_logs_charts_again(offline, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "project-from-env")
    monkeypatch.setenv("WANDB_MODE", "online")  # the config's offline wins: no network needed
    out = offline / "run"
    first = WandbSink.start(mode="offline", project="from-config", out_dir=out)
    rows = rows_with_two_theories(4)
    tracker = Tracker(JsonlSink(None), first)
    tracker.log_overlays(rows)
    tracker.finish({}, 143)
    again = WandbSink.start(mode="offline", project="from-config", out_dir=out, run_id=first.run_id)
    assert again.run_id == first.run_id
    tracker = Tracker(JsonlSink(None), again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # logging the same charts again on the resumed run is clean
        tracker.log_overlays(rows_with_two_theories(6))
    tracker.finish({}, 0)
    runs = sorted((out / "wandb").glob(f"offline-run-*-{first.run_id}*"))
    assert len(runs) == 2
    assert len(table(runs[-1], "charts/mse_table")["data"]) == 6 + 6 + 3
    (info,) = [r["run"] for r in records(runs[0], first.run_id) if r["type"] == "run"]
    assert info["project"] == "from-config"


def test_figure_run_logs_its_tables_as_charts_with_job_type_figure(offline):
    data = FigureData("demo", tables={"sim": [{"kappa": 0.5, "t": t, "sim_mse": 1 / (1 + t), "dmft_mse": 1 / (1.1 + t)}
                                              for t in (0.0, 1.0, 2.0)]})
    png = offline / "demo.png"
    from quadflow.viz.figures.style import close, subplots

    fig, _ = subplots(1)
    fig.savefig(png)
    close(fig)
    from quadflow.viz.figures.wb import log_figure

    run_id = log_figure(data, png, out_dir=offline)
    run = run_dir(offline, run_id)
    chart = table(run, "charts/sim/mse_table")
    assert {r[0] for r in chart["data"]} == {"sim_mse", "dmft_mse"}
    (info,) = [r["run"] for r in records(run, run_id) if r["type"] == "run"]
    assert info["job_type"] == "figure" and info["project"] == "quadflow"
