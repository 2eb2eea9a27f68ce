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
