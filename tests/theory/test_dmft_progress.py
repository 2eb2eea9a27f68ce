"""The DMFT's progress lines: a windowed solve reports its iterations and residuals, a marching one does not."""
import logging

from quadflow.cli.theories import DMFT


def _lines(caplog, window):
    caplog.clear()
    progress = DMFT(window=window)._progress(False, 101)
    for solved in range(1, 102):  # what solve_dmft's callback sees: (iteration, residual, steps solved)
        progress(1 if window == 1 else solved, 0.0 if window == 1 else 1e-5, solved)
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_marching_solve_reports_no_iterations(caplog):
    caplog.set_level(logging.DEBUG, logger="quadflow")
    marching, windowed = _lines(caplog, 1), _lines(caplog, 5)
    assert marching and {level for level, _ in marching} == {logging.DEBUG}
    assert marching[-1][1] == "DMFT: 101/101 steps marched"
    assert not any("iteration" in text or "residual" in text for _, text in marching)
    assert windowed and {level for level, _ in windowed} == {logging.INFO}
    assert windowed[-1][1] == "DMFT: 101/101 steps solved after 101 iterations (last residual 1.000e-05, tol 0.0001)"
