"""What the figures show: nothing clipped or covered, the atom of the spectrum drawn alike for simulation and
theory, the sweep's theory on a fine grid, flagged long-time curves marked; scripts/figures.py's errors."""
import warnings
from importlib import util
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import StemContainer
from matplotlib.transforms import Bbox

from quadflow.theory import LongTimeValidityWarning, solve_longtime
from quadflow.viz.figures import FigureData, collect, draw
from quadflow.viz.figures.style import close, subplots
from quadflow.viz.plots import CURVE_METRICS, FLAGGED_LABEL, FLAGGED_STYLE, plot_curves, plot_flagged, plot_spectrum, \
    spectrum_panel
from test_figures import PROBLEM, write_job

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def stems(fig) -> list[tuple[float, float, str]]:
    """``(x, height, label)`` of every stem of ``fig``."""
    return [(float(c.markerline.get_xdata()[0]), float(c.markerline.get_ydata()[0]), c.get_label())
            for ax in fig.axes for c in ax.containers if isinstance(c, StemContainer)]


def flagged_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_label() == FLAGGED_LABEL]


def test_phase_diagram_title_is_inside_the_figure_and_the_legend_off_the_kappa_star_01_curves():
    fig = draw(FigureData.load(RESULTS / "phase_diagram", "phase_diagram"))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    title = ax.title.get_window_extent(renderer)
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    legend = (ax.get_legend() or fig.legends[0]).get_window_extent(renderer)
    curves = [ln for ln in ax.get_lines() if ln.get_label().startswith("kappa*=0.1: alpha_PR")]
    assert len(curves) == 2
    for line in curves:
        xy = line.get_transform().transform(line.get_xydata())
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        assert not legend.count_contains(xy), line.get_label()
        assert not any(legend.overlaps(Bbox([a, b])) for a, b in zip(xy[:-1], xy[1:])), line.get_label()
    close(fig)


