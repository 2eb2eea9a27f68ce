"""Shared matplotlib helpers of the figure makers (imported lazily: Agg backend)."""
from __future__ import annotations


def subplots(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.6):
    """``(fig, axes)`` with ``axes`` a flat list, constrained layout."""
    from quadflow.plots import _pyplot

    fig, axes = _pyplot().subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                   constrained_layout=True, squeeze=False)
    return fig, list(axes.flat)


def close(fig) -> None:
    from quadflow.plots import _pyplot

    _pyplot().close(fig)


def colors(n: int) -> list:
    """``n`` distinguishable colours (matplotlib's default cycle, repeated)."""
    return [f"C{i % 10}" for i in range(n)]


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scales with plain tick labels (0.2, 0.5, 1 on x; decades on y) and unlabelled minor ticks."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    for on, axis, set_scale, subs in ((x, ax.xaxis, ax.set_xscale, (1.0, 2.0, 5.0)),
                                      (y, ax.yaxis, ax.set_yscale, (1.0,))):
        if on:
            set_scale("log")
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
