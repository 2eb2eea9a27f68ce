"""PNG figures of a run: simulation and theory on the same axes (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CURVE_METRICS = ("mse", "train_loss", "in_sample_error", "rank_fraction")
EXTRA_METRICS = ("loss_reg", "loss_reg_excess")  # drawn when the rows have them
THEORY_STYLES = {"dmft": ("--", "C0"), "population": (":", "C2"), "longtime": ("-.", "C1")}


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(t, values)`` of one key over the rows that have it (t > 0 for log axes)."""
    pts = [(r["t"], r[key]) for r in rows if r.get(key) is not None and r["t"] > 0]
    if not pts:
        return np.empty(0), np.empty(0)
    t, v = zip(*pts)
    return np.asarray(t), np.asarray(v, dtype=float)


def theory_names(rows: list[dict]) -> list[str]:
    """Theory names present in the rows (keys ``theory/<name>/<metric>``)."""
    return sorted({k.split("/")[1] for r in rows for k in r if k.startswith("theory/")})


FLAGGED_LABEL = "theory (flagged: top-m cut binds)"
FLAGGED_STYLE = {"color": "0.55", "ls": "--", "lw": 1.4}  # a long-time theory with valid=False


def flagged_label(ax) -> str:
    """:data:`FLAGGED_LABEL` for the first flagged line of ``ax``, then none (one legend entry per axes)."""
    return "_nolegend_" if FLAGGED_LABEL in ax.get_legend_handles_labels()[1] else FLAGGED_LABEL


