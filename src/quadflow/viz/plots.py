"""PNG figures of a run: simulation and theory on the same axes (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CURVE_METRICS = ("mse", "train_loss", "in_sample_error", "rank_fraction")
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


def plot_curves(rows: list[dict], path: Path, title: str = "") -> Path:
    """Four panels (mse, train_loss, in_sample_error, rank_fraction) vs t, simulation and theories."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, metric in zip(axes.flat, CURVE_METRICS):
        t, v = series(rows, f"sim/{metric}")
        ax.plot(t, v, "o", ms=3, color="k", label="simulation")
        for name in theory_names(rows):
            tt, vv = series(rows, f"theory/{name}/{metric}")
            if len(tt):
                style, color = THEORY_STYLES.get(name, ("--", None))
                ax.plot(tt, vv, style, color=color, lw=1.8, label=f"theory: {name}")
        ax.set_xscale("log")
        if metric != "rank_fraction" and np.all(v > 0):
            ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectrum(eigenvalues: np.ndarray, path: Path, t: float, density=None, atom: float | None = None,
                  title: str = "") -> Path:
    """Histogram of the eigenvalues of S at time t, with an optional theory density ``(x, rho)``.

    ``atom`` is the theory's mass at zero (fraction of zero eigenvalues), drawn as a bar label.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.hist(eigenvalues, bins=max(10, min(80, len(eigenvalues) // 3)), density=True, alpha=0.5,
            label=f"simulation, t={t:g}")
    if density is not None:
        x, rho = density
        ax.plot(x, rho, "r-", lw=1.8, label="theory (long time)" + (f", atom at 0: {atom:.3f}" if atom else ""))
    ax.set_xlabel("eigenvalue of S")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