def test_the_atom_at_zero_is_a_stem_for_simulation_and_theory_and_the_histogram_holds_the_rest():
    sol = solve_longtime(alpha=1.0, kappa=1.5, kappa_star=0.5, lam=0.05, Delta=0.0)
    rng = np.random.default_rng(0)
    eigs = np.concatenate([np.zeros(150), 1e-4 * rng.random(50), 0.5 + 3 * rng.random(200)])  # 200 at zero
    x = np.linspace(0, 5, 200)
    fig, (ax,) = subplots(1)
    spectrum_panel(ax, eigs, float(np.mean(eigs > 0.01)), (x, sol.spectrum(x)), sol.atom)
    (sim_x, sim_mass, sim_label), (th_x, th_mass, th_label) = stems(fig)
    assert sim_mass == pytest.approx(0.5) and th_mass == pytest.approx(sol.atom)
    assert sim_label == "simulation: mass at 0 = 0.500" and th_label == f"theory: mass at 0 = {sol.atom:.3f}"
    assert abs(sim_x) < 0.1 and abs(th_x) < 0.1
    bars = ax.patches
    assert min(b.get_x() for b in bars) >= 0.5  # the zeros are not binned
    mass = sum(b.get_height() * b.get_width() for b in bars)
    assert mass == pytest.approx(0.5)  # the histogram holds the non-zero mass, like the theory density
    close(fig)


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures that the run plots (quadflow.viz.plots) close after saving, kept open to be inspected."""
    import matplotlib.pyplot as plt

    kept, plt_close = [], plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        plt_close(fig)


def test_run_plots_draw_the_atoms_alike_and_mark_a_flagged_theory(tmp_path, kept_figures):
    sol = solve_longtime(alpha=1.0, kappa=1.5, kappa_star=0.5, lam=0.05, Delta=0.0)
    x = np.linspace(0, 5, 100)
    eigs = np.concatenate([np.full(30, 1e-3), 1 + np.arange(70) / 20])  # 30 % below rank_tol
    plot_spectrum(eigs, tmp_path / "spectrum.png", 3.0, (x, sol.spectrum(x)), sol.atom, zero_tol=0.01)
    (fig,) = kept_figures
    assert [h for _, h, _ in stems(fig)] == pytest.approx([0.3, sol.atom])
    rows = [{"t": t, **{f"{source}/{m}": 1 / (1 + t) for source in ("sim", "theory/dmft") for m in CURVE_METRICS},
             **{f"theory/longtime/{m}": 0.1 for m in CURVE_METRICS}} for t in (0.5, 1.0, 2.0)]
    plot_curves(rows, tmp_path / "curves.png", flagged=["longtime"])
    ax = kept_figures[1].axes[0]
    (flagged,) = flagged_lines(ax)
    assert list(flagged.get_ydata()) == [0.1] * 3 and flagged.get_color() == FLAGGED_STYLE["color"]
    assert "theory: longtime" not in ax.get_legend_handles_labels()[1]


def test_the_spectrum_figure_draws_both_atoms_in_each_panel():
    data = FigureData.load(RESULTS / "spectrum", "spectrum")
    fig = draw(data)
    masses = sorted(round(h, 4) for _, h, _ in stems(fig))
    expected = sorted(round(m, 4) for r in data.meta["runs"]
                      for m in (1 - r["sim_rank_fraction"], 1 - r["theory_rank_fraction"]))
    assert masses == expected
    flagged = [bool(flagged_lines(ax)) for ax in fig.axes if ax.patches]  # kappa = 0.5: the top-m cut binds
    assert flagged == [not r["valid"] for r in data.meta["runs"]] == [True, False]
    close(fig)


def _jobs_over(tmp_path, key: str, values, problem: dict, metric_value) -> None:
    for job, v in enumerate(values):
        p = {**PROBLEM, **problem, key: v}
        with warnings.catch_warnings():  # flagged points are what some tests want
            warnings.simplefilter("ignore", LongTimeValidityWarning)
            sol = solve_longtime(**{k: p[k] for k in ("alpha", "kappa", "kappa_star", "lam", "Delta")})
        write_job(tmp_path / str(job), p, summary={"sim/mse": metric_value(v), "theory/longtime/mse": sol.mse,
                                                   "theory/longtime/valid": sol.valid, "theory/dmft/mse": sol.mse},
                  rows=[{"t": t, "step": i, "sim/mse": 1 / (1 + t)} for i, t in enumerate((0.0, 1.0, 2.0))])


def test_sweep_figure_draws_the_long_time_theory_on_a_fine_grid_and_others_as_markers(tmp_path):
    _jobs_over(tmp_path, "alpha", (0.5, 1.0, 2.0), {"Delta": 0.0}, lambda a: 0.1 / a)
    data = collect("sweep", tmp_path)
    curve = data.tables["theory_curve"]
    assert len(curve) >= 50 and {r["theory"] for r in curve} == {"longtime"}
    xs = [r["x"] for r in curve]
    assert xs[0] == pytest.approx(0.5) and xs[-1] == pytest.approx(2.0) and len(set(xs)) == len(xs)
    sol = solve_longtime(alpha=xs[25], kappa=1.5, kappa_star=0.5, lam=0.05, Delta=0.0)
    assert curve[25]["y"] == pytest.approx(sol.mse, rel=1e-3)  # between the swept points: solved there
    fig = draw(data)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert len(lines["longtime (theory)"].get_xdata()) >= 50
    dmft = lines["dmft (theory)"]
    assert dmft.get_linestyle() == "None" and len(dmft.get_xdata()) == 3  # no line between the swept points
    close(fig)


def test_a_flagged_long_time_curve_is_grey_dashed_with_its_own_legend_entry(tmp_path):
    # alpha 0.3, kappa* 0.5, lam 1e-3: the top-m cut binds for kappa below about 0.5 (phase diagram)
    problem = {"alpha": 0.3, "kappa_star": 0.5, "lam": 1e-3, "Delta": 0.0}
    _jobs_over(tmp_path, "kappa", (0.3, 0.6, 1.5), problem, lambda k: 0.1)
    data = collect("sweep", tmp_path, quick=True)
    assert {r["valid"] for r in data.tables["theory_curve"]} == {0, 1}
    fig = draw(data)
    ax = fig.axes[0]
    (flagged,) = flagged_lines(ax)
    assert flagged.get_color() == FLAGGED_STYLE["color"] and flagged.get_linestyle() == "--"
    assert FLAGGED_LABEL in ax.get_legend_handles_labels()[1]
    valid = next(ln for ln in ax.get_lines() if ln.get_label() == "longtime (theory)")
    assert valid.get_linestyle() == "-" and valid.get_color() != FLAGGED_STYLE["color"]
    close(fig)


def test_flagged_points_of_the_overparam_figure_and_of_a_curve_are_marked():
    data = FigureData.load(RESULTS / "overparam", "overparam")
    assert {r["valid"] for r in data.tables["theory"]} == {0, 1}
    fig = draw(data)
    for ax in fig.axes:
        grey = [ln for ln in ax.get_lines() if ln.get_color() == FLAGGED_STYLE["color"] and ln.get_linestyle() == "--"]
        assert len(grey) == len(data.meta["curves"])  # each curve has flagged points
        assert ax.get_legend_handles_labels()[1].count(FLAGGED_LABEL) == 1  # one legend entry
    close(fig)
    fig, (ax,) = subplots(1)
    plot_flagged(ax, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0], [True, True, False, False], color="C1", label="theory")
    ok, bad = ax.get_lines()
    assert np.isnan(ok.get_ydata()[2:]).all() and list(bad.get_ydata()[1:]) == [2.0, 3.0, 4.0]  # joined at x = 2
    close(fig)


def test_learning_curves_mark_a_flagged_long_time_limit(tmp_path):
    rows = [{"t": t, "step": i, "sim/mse": 1 / (1 + t), "sim/train_loss": 0.5 / (1 + t)}
            for i, t in enumerate((0.0, 1.0, 2.0))]
    for job, (kappa, valid) in enumerate(((0.3, False), (1.5, True))):
        write_job(tmp_path / str(job), {"kappa": kappa}, rows=rows,
                  summary={"theory/longtime/mse": 0.2, "theory/longtime/train_loss": 0.1,
                           "theory/longtime/valid": valid})
    fig = draw(collect("learning_curves", tmp_path))
    for ax in fig.axes:
        (flagged,) = flagged_lines(ax)
        assert flagged.get_color() == FLAGGED_STYLE["color"] and flagged.get_linestyle() == "--"
    close(fig)


@pytest.fixture(scope="module")
def figures_script():
    spec = util.spec_from_file_location("figures_cli", ROOT / "scripts" / "figures.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv,message", [
    (["nope"], "error: argument name: invalid choice: 'nope'"),
    (["spectrum", "--sweep-dir", "/no/such/folder"], "error: --sweep-dir /no/such/folder: no such folder"),
    (["spectrum", "--redraw", str(ROOT / "docs")], "no saved spectrum figure there"),
    (["phase_diagram", "--x", "problem.alpha", "--out", "/tmp"], "error: --x and --y are options of the sweep"),
    (["spectrum"], "error: give --sweep-dir"),
])
def test_figures_script_reports_bad_input_in_one_line_with_exit_code_2(figures_script, capsys, argv, message):
    assert figures_script.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_figures_script_keeps_the_traceback_of_a_bug_for_debug(figures_script, capsys, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(figures_script, "make_figure", broken)
    argv = ["phase_diagram", "--out", str(tmp_path)]
    assert figures_script.main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected RuntimeError: a bug (rerun with --debug for the traceback)\n"
    assert figures_script.main([*argv, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