def plot_flagged(ax, x, y, valid, fmt: str = "-", color=None, label: str | None = None, **kw) -> None:
    """A long-time theory curve: the points with ``valid`` True as ``fmt`` in ``color`` (``label``); the others,
    where the solution is flagged ``valid=False`` (the top-m cut binds), in :data:`FLAGGED_STYLE` with the legend
    entry :data:`FLAGGED_LABEL`. The two parts join at their boundary points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.asarray(valid, dtype=bool)
    bad = ~ok
    if ok.any():
        ax.plot(x, np.where(ok, y, np.nan), fmt, color=color, label=label, **kw)
    if bad.any():
        near = bad | np.r_[bad[1:], False] | np.r_[False, bad[:-1]]  # the neighbours join the two parts
        ax.plot(x, np.where(near, y, np.nan), **FLAGGED_STYLE, label=flagged_label(ax))


def plot_curves(rows: list[dict], path: Path, title: str = "", flagged=()) -> Path:
    """Panels against t, simulation and theories: mse, train_loss, in_sample_error, rank_fraction and, where the
    rows have them, loss_reg and the distance of loss_reg to the static solution (``|loss_reg_excess|``, the
    paper's Fig. 14); the theories named in ``flagged`` (a long-time solution with ``valid=False``) are drawn as
    :data:`FLAGGED_LABEL`. A run of replicas is drawn as their mean with a band of one standard error
    (``sim/<metric>_se``)."""
    plt = pyplot()
    metrics = [*CURVE_METRICS, *(m for m in EXTRA_METRICS if any(f"sim/{m}" in row for row in rows))]
    cols = (len(metrics) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(5 * cols, 7), constrained_layout=True, squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        t, v = series(rows, f"sim/{metric}")
        ts, se = series(rows, f"sim/{metric}_se")
        if metric.endswith("_excess"):  # drawn as a distance, on log axes
            v = np.abs(v)
        replicas = len(ts) == len(t) and len(t) > 0
        ax.plot(t, v, "o", ms=3, color="k", label="simulation (mean of replicas)" if replicas else "simulation")
        if replicas:
            ax.fill_between(t, v - se, v + se, color="k", alpha=0.15, lw=0, label="+- 1 s.e.")
        for name in theory_names(rows):
            tt, vv = series(rows, f"theory/{name}/{metric}")
            vv = np.abs(vv) if metric.endswith("_excess") else vv
            if len(tt):
                style, color = THEORY_STYLES.get(name, ("--", None))
                plot_flagged(ax, tt, vv, np.full(len(tt), name not in flagged), style, color=color,
                             label=f"theory: {name}", lw=1.8)
        ax.set_xscale("log")
        if metric != "rank_fraction" and np.all(v > 0):
            ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_title("|loss_reg - static limit|" if metric == "loss_reg_excess" else metric)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def spectrum_panel(ax, eigenvalues, rank_fraction: float, density=None, atom: float | None = None,
                   sim_label: str = "simulation", theory_label: str = "theory (long time)", flagged: bool = False):
    """The spectrum of S on ``ax``, simulation and theory drawn alike.

    Non-zero part (left axis, density per unit eigenvalue): the largest ``rank_fraction`` of ``eigenvalues`` as a
    histogram normalised to their mass (``rank_fraction``), and the theory density ``(x, rho)``, whose integral is
    the theory's rank fraction. Atom at 0 (right axis, "mass at 0"): one stem each, side by side at 0, of height
    ``1 - rank_fraction`` (simulation) and ``atom`` (theory), the masses in the legend. A ``flagged`` theory (its
    solution ``valid=False``) is drawn in :data:`FLAGGED_STYLE`, labelled :data:`FLAGGED_LABEL`. Returns the right
    axis.
    """
    eigs = np.sort(np.asarray(eigenvalues, dtype=float))
    nonzero = eigs[eigs.size - int(round(rank_fraction * eigs.size)):]
    masses = [(1.0 - nonzero.size / eigs.size, "C0", "simulation")]
    if nonzero.size:
        edges = np.histogram_bin_edges(nonzero, bins=max(8, min(60, nonzero.size // 3)))
        ax.hist(nonzero, bins=edges, weights=np.full(nonzero.size, 1.0 / (eigs.size * (edges[1] - edges[0]))),
                color="C0", alpha=0.5, label=sim_label)
    if density is not None:
        style = FLAGGED_STYLE if flagged else {"color": "r", "ls": "-", "lw": 1.8}
        ax.plot(*density, **style, label=FLAGGED_LABEL if flagged else theory_label)
        if atom is not None:
            masses.append((float(atom), style["color"], "theory"))
    ax.set_xlabel("eigenvalue of S")
    ax.set_ylabel("density of the non-zero eigenvalues")
    width = ax.get_xlim()[1]
    ax.set_xlim(left=-0.04 * width)
    right = ax.twinx()
    for i, (mass, color, label) in enumerate(masses):  # side by side at 0, so that equal masses both show
        stem = right.stem([0.01 * width * (2 * i - len(masses) + 1)], [mass], linefmt=color, markerfmt="D",
                          basefmt=" ", label=f"{label}: mass at 0 = {mass:.3f}")
        stem.markerline.set_color(color)
    right.set_ylim(0, 1.05)
    right.set_ylabel("mass at 0 (stems)")
    handles, labels = (a + b for a, b in zip(ax.get_legend_handles_labels(), right.get_legend_handles_labels()))
    right.legend(handles, labels, fontsize=7, loc="upper right")
    return right


def plot_spectrum(eigenvalues: np.ndarray, path: Path, t: float, density=None, atom: float | None = None,
                  title: str = "", zero_tol: float = 0.01, flagged: bool = False) -> Path:
    """The eigenvalues of S at time t against the long-time theory (:func:`spectrum_panel`): density ``(x, rho)``
    and ``atom``, its mass at zero, ``flagged`` where its solution is ``valid=False``; eigenvalues at most
    ``zero_tol`` (``record.rank_tol``) count as zero."""
    plt = pyplot()
    eigs = np.asarray(eigenvalues, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    spectrum_panel(ax, eigs, float(np.mean(eigs > zero_tol)), density, atom, sim_label=f"simulation, t={t:g}",
                   flagged=flagged)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
