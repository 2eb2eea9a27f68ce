"""Shared matplotlib helpers of the figure makers (imported lazily: Agg backend)."""
from __future__ import annotations


def subplots(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.6):
    """``(fig, axes)`` with ``axes`` a flat list, constrained layout."""
    from quadflow.viz.plots import pyplot

    fig, axes = pyplot().subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                   constrained_layout=True, squeeze=False)
    return fig, list(axes.flat)


def close(fig) -> None:
    from quadflow.viz.plots import pyplot

    pyplot().close(fig)


def colors(n: int) -> list:
    """``n`` distinguishable colours (matplotlib's default cycle, repeated)."""
    return [f"C{i % 10}" for i in range(n)]


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scales with plain tick labels (decades; also 2 and 5 on an x axis spanning under two decades),
    unlabelled minor ticks. Call after plotting (the span is read from the data limits)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    for on, axis, set_scale, can_subdivide in ((x, ax.xaxis, ax.set_xscale, True),
                                               (y, ax.yaxis, ax.set_yscale, False)):
        if on:
            set_scale("log")
            lo, hi = axis.get_data_interval()
            subs = (1.0, 2.0, 5.0) if can_subdivide and 0 < lo and hi / lo < 100 else (1.0,)
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
